/**
 * Fault: the disk fills up. The data directory is a small tmpfs. With the free-space floor at 0 the
 * relay meets the real ENOSPC/SQLITE_FULL inside DATA and the commit; later, with a floor, it refuses
 * at MAIL. Checks: only 250, 451 or 452 as answers, never a crash, and never a 250 for what was not
 * stored; intake resumes without a restart when space returns; a restart on a full disk works; at the
 * end every acknowledged message is in the file, byte-identical.
 */
import { join } from "node:path";
import type { SuiteContext } from "./lib/context.ts";
import { fillDisk, freeDisk } from "./lib/filler.ts";
import { type Made, makeMessage, type Sent } from "./lib/messages.ts";
import { checkAcknowledged } from "./lib/queue_db.ts";
import { type Account, newRelay, sleep } from "./lib/relay.ts";
import { sendOne, type SendResult } from "./lib/smtp.ts";
import { canMount, mountTmpfs } from "./lib/tmpfs.ts";
import { Traffic } from "./lib/traffic.ts";

const ACCOUNT: Account = { user: "disk", secret: "disk-secret-0123456789", domains: ["f.chaos.test"] };
/** Small enough to fill in a second, big enough for the relay's database and a few large messages. */
const TMPFS_BYTES = 48 * 1024 * 1024;
/** Space left free before the intake traffic fills the rest. */
const LEAVE_BYTES = 6 * 1024 * 1024;
/** The relay's free-space probe caches statfs for a second (src/server/intake.ts). */
const PROBE_CACHE_MS = 1100;
/** Longest fill phase, and consecutive refusals that say the disk is full. */
const FILL_LIMIT_MS = 30_000;
const FULL_AFTER_REFUSALS = 30;

/** Runs the disk-full fault; figures as `disk.*`. */
export async function diskFault(ctx: SuiteContext): Promise<void> {
  const report = ctx.report.part("disk");
  if (!canMount()) return report.note("skipped: mounting a tmpfs needs root");
  const fs = mountTmpfs(ctx.scope, ctx.path("disk-fs"), TMPFS_BYTES);
  const dataDir = join(fs.dir, "data");
  const filler = join(fs.dir, "filler");
  const { relay } = newRelay(ctx, "disk", [ACCOUNT], {}, dataDir);
  const acked = new Map<number, Sent>();
  const codes = new Map<string, number>();
  let n = 0;
  const make = (large: number): Made =>
    makeMessage(ctx.rng, `f${report.seed}`, n++, {
      from: `s${n}@remote.chaos.test`,
      rcpts: [`r${n}@f.chaos.test`],
    }, {
      largeShare: large,
    });
  const record = (m: Made, r: SendResult) => {
    const key = r.outcome === "lost" ? `lost@${r.stage}` : `${r.code}@${r.stage}`;
    codes.set(key, (codes.get(key) ?? 0) + 1);
    if (r.outcome === "accepted" && r.queueId !== null) acked.set(r.queueId, m.record);
    else if (r.outcome === "lost" || ![451, 452].includes(r.code)) {
      report.fail(`disk full: answered ${key} ${r.text} (only 250, 451 or 452 are right)`);
    }
  };

  // 1. Fill: most of the space by a file, the rest by intake traffic, until only refusals come back.
  await relay.start();
  fillDisk(filler, LEAVE_BYTES, fs.dir);
  let refusalsInARow = 0;
  const traffic = new Traffic({
    port: relay.ports.smtp,
    workers: 6,
    perSession: 3,
    rng: ctx.rng,
    next: () => make(0.3),
    onResult: (m, r) => {
      record(m, r);
      refusalsInARow = r.outcome === "accepted" ? 0 : refusalsInARow + 1;
    },
  }).start();
  const deadline = Date.now() + FILL_LIMIT_MS;
  while (refusalsInARow < FULL_AFTER_REFUSALS && Date.now() < deadline && relay.running) await sleep(20);
  await traffic.stop();
  report.check(refusalsInARow >= FULL_AFTER_REFUSALS, `the disk never filled up in ${FILL_LIMIT_MS} ms`);
  // Small messages too, now that nothing fits: they fail in the commit, not in the spool file.
  for (let i = 0; i < 5; i++) {
    const m = make(0);
    record(m, await sendOne({ port: relay.ports.smtp }, m));
  }
  report.check(relay.running, "the relay died when the disk filled up");
  const healthy = await relay.json("/healthz").then(() => true, () => false);
  report.check(healthy, "/healthz fails on a full disk");

  // 2. Space returns: intake must resume without a restart.
  freeDisk(filler);
  await sleep(PROBE_CACHE_MS);
  let resumed = 0;
  for (let i = 0; i < 10; i++) {
    const m = make(0);
    const r = await sendOne({ port: relay.ports.smtp }, m);
    record(m, r);
    if (r.outcome === "accepted") resumed++;
  }
  report.check(resumed === 10, `after space returned only ${resumed} of 10 messages were accepted`);

  // 3. Full again, then a restart on the full disk, with a free-space floor: MAIL gets 452.
  fillDisk(filler, 0, fs.dir);
  const stopped = await relay.stop();
  report.check(stopped.code === 0, `SIGTERM on a full disk: exit ${stopped.code ?? stopped.signal}`);
  relay.options.settings = { smtpMinFreeSpace: "1MiB" };
  try {
    await relay.start();
  } catch (error) {
    report.fail(`restart on a full disk: ${(error as Error).message}`);
    freeDisk(filler);
    await relay.start();
  }
  const onFull = make(0);
  const refusedAtMail = await sendOne({ port: relay.ports.smtp }, onFull);
  record(onFull, refusedAtMail);
  report.check(
    refusedAtMail.code === 452 && refusedAtMail.stage === "mail",
    `after the restart on a full disk: ${refusedAtMail.code}@${refusedAtMail.stage}, expected 452 at MAIL`,
  );
  freeDisk(filler);
  await sleep(PROBE_CACHE_MS);
  const after = make(0);
  const r = await sendOne({ port: relay.ports.smtp }, after);
  record(after, r);
  report.check(r.outcome === "accepted", `after the restart and free space: ${r.code} ${r.text}`);
  await relay.stop();

  // 4. What was acknowledged is there, byte-identical.
  const { inspection, missing: lost } = checkAcknowledged(
    join(dataDir, "queue.db"),
    acked,
    report.fail,
    "end",
  );
  const extra = inspection.messages.size - (acked.size - lost);
  report.check(extra === 0, `${extra} messages stored that were never acknowledged`);
  for (const c of relay.crashes) report.fail(c);
  for (const l of relay.bugLines()) report.fail(`relay log: ${l}`);
  report.set("acknowledged", acked.size);
  report.set("losses", lost);
  report.set("answers", [...codes].sort().map(([k, v]) => `${k}:${v}`).join(","));
}
