/**
 * Suite 3, fuzzing both listeners: generated sessions (fuzz_grammar.ts) run many at a time against
 * one relay process: the intake, the ODMR port and, with a certificate, STARTTLS and the implicit-TLS
 * port; sessions that authenticate and turn meet a fuzzy customer. Checks:
 * - the process never exits, and its log has no internal error or unhandled rejection;
 * - no reply is `421 4.3.0` (the session loop's internal-error path);
 * - nothing leaks: open file descriptors and /status sessions are back where they were once the
 *   sessions are over, and the relay is idle (CPU time over IDLE_MS: a leaked timer loop would show);
 * - RSS flat: the second half of the run grows it by less than RSS_GROWTH_LIMIT;
 * - a well-formed intake session and an ATRN collection work right after.
 * Every failing session is printed with the seed, its number and its bytes;
 * `--fuzz-session N` (with the same --seed) plays that one session again.
 */
import type { SuiteContext } from "./lib/context.ts";
import { selfSignedCert } from "./lib/cert.ts";
import { odmrLogin, serveTurned } from "./lib/customer.ts";
import { makeMessage } from "./lib/messages.ts";
import { freePort, newRelay, sleep } from "./lib/relay.ts";
import { mib, showBytes } from "./lib/report.ts";
import { Sink } from "./lib/sink.ts";
import { fill } from "./lib/traffic.ts";
import { canMount, mountTmpfs } from "./lib/tmpfs.ts";
import { join } from "node:path";
import { sendOne, sourceAddress } from "./lib/smtp.ts";
import { type FuzzSession, type FuzzWorld, generateSession } from "./fuzz_grammar.ts";
import { runSession } from "./fuzz_client.ts";

const PLAN = {
  ci: { sessions: 10_000, concurrency: 64 },
  heavy: { sessions: 100_000, concurrency: 96 },
};
const ACCOUNT = {
  user: "fuzz",
  secret: "fuzz-secret-0123456789",
  domains: ["fuzz1.chaos.test", "fuzz2.chaos.test", "fuzz3.chaos.test", "fuzz4.chaos.test"],
};
const OTHER = { user: "other", secret: "other-secret-0123456789", domains: ["other.chaos.test"] };
/** The fuzz relay's data directory (a tmpfs): the queue stays small, DSNs and deliveries drain it. */
const DATA_TMPFS_BYTES = 512 * 1024 * 1024;
/** Sessions run before the baseline is taken (allocator and JIT warm-up). */
const WARMUP_SESSIONS = 1000;
/** Mail kept waiting for the fuzz account, so sessions that turn have something to deliver. */
const QUEUE_FLOOR = 80;
const TOP_UP_EVERY = 250;
/** Longest wait for the relay's sessions to end after the last fuzz session. */
const DRAIN_MS = 20_000;
/** Open descriptors the relay may hold beyond its baseline afterwards (WAL files come and go). */
const FD_SLACK = 4;
/** CPU ticks (1/100 s) the idle relay may use over IDLE_MS. */
const IDLE_MS = 2000;
const IDLE_TICKS = 20;
/** RSS growth allowed over the second half of the run. */
const RSS_GROWTH_LIMIT = 48 * 1024 * 1024;
/** Failing sessions printed in full. */
const MAX_PRINTED = 5;

