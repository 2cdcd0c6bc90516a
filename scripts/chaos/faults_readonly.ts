/**
 * Fault: the database cannot be written. Root ignores file modes, so the suite makes it unwritable
 * the way root cannot override: the database file alone bind-mounted read-only inside a writable
 * directory, and the whole data directory (a tmpfs) remounted read-only, after a clean stop and after a
 * SIGKILL (which leaves the -wal and -shm files behind). Each time `serve` must
 * refuse to start, exit non-zero within START_LIMIT_MS, and say why in its last line, without a
 * stack trace.
 */
import { join } from "node:path";
import type { SuiteContext } from "./lib/context.ts";
import { type Account, newRelay } from "./lib/relay.ts";
import { bindReadOnly, canMount, mountTmpfs } from "./lib/tmpfs.ts";

const ACCOUNT: Account = { user: "ro", secret: "ro-secret-0123456789", domains: ["o.chaos.test"] };
const TMPFS_BYTES = 16 * 1024 * 1024;
/** A refusal is immediate; a relay still up after this has started on the unwritable file. */
const START_LIMIT_MS = 5_000;
/** What a clear message talks about. */
const CLEAR = /read-?only|readonly|permission|cannot|unable|not writable/i;

/** Runs the unwritable-database fault; figures as `readonly.*`. */
export async function readOnlyFault(ctx: SuiteContext): Promise<void> {
  const report = ctx.report.part("readonly");
  if (!canMount()) return report.note("skipped: read-only mounts need root");
  const fs = mountTmpfs(ctx.scope, ctx.path("ro-fs"), TMPFS_BYTES);
  const dataDir = join(fs.dir, "data");
  const { relay } = newRelay(ctx, "readonly", [ACCOUNT], {}, dataDir);
  const protect = {
    file: () => bindReadOnly(ctx.scope, join(dataDir, "queue.db")),
    dir: () => {
      fs.remount("ro");
      return () => Promise.resolve(fs.remount("rw"));
    },
  };
  // How the previous run ended matters: a SIGKILL leaves queue.db-wal and -shm behind.
  const cases = [
    { name: "file-after-stop", before: "stop", protect: protect.file },
    { name: "dir-after-stop", before: "stop", protect: protect.dir },
    { name: "dir-after-kill", before: "kill", protect: protect.dir },
  ] as const;
  for (const c of cases) {
    await relay.start();
    if (c.before === "kill") await relay.kill();
    else await relay.stop();
    const undo = c.protect();
    try {
      relay.spawn();
      const exit = await relay.expectExit(START_LIMIT_MS);
      const tail = relay.log().trimEnd().split("\n").filter((l) => !l.startsWith("=== chaos"));
      const last = tail[tail.length - 1] ?? "";
      if (!exit) {
        report.known(
          "readonly-start",
          `${c.name}: serve with an unwritable database started and was still running after ${START_LIMIT_MS} ms`,
        );
        await relay.kill();
        continue;
      }
      report.check(
        exit.code !== 0 && exit.code !== null,
        `${c.name}: serve exited ${exit.code ?? exit.signal}`,
      );
      report.check(CLEAR.test(last), `${c.name}: unclear last line: ${last}`);
      const stack = tail.filter((l) => /^\s+at /.test(l)).length;
      report.check(stack === 0, `${c.name}: ${stack} stack-trace lines on stderr`);
      report.note(`${c.name}: exit ${exit.code}: ${last.slice(0, 160)}`);
    } finally {
      await undo();
    }
  }
  // Writable again: it must start as if nothing happened.
  await relay.start();
  await relay.stop();
  report.set("cases", cases.length);
}
