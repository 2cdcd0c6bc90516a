/**
 * Fault: another process holds the database's write lock (BEGIN IMMEDIATE, kept open) for longer
 * than the relay's busy_timeout (5 s, src/queue/db.ts). The relay must answer 451 for a message it
 * cannot commit, stay alive, and accept mail again as soon as the lock goes. The time /healthz took
 * while the lock was held is reported: SQLite waits synchronously on the one event loop, so the
 * whole relay pauses for the busy_timeout.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import type { SuiteContext } from "./lib/context.ts";
import { makeMessage } from "./lib/messages.ts";
import { type Account, newRelay, sleep } from "./lib/relay.ts";
import { sendOne } from "./lib/smtp.ts";

const ACCOUNT: Account = { user: "lock", secret: "lock-secret-0123456789", domains: ["l.chaos.test"] };
/** Held longer than the relay's busy_timeout (5 s), so a commit in the meantime must give up. */
const HOLD_MS = 8000;

/** The child (arguments last: \`bun -e\` has no script name in argv): opens the file, takes the write lock, says "locked", holds it, then rolls back. */
const HOLDER = `
import { DatabaseSync } from "node:sqlite";
const [path, holdMs] = process.argv.slice(-2);
const db = new DatabaseSync(path);
db.exec("PRAGMA busy_timeout = 10000");
db.exec("BEGIN IMMEDIATE");
console.log("locked");
setTimeout(() => { db.exec("ROLLBACK"); db.close(); console.log("released"); }, Number(holdMs));
`;

/** Runs the database-locked fault; figures as `lock.*`. */
export async function lockFault(ctx: SuiteContext): Promise<void> {
  const report = ctx.report.part("lock");
  const { relay, dataDir } = newRelay(ctx, "lock", [ACCOUNT]);
  await relay.start();
  let n = 0;
  const message = () =>
    makeMessage(ctx.rng, `l${report.seed}`, n++, {
      from: `s${n}@remote.chaos.test`,
      rcpts: [`r${n}@l.chaos.test`],
    });
  const before = await sendOne({ port: relay.ports.smtp }, message());
  report.check(before.outcome === "accepted", `before the lock: ${before.code} ${before.text}`);

  const holder = spawn(process.execPath, ["-e", HOLDER, join(dataDir, "queue.db"), String(HOLD_MS)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  ctx.scope.defer("kill lock holder", () => holder.kill("SIGKILL"));
  const released = new Promise<void>((resolve) => holder.on("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.on("data", (d) => String(d).includes("locked") && resolve());
    holder.on("exit", (code) => reject(new Error(`the lock holder exited ${code} before locking`)));
  });
  const lockedAt = performance.now();
  const during = sendOne({ port: relay.ports.smtp }, message());
  // /healthz while a commit waits on the lock: how long the event loop is held.
  await sleep(200);
  const h0 = performance.now();
  const healthy = await relay.json("/healthz").then(() => true, () => false);
  const healthMs = performance.now() - h0;
  const locked = await during;
  const answeredAfter = performance.now() - lockedAt;
  report.check(
    locked.code === 451,
    `with the database locked: ${locked.outcome} ${locked.code} ${locked.text} (expected 451)`,
  );
  report.check(
    answeredAfter < HOLD_MS,
    `the 451 came after ${Math.round(answeredAfter)} ms, not before the lock went`,
  );
  report.check(healthy, "/healthz failed while the database was locked");
  report.check(relay.running, "the relay died while the database was locked");
  await released;
  const after = await sendOne({ port: relay.ports.smtp }, message());
  report.check(after.outcome === "accepted", `after the lock went: ${after.code} ${after.text}`);
  const stopped = await relay.stop();
  report.check(stopped.code === 0, `SIGTERM: exit ${stopped.code ?? stopped.signal}`);
  for (const c of relay.crashes) report.fail(c);
  for (const l of relay.bugLines()) report.fail(`relay log: ${l}`);
  report.set("answer", `${locked.code}@${locked.stage}`);
  report.set("answer_ms", Math.round(answeredAfter));
  report.set("healthz_ms_while_locked", Math.round(healthMs));
}