/** Runs the fuzz suite. */
export async function fuzzSuite(ctx: SuiteContext): Promise<void> {
  const plan = { ...(ctx.heavy ? PLAN.heavy : PLAN.ci) };
  // CHAOS_FUZZ_SESSIONS=N shortens (or lengthens) a run while working on the fuzzer itself.
  if (process.env.CHAOS_FUZZ_SESSIONS) {
    plan.sessions = Math.max(WARMUP_SESSIONS + 2, Number(process.env.CHAOS_FUZZ_SESSIONS));
  }
  const { report } = ctx;
  const cert = selfSignedCert(ctx.dir);
  if (!cert) report.note("openssl not found: fuzzing without TLS");
  const world: FuzzWorld = {
    user: ACCOUNT.user,
    domains: ACCOUNT.domains,
    otherDomain: OTHER.domains[0]!,
    tls: !!cert,
  };
  // On a tmpfs when we may mount one: the fuzz is not about durability, and every fsync of a commit
  // stalls the relay's one event loop (measured: twice the sessions per second without them).
  const dataDir = canMount()
    ? join(mountTmpfs(ctx.scope, ctx.path("fuzz-fs"), DATA_TMPFS_BYTES).dir, "data")
    : ctx.path("fuzz-data");
  // Customers that refuse with 5xx make the relay owe DSNs: they go to a loopback sink, never out.
  const smarthost = await new Sink().listen();
  ctx.scope.defer("close smarthost", () => smarthost.close());
  const odmrsPort = cert ? await freePort() : 0;
  const { relay } = newRelay(ctx, "fuzz", [ACCOUNT, OTHER], {
    logLevel: "info", // connect lines map a logged error's cid back to the session that caused it
    smtpMaxConnections: 2000,
    smtpMaxConnectionsPerIp: 200,
    odmrMaxConnections: 2000,
    odmrMaxConnectionsPerIp: 200,
    atrnMaxPerMinute: 1_000_000,
    smarthost: `127.0.0.1:${smarthost.port}`,
    smarthostTls: "opportunistic",
    ...(cert
      ? { tlsCertFile: cert.certFile, tlsKeyFile: cert.keyFile, odmrsListen: `127.0.0.1:${odmrsPort}` }
      : {}),
  }, dataDir);
  await relay.start();
  const ports = { smtp: relay.ports.smtp, odmr: relay.ports.odmr, odmrs: odmrsPort };
  const target = (i: number) => ({
    ports,
    user: ACCOUNT.user,
    secret: ACCOUNT.secret,
    source: sourceAddress(i),
  });

  const only = process.env.CHAOS_FUZZ_SESSION;
  if (only !== undefined) return await replay(Number(only));

  const bySource = new Map<string, number>();
  let failingPrinted = 0;
  let turned = 0;
  const atrnReplies = new Map<number, number>();
  let internalErrors = 0;
  let unreachable = 0;
  let bytes = 0;
  const printFailure = (session: FuzzSession, why: string, received: string) => {
    report.fail(`session ${session.index} (seed ${report.seed}): ${why}`);
    if (failingPrinted++ >= MAX_PRINTED) return;
    console.error(describe(session));
    console.error(`  received: ${showBytes(Buffer.from(received, "latin1"), 1200)}`);
    console.error(
      `  replay: CHAOS_FUZZ_SESSION=${session.index} bun scripts/chaos/main.ts --suite fuzz --seed ${report.seed}`,
    );
  };
  const runRange = async (from: number, to: number) => {
    let next = from;
    const worker = async () => {
      while (next < to && relay.running) {
        const i = next++;
        const session = generateSession(report.seed, i, world);
        const t = target(i);
        const out = await runSession(session, t);
        if (out.error) unreachable++;
        bySource.set(`${t.source}:${out.localPort}`, i);
        bytes += out.received.length;
        if (out.turned) turned++;
        if (out.atrn !== null) atrnReplies.set(out.atrn, (atrnReplies.get(out.atrn) ?? 0) + 1);
        if (/(^|\n)421[ -]4\.3\.0/.test(out.received)) {
          internalErrors++;
          printFailure(session, "the relay answered 421 4.3.0 (internal error)", out.received);
        }
        if (i % TOP_UP_EVERY === 0) await topUp();
      }
    };
    await Promise.all(Array.from({ length: plan.concurrency }, worker));
  };
  let made = 0;
  const topUp = async () => {
    const status = await relay.status().catch(() => null);
    if (!status || status.queue.recipients >= QUEUE_FLOOR) return;
    await fill({
      port: relay.ports.smtp,
      rng: ctx.rng,
      count: QUEUE_FLOOR,
      workers: 4,
      make: () =>
        makeMessage(ctx.rng, `z${report.seed}`, made++, {
          from: `s${made}@remote.chaos.test`,
          rcpts: [`q${made}@${ACCOUNT.domains[made % ACCOUNT.domains.length]}`],
        }),
    });
  };

  await topUp();
  const t0 = performance.now();
  await runRange(0, WARMUP_SESSIONS);
  await drain();
  const fdsBefore = relay.fds();
  const rssBase = relay.rss();
  const half = Math.floor((WARMUP_SESSIONS + plan.sessions) / 2);
  await runRange(WARMUP_SESSIONS, half);
  const rssMid = relay.rss();
  await runRange(half, plan.sessions);
  const fuzzSeconds = (performance.now() - t0) / 1000;
  const relayCpuSeconds = relay.cpuTicks() / 100;
  report.check(relay.running, "the relay died during the fuzz");
  const sessionsLeft = await drain();
  const rssEnd = relay.rss();
  const fdsAfter = relay.fds();
  report.check(sessionsLeft === 0, `${sessionsLeft} sessions still open ${DRAIN_MS} ms after the fuzz`);
  report.check(fdsAfter <= fdsBefore + FD_SLACK, `open descriptors ${fdsBefore} before, ${fdsAfter} after`);
  const ticks0 = relay.cpuTicks();
  await sleep(IDLE_MS);
  const idleTicks = relay.cpuTicks() - ticks0;
  report.check(idleTicks <= IDLE_TICKS, `the idle relay used ${idleTicks} CPU ticks in ${IDLE_MS} ms`);
  report.check(rssEnd - rssMid <= RSS_GROWTH_LIMIT, `RSS grew ${mib(rssEnd - rssMid)} over the second half`);
  await wellFormed();

  // The log: any internal error, mapped back to the session that caused it.
  const log = relay.log();
  const connects = new Map<string, string>();
  for (const m of log.matchAll(/msg=connect cid=(\S+) .*?ip=(\S+) port=(\d+)/g)) {
    connects.set(m[1]!, `${m[2]}:${m[3]}`);
  }
  for (const line of relay.bugLines()) {
    const cid = /cid=(\S+)/.exec(line)?.[1];
    const index = cid ? bySource.get(connects.get(cid) ?? "") : undefined;
    if (index === undefined) report.fail(`relay log: ${line.slice(0, 400)}`);
    else printFailure(generateSession(report.seed, index, world), `relay log: ${line.slice(0, 400)}`, "");
  }
  for (const c of relay.crashes) report.fail(c);
  const stopped = await relay.stop();
  report.check(stopped.code === 0, `SIGTERM after the fuzz: exit ${stopped.code ?? stopped.signal}`);

  report.set("sessions", plan.sessions);
  report.set("per_s", Math.round(plan.sessions / fuzzSeconds));
  report.set("relay_cpu_s", relayCpuSeconds.toFixed(1));
  report.set("turned", turned);
  report.set("atrn_replies", [...atrnReplies].sort().map(([k, v]) => `${k}:${v}`).join(","));
  report.set("internal_errors", internalErrors);
  report.set("unreachable", unreachable);
  report.set("received", mib(bytes));
  report.set("fds", `${fdsBefore}->${fdsAfter}`);
  report.set("sessions_after", sessionsLeft);
  report.set("idle_ticks", idleTicks);
  report.set("rss", `${mib(rssBase)}->${mib(rssMid)}->${mib(rssEnd)}`);
  report.set("dsns", smarthost.messages);

  /** Waits for /status to show no sessions; returns how many are left. */
  async function drain(): Promise<number> {
    const deadline = Date.now() + DRAIN_MS;
    for (;;) {
      const s = await relay.status();
      const open = s.sessions.smtp + s.sessions.odmr;
      if (open === 0 || Date.now() > deadline) return open;
      await sleep(50);
    }
  }

  /** A plain message, then an ATRN that collects it: the relay still works after the fuzz. */
  async function wellFormed(): Promise<void> {
    const m = makeMessage(ctx.rng, `w${report.seed}`, 0, {
      from: "after@remote.chaos.test",
      rcpts: [`after@${ACCOUNT.domains[0]}`],
    });
    const sent = await sendOne({ port: relay.ports.smtp }, m);
    report.check(sent.outcome === "accepted", `intake after the fuzz: ${sent.code} ${sent.text}`);
    try {
      const conn = await odmrLogin({ port: relay.ports.odmr }, ACCOUNT.user, ACCOUNT.secret);
      const atrn = await conn.command(`ATRN ${ACCOUNT.domains[0]}`, 10_000);
      report.check(atrn.code === 250, `ATRN after the fuzz: ${atrn.lines.join(" / ")}`);
      const got = atrn.code === 250 ? await serveTurned(conn) : { messages: [] };
      const found = got.messages.some((c) => c.data.includes(m.record.messageId));
      report.check(
        found,
        `the ATRN after the fuzz did not deliver the new message (${got.messages.length} delivered)`,
      );
    } catch (error) {
      report.fail(`ATRN after the fuzz: ${(error as Error).message}`);
    }
  }

  /** Plays one session and prints everything about it. */
  async function replay(index: number): Promise<void> {
    const session = generateSession(report.seed, index, world);
    console.log(describe(session));
    const out = await runSession(session, target(index));
    console.log(`  received: ${showBytes(Buffer.from(out.received, "latin1"), 4000)}`);
    await sleep(200);
    for (const l of relay.bugLines()) report.fail(`relay log: ${l}`);
    if (/(^|\n)421[ -]4\.3\.0/.test(out.received)) report.fail("421 4.3.0 in the replies");
    for (const c of relay.crashes) report.fail(c);
    report.set("replayed", index);
  }
}

/** A failing session, replayable: its number, listener, corruptions and every step's bytes. */
function describe(session: FuzzSession): string {
  const steps = session.steps.map((s) =>
    s.kind === "send"
      ? `    send ${showBytes(s.bytes, 300)}${s.dripMs ? ` drip ${s.dripMs}ms` : ""}`
      : `    ${s.kind} ${JSON.stringify({ ...s, kind: undefined })}`
  );
  return `  session ${session.index} -> ${session.listener} [${session.tags.join(",")}]\n${steps.join("\n")}`;
}
