/**
 * Suite 4, load: many idle connections held on the intake and ODMR listeners (spread over
 * 127.0.x.y, IDLE_PER_IP each) while intake and an ATRN collection are timed against a baseline taken
 * before they were opened; they must run at least MIN_SPEED_RATIO of that speed. Then the limits:
 * one address over the per-IP cap gets 421 for each extra connection on both listeners; with the
 * intake listener exactly full, a newcomer from an address already holding connections gets 421, and
 * one from a fresh address gets in by evicting an idle connection (which is told 421). RSS is read
 * before and with the connections held.
 */
import { spawnSync } from "node:child_process";
import type { SuiteContext } from "./lib/context.ts";
import { odmrLogin, serveTurned } from "./lib/customer.ts";
import { makeMessage } from "./lib/messages.ts";
import { type Account, newRelay, sleep } from "./lib/relay.ts";
import { mib } from "./lib/report.ts";
import { LineSocket } from "./lib/smtp.ts";
import { fill } from "./lib/traffic.ts";

const PLAN = {
  ci: { smtp: 600, odmr: 400, messages: 300 },
  heavy: { smtp: 3000, odmr: 2000, messages: 1000 },
};
const ACCOUNT: Account = { user: "load", secret: "load-secret-0123456789", domains: ["load.chaos.test"] };
/** Idle connections per source address; the per-IP cap is above it, so only the cap tests hit it. */
const IDLE_PER_IP = 8;
const PER_IP_CAP = 10;
/** Free intake slots beyond the idle ones while the timed traffic runs (filled for the global test). */
const HEADROOM = 6 * IDLE_PER_IP;
/** Loaded speed must be at least this share of the baseline (a 2-core machine shared with others). */
const MIN_SPEED_RATIO = 0.5;
/** Connections opened at once while building up the idle set. */
const OPEN_BATCH = 50;
/** Idle connections asked for a NOOP after the timed traffic. */
const SAMPLE = 50;
/** Descriptors the harness needs besides one per connection (sinks, pipes, the relay's own). */
const FD_MARGIN = 500;

/** Source address `n` of the idle set, away from the addresses the other tests use. */
const idleSource = (n: number) => `127.1.${1 + Math.floor(n / 250)}.${1 + (n % 250)}`;

