/**
 * Fault: the customer vanishes after the turn, at every step of the reversed session (after its 220,
 * EHLO, MAIL, RCPT, 354, in the middle of the body, after the final dot without a reply, and after
 * its 250 to the dot), once with FIN and once with RST. Each time the queue must keep every
 * unconfirmed recipient and the domain must be released at once: a second ATRN from another
 * connection must turn (not 451) within RELEASE_MS. At the end one clean session must collect exactly
 * what is left, byte-identical to what was sent behind the Received header.
 */
import type { SuiteContext } from "./lib/context.ts";
import { type Collected, odmrLogin, serveTurned, type VanishPoint } from "./lib/customer.ts";
import { compareStored, makeMessage, messageIdOf, type Sent } from "./lib/messages.ts";
import { type Account, newRelay, sleep } from "./lib/relay.ts";
import { fill } from "./lib/traffic.ts";
import type { LineSocket } from "./lib/smtp.ts";

const ACCOUNT: Account = { user: "vanish", secret: "vanish-secret-0123456789", domains: ["v.chaos.test"] };
const DOMAIN = ACCOUNT.domains[0]!;
const POINTS: VanishPoint[] = [
  "after-220",
  "after-ehlo",
  "after-mail",
  "after-rcpt",
  "after-354",
  "mid-body",
  "after-dot",
  "after-250",
];
/** "At once": the next ATRN must turn within this (the relay only has to notice the closed socket). */
const RELEASE_MS = 1000;
const MESSAGES = 6;

/** Runs the vanishing-customer fault; figures as `vanish.*`. */
export async function vanishFault(ctx: SuiteContext): Promise<void> {
  const report = ctx.report.part("vanish");
  const { relay } = newRelay(ctx, "vanish", [ACCOUNT], { atrnMaxPerMinute: 1000 });
  await relay.start();
  const target = { port: relay.ports.odmr };
  const filled = await fill({
    port: relay.ports.smtp,
    rng: ctx.rng,
    count: MESSAGES,
    workers: 1,
    make: (n) =>
      makeMessage(ctx.rng, `v${report.seed}`, n, {
        from: `s${n}@remote.chaos.test`,
        rcpts: n % 2 ? [`r${n}@${DOMAIN}`, `q${n}@${DOMAIN}`] : [`r${n}@${DOMAIN}`],
      }, { largeShare: n === 0 ? 1 : 0 }),
  });
  const sent = new Map<string, Sent>([...filled.acked.values()].map((s) => [s.messageId, s]));
  let queued = [...sent.values()].reduce((n, s) => n + s.rcpts.length, 0);
  let worstRelease = 0;
  let sessions = 0;

  /** ATRN until it turns (451 means the domain is still leased); returns the connection and the wait. */
  const turn = async (): Promise<{ conn: LineSocket; waitedMs: number } | null> => {
    const t0 = performance.now();
    const conn = await odmrLogin(target, ACCOUNT.user, ACCOUNT.secret);
    for (;;) {
      const r = await conn.command(`ATRN ${DOMAIN}`, 10_000);
      if (r.code === 250) return { conn, waitedMs: performance.now() - t0 };
      if (r.code !== 451 || performance.now() - t0 > 5 * RELEASE_MS) {
        report.fail(`ATRN answered ${r.lines.join(" / ")} after ${Math.round(performance.now() - t0)} ms`);
        conn.destroy();
        return null;
      }
      await sleep(10);
    }
  };

  const first = await turn();
  if (!first) return;
  let pending: { conn: LineSocket } = first;
  for (const point of POINTS) {
    for (const reset of [false, true]) {
      const label = `${point}${reset ? " (RST)" : " (FIN)"}`;
      const session = await serveTurned(pending.conn, { vanish: point, reset });
      sessions++;
      report.check(session.vanished === point, `${label}: the relay never reached that step`);
      for (const m of session.messages) queued -= m.rcpts.length;
      const next = await turn();
      if (!next) return;
      worstRelease = Math.max(worstRelease, next.waitedMs);
      report.check(
        next.waitedMs <= RELEASE_MS,
        `${label}: the domain was released after ${Math.round(next.waitedMs)} ms`,
      );
      const status = await relay.status();
      report.check(
        status.queue.recipients === queued,
        `${label}: ${status.queue.recipients} queued, expected ${queued}`,
      );
      pending = next;
    }
  }
  // The clean session: everything left, byte-identical.
  const last = await serveTurned(pending.conn);
  sessions++;
  report.check(last.vanished === null, "the final session did not run to its end");
  const got = last.messages.reduce((n, m) => n + m.rcpts.length, 0);
  report.check(got === queued, `the final session collected ${got} recipients, ${queued} were queued`);
  for (const m of last.messages) checkCollected(m, sent, report);
  await sleep(100);
  const status = await relay.status();
  report.check(
    status.queue.recipients === 0,
    `${status.queue.recipients} still queued after the final session`,
  );
  const stopped = await relay.stop();
  report.check(stopped.code === 0, `SIGTERM: exit ${stopped.code ?? stopped.signal}`);
  for (const c of relay.crashes) report.fail(c);
  for (const l of relay.bugLines()) report.fail(`relay log: ${l}`);
  report.set("steps", POINTS.length * 2);
  report.set("sessions", sessions);
  report.set("worst_release_ms", Math.round(worstRelease));
}

function checkCollected(
  m: Collected,
  sent: Map<string, Sent>,
  report: import("./lib/report.ts").PartReport,
): void {
  const id = messageIdOf(m.data);
  const s = id ? sent.get(id) : undefined;
  if (!s) return report.fail(`collected a message nobody sent: ${id}`);
  const why = compareStored(m.data, s);
  if (why) report.fail(`collected ${id}: ${why}`);
}
