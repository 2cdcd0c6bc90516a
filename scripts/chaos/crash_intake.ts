/**
 * Crash consistency of the intake (issue 11, suite 1): many concurrent clients send unique messages
 * to the compiled binary, which is SIGKILLed at random moments. After every kill the database file is
 * opened directly (the process is dead) and every message whose 250 a client saw must be there with
 * the body byte-identical to what was sent behind the relay's Received header; the file must pass
 * integrity_check with complete chunks, no orphans and true counters. Clients that lost a connection
 * retry the message later, as a real MTA would, so a message stored but unacknowledged shows up as a
 * duplicate (allowed, counted); a loss fails the suite.
 */
import type { SuiteContext } from "./lib/context.ts";
import { CHUNK_SIZE, type Made, makeMessage, type Sent } from "./lib/messages.ts";
import { checkAcknowledged } from "./lib/queue_db.ts";
import { type Account, newRelay, sleep } from "./lib/relay.ts";
import type { SendResult } from "./lib/smtp.ts";
import { Traffic } from "./lib/traffic.ts";
import { join } from "node:path";
import { existsSync, readdirSync } from "node:fs";

/** Sizes of the CI and heavy variants. */
const PLAN = {
  ci: { kills: 5, workers: 32, killAfterMs: [150, 1200] as const },
  heavy: { kills: 25, workers: 64, killAfterMs: [100, 2000] as const },
};
/** Share of messages big enough for several chunks (kept small: every check re-reads every body). */
const LARGE_SHARE = 0.01;
const DOMAINS = ["a.chaos.test", "b.chaos.test", "c.chaos.test"];
export const CHAOS_ACCOUNT: Account = { user: "chaos", secret: "chaos-secret-0123456789", domains: DOMAINS };

/** Runs the intake crash part; figures go to the suite report as `intake.*`. */
export async function crashIntake(ctx: SuiteContext): Promise<void> {
  const plan = ctx.heavy ? PLAN.heavy : PLAN.ci;
  const { rng } = ctx;
  const report = ctx.report.part("intake");
  const { relay, dataDir } = newRelay(ctx, "intake", [CHAOS_ACCOUNT], {
    smtpMaxConnections: 1000,
    smtpMaxConnectionsPerIp: 1000,
  });

  /** Acknowledged messages: queue id from the 250 -> what was sent. */
  const acked = new Map<number, Sent>();
  /** Messages whose outcome is unknown (connection lost): sent again later. */
  const retry: Made[] = [];
  let made = 0;
  let lost = 0;
  const next = (): Made => {
    const again = retry.shift();
    if (again) return again;
    const n = made++;
    const rcpts = Array.from({ length: rng.int(1, 3) }, (_, i) => `u${n}.${i}@${rng.pick(DOMAINS)}`);
    return makeMessage(rng, `i${report.seed}`, n, { from: `s${n}@remote.chaos.test`, rcpts }, {
      largeShare: LARGE_SHARE,
    });
  };
  const onResult = (m: Made, r: SendResult) => {
    if (r.outcome === "accepted") {
      if (r.queueId === null) return report.fail(`250 without a queue id: ${r.text}`);
      acked.set(r.queueId, m.record);
    } else if (r.outcome === "lost" || (r.code >= 400 && r.code < 500)) {
      lost++;
      retry.push(m);
    } else report.fail(`intake refused a valid message at ${r.stage}: ${r.code} ${r.text}`);
  };

  const state = { stored: 0, duplicates: 0, chunked: 0, checks: 0 };
  /** Opens the dead relay's file and holds it against everything acknowledged so far. */
  const verify = (k: number) => {
    const { inspection, missing } = checkAcknowledged(
      join(dataDir, "queue.db"),
      acked,
      report.fail,
      `kill ${k}`,
    );
    report.add("losses", missing);
    state.duplicates = 0;
    for (const [mid, ids] of inspection.byMessageId) {
      if (ids.length > 1) state.duplicates += ids.length - 1;
      if (!mid.startsWith(`<chaos-i${report.seed}-`)) report.fail(`kill ${k}: a message nobody sent: ${mid}`);
    }
    state.chunked = [...inspection.messages.values()].filter((m) => m.size > CHUNK_SIZE).length;
    state.stored = inspection.messages.size;
    state.checks += acked.size;
  };

  report.add("losses", 0);
  for (let k = 1; k <= plan.kills; k++) {
    await relay.start();
    const spoolDir = join(dataDir, "spool");
    const spool = existsSync(spoolDir) ? readdirSync(spoolDir).filter((name) => name.endsWith(".spool")) : [];
    report.check(spool.length === 0, `kill ${k}: ${spool.length} spool files left after the restart`);
    const status = await relay.status();
    report.check(
      status.queue.messages === state.stored,
      `kill ${k}: the restarted relay reports ${status.queue.messages} messages, the file held ${state.stored}`,
    );
    const traffic = new Traffic({
      port: relay.ports.smtp,
      workers: plan.workers,
      perSession: 4,
      next,
      onResult,
      rng,
    })
      .start();
    await sleep(rng.int(plan.killAfterMs[0], plan.killAfterMs[1]));
    await relay.kill();
    await traffic.stop();
    verify(k);
  }
  // A last clean start and stop: the file the kills left must serve, and stop with exit 0.
  await relay.start();
  const stopped = await relay.stop();
  report.check(stopped.code === 0, `SIGTERM after the kills: exit ${stopped.code ?? stopped.signal}`);
  verify(plan.kills + 1);
  for (const c of relay.crashes) report.fail(c);
  for (const l of relay.bugLines()) report.fail(`relay log: ${l}`);

  report.set("kills", plan.kills);
  report.set("acknowledged", acked.size);
  report.set("checked", state.checks);
  report.set("duplicates", state.duplicates);
  report.set("retried", lost);
  report.set("stored", state.stored);
  report.set("chunked", state.chunked);
}
