/**
 * Fault: SIGTERM under load. Intake clients send as fast as they can, and a few slow clients sit in
 * DATA dripping a line at a time so they can never finish. After SIGTERM the relay must turn new
 * connections away with 421, let the fast sessions finish their message, drop the slow ones without
 * acknowledging them, and exit 0 within shutdownGrace (plus STOP_SLACK_MS). Every message whose 250 a
 * client saw must then be in the file, byte-identical.
 */
import { join } from "node:path";
import type { SuiteContext } from "./lib/context.ts";
import { type Made, makeMessage, type Sent } from "./lib/messages.ts";
import { checkAcknowledged } from "./lib/queue_db.ts";
import { type Account, newRelay, sleep } from "./lib/relay.ts";
import { LineSocket, type SendResult, SmtpSession, sourceAddress } from "./lib/smtp.ts";
import { Traffic } from "./lib/traffic.ts";

const ACCOUNT: Account = { user: "term", secret: "term-secret-0123456789", domains: ["t.chaos.test"] };
const GRACE_MS = 3000;
/** The stop may take the grace period plus the listener's own 100 ms close and process exit. */
const STOP_SLACK_MS = 1500;
const SLOW_CLIENTS = 4;
const DRIP_MS = 250;

/** Runs the SIGTERM-under-load fault; figures as `sigterm.*`. */
export async function sigtermFault(ctx: SuiteContext): Promise<void> {
  const report = ctx.report.part("sigterm");
  const runs = ctx.heavy ? 5 : 2;
  const { relay, dataDir } = newRelay(ctx, "sigterm", [ACCOUNT], {
    shutdownGrace: `${GRACE_MS}ms`,
    smtpMaxConnectionsPerIp: 100,
  });
  const acked = new Map<number, Sent>();
  let n = 0;
  let worstStop = 0;
  let refusedDuringDrain = 0;
  for (let run = 1; run <= runs; run++) {
    await relay.start();
    const traffic = new Traffic({
      port: relay.ports.smtp,
      workers: 24,
      perSession: 3,
      rng: ctx.rng,
      next: () =>
        makeMessage(ctx.rng, `t${report.seed}`, n++, {
          from: `s${n}@remote.chaos.test`,
          rcpts: [`r${n}@t.chaos.test`],
        }),
      onResult: (m: Made, r: SendResult) => {
        if (r.outcome === "accepted" && r.queueId !== null) acked.set(r.queueId, m.record);
        else if (r.outcome === "refused" && r.code !== 421) {
          report.fail(`refused ${r.code} ${r.text} at ${r.stage}`);
        }
      },
    }).start();
    const slow = await Promise.all(Array.from({ length: SLOW_CLIENTS }, (_, i) => drip(relay.ports.smtp, i)));
    await sleep(ctx.rng.int(300, 1500));
    const stopping = relay.stop();
    await sleep(300);
    // A newcomer during the drain is told 421 (or finds the port already closed).
    const probe = await LineSocket.connect({ port: relay.ports.smtp }, 2000).then(
      (c) => c.reply(2000).then((r) => (c.destroy(), r.code), () => (c.destroy(), 0)),
      () => -1,
    );
    report.check(probe === 421 || probe === -1, `run ${run}: a new connection during the drain got ${probe}`);
    if (probe === 421) refusedDuringDrain++;
    const stopped = await stopping;
    await traffic.stop();
    const slowResults = await Promise.all(slow.map((s) => s.done));
    worstStop = Math.max(worstStop, stopped.ms);
    report.check(stopped.code === 0, `run ${run}: exit ${stopped.code ?? stopped.signal} after SIGTERM`);
    report.check(
      stopped.ms <= GRACE_MS + STOP_SLACK_MS,
      `run ${run}: the stop took ${Math.round(stopped.ms)} ms (grace ${GRACE_MS} ms)`,
    );
    for (const code of slowResults) {
      report.check(code !== 250, `run ${run}: a message that never ended was acknowledged`);
    }
    verify(run);
  }
  for (const c of relay.crashes) report.fail(c);
  for (const l of relay.bugLines()) report.fail(`relay log: ${l}`);
  report.set("runs", runs);
  report.set("acknowledged", acked.size);
  report.set("worst_stop_ms", Math.round(worstStop));
  report.set("grace_ms", GRACE_MS);
  report.set("drain_421", refusedDuringDrain);

  function verify(run: number): void {
    const { missing } = checkAcknowledged(join(dataDir, "queue.db"), acked, report.fail, `run ${run}`);
    report.add("losses", missing);
  }
}

/** A client that enters DATA and then sends one line every DRIP_MS; `done` is its final reply code. */
async function drip(port: number, i: number): Promise<{ done: Promise<number> }> {
  const session = await SmtpSession.open({ port, localAddress: sourceAddress(200 + i) });
  if (!(session instanceof SmtpSession)) throw new Error(`slow client ${i}: ${session.code} ${session.text}`);
  const c = session.conn;
  for (const line of ["MAIL FROM:<slow@remote.chaos.test>", `RCPT TO:<slow${i}@t.chaos.test>`, "DATA"]) {
    const r = await c.command(line, 10_000);
    if (r.code >= 400) throw new Error(`slow client ${i}: ${line}: ${r.code}`);
  }
  const done = (async () => {
    await c.write("Subject: never ends\r\n\r\n");
    for (;;) {
      if (c.ended) return 0;
      await c.write("still coming\r\n");
      const reply = await c.reply(DRIP_MS).catch(() => null);
      if (reply) return reply.code;
    }
  })();
  return { done };
}