/** Runs the load suite. */
export async function loadSuite(ctx: SuiteContext): Promise<void> {
  const plan = ctx.heavy ? PLAN.heavy : PLAN.ci;
  const { report } = ctx;
  const limit = Number(spawnSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).stdout.trim());
  const needed = plan.smtp + plan.odmr + FD_MARGIN;
  if (!(limit >= needed)) {
    return report.fail(
      `ulimit -n is ${limit}, the load suite needs ${needed}: raise it (ulimit -n ${needed})`,
    );
  }
  report.set("ulimit_n", limit);
  const { relay } = newRelay(ctx, "load", [ACCOUNT], {
    smtpMaxConnections: plan.smtp + HEADROOM,
    smtpMaxConnectionsPerIp: PER_IP_CAP,
    odmrMaxConnections: plan.odmr + 50,
    odmrMaxConnectionsPerIp: PER_IP_CAP,
    // Idle strangers are the point here: they must not be timed out during the run.
    odmrPreAuthTimeout: "30m",
    odmrIdleTimeout: "30m",
    smtpIdleTimeout: "30m",
    atrnMaxPerMinute: 1000,
  });
  await relay.start();
  const held: LineSocket[] = [];
  ctx.scope.defer("close idle connections", () => held.forEach((c) => c.destroy()));
  let made = 0;

  /** Times the intake (messages/s over 8 connections) and one ATRN collecting them (messages/s). */
  const timed = async () => {
    const t0 = performance.now();
    const filled = await fill({
      port: relay.ports.smtp,
      rng: ctx.rng,
      count: plan.messages,
      workers: 8,
      make: () =>
        makeMessage(ctx.rng, `L${report.seed}`, made++, {
          from: `s${made}@remote.chaos.test`,
          rcpts: [`r${made}@${ACCOUNT.domains[0]}`],
        }, { largeShare: 0 }),
    });
    const intake = filled.acked.size / ((performance.now() - t0) / 1000);
    report.check(filled.refused.length === 0, `intake refused ${filled.refused.length} messages`);
    const t1 = performance.now();
    const conn = await odmrLogin(
      { port: relay.ports.odmr, localAddress: "127.0.0.2" },
      ACCOUNT.user,
      ACCOUNT.secret,
    );
    const atrn = await conn.command(`ATRN ${ACCOUNT.domains[0]}`, 10_000);
    report.check(atrn.code === 250, `ATRN: ${atrn.lines.join(" / ")}`);
    const got = atrn.code === 250 ? (await serveTurned(conn, { timeoutMs: 60_000 })).messages.length : 0;
    report.check(got === filled.acked.size, `the ATRN collected ${got} of ${filled.acked.size} messages`);
    return { intake, atrn: got / ((performance.now() - t1) / 1000) };
  };

  await timed(); // warm-up: the first run pays for the JIT and the page cache
  const baseline = await timed();
  const rssBefore = relay.rss();
  const fdsBefore = relay.fds();
  // Build up the idle set: greeting read, EHLO said, then silence.
  const t0 = performance.now();
  let refusedIdle = 0;
  const open = async (port: number, source: string) => {
    try {
      const c = await LineSocket.connect({ port, localAddress: source });
      const greeting = await c.reply(10_000);
      if (greeting.code !== 220) {
        refusedIdle++;
        return c.destroy();
      }
      const ehlo = await c.command("EHLO idle.chaos.test", 10_000);
      if (ehlo.code !== 250) refusedIdle++;
      held.push(c);
    } catch {
      refusedIdle++;
    }
  };
  const jobs: [number, string][] = [];
  for (let i = 0; i < plan.smtp; i++) jobs.push([relay.ports.smtp, idleSource(Math.floor(i / IDLE_PER_IP))]);
  const odmrBase = Math.ceil(plan.smtp / IDLE_PER_IP);
  for (let i = 0; i < plan.odmr; i++) {
    jobs.push([relay.ports.odmr, idleSource(odmrBase + Math.floor(i / IDLE_PER_IP))]);
  }
  for (let i = 0; i < jobs.length; i += OPEN_BATCH) {
    await Promise.all(jobs.slice(i, i + OPEN_BATCH).map(([port, source]) => open(port, source)));
  }
  const openSeconds = (performance.now() - t0) / 1000;
  report.check(refusedIdle === 0, `${refusedIdle} idle connections were refused or failed`);
  const status = await relay.status();
  report.check(
    status.sessions.smtp === plan.smtp && status.sessions.odmr === plan.odmr,
    `/status sessions ${JSON.stringify(status.sessions)}, expected ${plan.smtp} smtp and ${plan.odmr} odmr`,
  );
  const rssHeld = relay.rss();
  const fdsHeld = relay.fds();

  const loaded = await timed();
  report.check(
    loaded.intake >= baseline.intake * MIN_SPEED_RATIO,
    `intake with the idle connections: ${loaded.intake.toFixed(0)} msg/s, baseline ${
      baseline.intake.toFixed(0)
    }`,
  );
  report.check(
    loaded.atrn >= baseline.atrn * MIN_SPEED_RATIO,
    `ATRN with the idle connections: ${loaded.atrn.toFixed(0)} msg/s, baseline ${baseline.atrn.toFixed(0)}`,
  );

  // The idle connections are alive, not just open: a sample answers NOOP.
  const sample = held.filter((_, i) => i % Math.ceil(held.length / SAMPLE) === 0);
  const alive = await Promise.all(
    sample.map((c) => c.command("NOOP", 10_000).then((r) => r.code === 250, () => false)),
  );
  report.check(
    alive.every(Boolean),
    `${alive.filter((a) => !a).length} of ${sample.length} idle connections did not answer NOOP`,
  );

  // Per-IP cap on both listeners: PER_IP_CAP + 3 from one fresh address, 3 of them get 421.
  for (
    const [name, port, source] of [["smtp", relay.ports.smtp, "127.0.0.3"], [
      "odmr",
      relay.ports.odmr,
      "127.0.0.4",
    ]] as const
  ) {
    const tries = await Promise.all(Array.from({ length: PER_IP_CAP + 3 }, () => greet(port, source)));
    const refused = tries.filter((t) => t.code === 421).length;
    report.check(refused === 3, `${name} per-IP cap: ${refused} of ${PER_IP_CAP + 3} got 421, expected 3`);
    report.add("per_ip_421", refused);
    for (const t of tries) t.conn?.destroy();
  }
  await sleep(200);

  // Global cap: fill the headroom evenly, then one more from a held address (421), and one from a
  // fresh address (admitted; the oldest idle connection of a fuller address is evicted with 421).
  const extra: LineSocket[] = [];
  for (let i = 0; i < HEADROOM; i++) {
    const t = await greet(relay.ports.smtp, idleSource(10_000 + Math.floor(i / IDLE_PER_IP)));
    if (t.code === 220 && t.conn) extra.push(t.conn);
  }
  held.push(...extra);
  report.check(extra.length === HEADROOM, `filling the headroom: ${extra.length} of ${HEADROOM} admitted`);
  const over = await greet(relay.ports.smtp, idleSource(0));
  report.check(over.code === 421, `a newcomer to the full listener from a held address got ${over.code}`);
  over.conn?.destroy();
  const fresh = await greet(relay.ports.smtp, "127.0.0.5");
  report.check(
    fresh.code === 220,
    `a newcomer from a fresh address got ${fresh.code}, expected 220 after an eviction`,
  );
  await sleep(300);
  const evicted = held.filter((c) => c.ended).length;
  report.check(evicted === 1, `${evicted} idle connections were closed to make room, expected 1`);
  fresh.conn?.destroy();
  for (const c of relay.crashes) report.fail(c);
  for (const l of relay.bugLines()) report.fail(`relay log: ${l}`);
  held.forEach((c) => c.destroy());
  const stopped = await relay.stop();
  report.check(
    stopped.code === 0,
    `SIGTERM with the connections closing: exit ${stopped.code ?? stopped.signal}`,
  );

  report.set("idle", plan.smtp + plan.odmr);
  report.set("open_s", openSeconds.toFixed(1));
  report.set("rss", `${mib(rssBefore)}->${mib(rssHeld)}`);
  report.set("kib_per_conn", ((rssHeld - rssBefore) / 1024 / (plan.smtp + plan.odmr)).toFixed(1));
  report.set("fds", `${fdsBefore}->${fdsHeld}`);
  report.set("intake_msg_s", `${baseline.intake.toFixed(0)}->${loaded.intake.toFixed(0)}`);
  report.set("atrn_msg_s", `${baseline.atrn.toFixed(0)}->${loaded.atrn.toFixed(0)}`);
  report.set("global_421", over.code === 421 ? 1 : 0);
  report.set("evicted_421", evicted);
}

/** Connects and reads the greeting; keeps the connection when it is a 220. */
async function greet(port: number, source: string): Promise<{ code: number; conn: LineSocket | null }> {
  try {
    const conn = await LineSocket.connect({ port, localAddress: source });
    const reply = await conn.reply(10_000);
    if (reply.code !== 220) conn.destroy();
    return { code: reply.code, conn: reply.code === 220 ? conn : null };
  } catch {
    return { code: 0, conn: null };
  }
}
