/**
 * The shared queue's database goes away under a running relay PROCESS and comes back. A sender keeps
 * submitting over SMTP the whole time; while PostgreSQL is down every submission must end in a 4xx
 * (RFC 5321 4.2.5 / 6.1: a 250 promises the message is stored), /readyz answers non-200, an ATRN gets
 * a 4xx (454 to AUTH, RFC 4954 6, or 451 to ATRN, RFC 2645 5.2.1) and the process keeps running; when
 * the database is back the same process recovers without a restart, and every message that got a
 * 250 is in the database and collected by one ATRN.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  odmrLogin,
  pollNode,
  provision,
  query,
  queueCounts,
  type RelayNode,
  sleep,
  spawnNode,
  type Submission,
  submit,
  waitUntil,
} from "../support/cluster.ts";
import { startFakeCustomer } from "../support/fake_customer.ts";
import { startFakeMx } from "../support/fake_mx.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { TranscriptPeer } from "../support/transcript.ts";
import { cramAuth } from "../server/odmr_helpers.ts";

const USER = "alice";
const SECRET = "alice-secret";
const DOMAIN = "out.test";
/** The domain of the case where the database goes away under a delivery session. */
const SESSION_DOMAIN = "session.test";
/** The shortest lease the config allows: a lease nobody renews is free again after 3 s. */
const LEASE_TTL_MS = 3000;
/** How long the sender keeps going during the outage (its attempts must all be 4xx). */
const OUTAGE_MS = 2000;

/**
 * A sender that submits one message after another (recipient `mN@out.test`) on `streams` connections
 * side by side until stopped, so that some submission is in flight at any moment (also at the stop).
 */
function startSender(node: RelayNode, streams = 2) {
  const results: Array<Submission & { rcpt: string; startedAt: number; at: number }> = [];
  let stopped = false;
  let next = 0;
  const stream = async () => {
    while (!stopped) {
      const rcpt = `m${next++}@${DOMAIN}`;
      const startedAt = Date.now();
      const r = await submit(node.smtpPort, rcpt, rcpt.replace("@", "-at-"));
      results.push({ ...r, rcpt, startedAt, at: Date.now() });
      // A refusal comes back at once: do not spin.
      if (!r.accepted) await sleep(20);
    }
  };
  const done = Promise.all(Array.from({ length: streams }, stream));
  return {
    results,
    accepted: () => results.filter((r) => r.accepted),
    async stop() {
      stopped = true;
      await done;
    },
  };
}

/**
 * An ODMR attempt while the database may be down: greeting, EHLO, AUTH CRAM-MD5 and, when AUTH
 * passes, ATRN. Returns the first reply that is not a success (or the ATRN reply).
 */
async function atrnAttempt(port: number): Promise<string> {
  const peer = await TranscriptPeer.connect(port, { timeoutMs: 15_000 });
  try {
    const greeting = await peer.readReply();
    if (!greeting.at(-1)!.startsWith("220")) return greeting.at(-1)!;
    await peer.sendLine("EHLO customer.test");
    const ehlo = (await peer.readReply()).at(-1)!;
    if (!ehlo.startsWith("250")) return ehlo;
    const auth = await cramAuth(peer, USER, SECRET);
    if (!auth.startsWith("235")) return auth;
    await peer.sendLine(`ATRN ${DOMAIN}`);
    return (await peer.readReply()).at(-1)!;
  } finally {
    peer.close();
  }
}

/** The node's last log lines, for a failure message. */
function tail(node: RelayNode): string {
  return node.output().trimEnd().split("\n").slice(-40).join("\n");
}

/** `cond`, but failing at once when the relay process has died (a crash is the failure, not a timeout). */
function alive(node: RelayNode, cond: () => boolean | Promise<boolean>): () => boolean | Promise<boolean> {
  return () => {
    if (node.exited) throw new Error(`the relay process died:\n${tail(node)}`);
    return cond();
  };
}

/** One poll by alice of `domain` from `node` into the local server on `localPort`. */
function collect(node: RelayNode, domain: string, localPort: number) {
  return pollNode(node, { username: USER, secret: SECRET }, domain, localPort);
}

describe("the shared queue's database goes away and comes back", { skip: postgresSkipReason() }, () => {
  let server: TestPostgres | undefined;
  let url = "";
  let node: RelayNode | undefined;
  const relay = () => node ?? assert.fail("the relay did not start");
  before(async () => {
    server = await startPostgres();
    url = await server.createDatabase("outage");
    await provision(url, { user: USER, secret: SECRET, domains: [DOMAIN, SESSION_DOMAIN] });
    node = await spawnNode({
      database: url,
      nodeName: "A",
      flags: { "cluster-lease-ttl": `${LEASE_TTL_MS / 1000}s`, "atrn-max-per-minute": "1000" },
    });
  });
  after(async () => {
    try {
      await node?.kill();
    } finally {
      await server?.stop();
    }
  });

  it("4xx and not-ready while down, no 250 for an unstored message, recovery without a restart", async () => {
    const pgs = server!;
    const node = relay();
    const pid = node.pid;
    const sender = startSender(node);
    let dbDown = false;
    let stoppedAt = Infinity;
    let upAt = Infinity;
    let early: TranscriptPeer | undefined;
    try {
      await waitUntil(() => sender.accepted().length >= 10, "10 messages accepted before the outage", 20_000);
      // A customer that authenticated while the database was up sends ATRN while it is down.
      early = await odmrLogin(node.odmrPort, USER, SECRET);

      const downAt = Date.now();
      await pgs.stopServer();
      dbDown = true;
      stoppedAt = Date.now();

      // The relay notices: a submission after the stop is refused with a 4xx (451 at RCPT or to the end
      // of data). That none got a 250 is checked over all of them below.
      await waitUntil(
        alive(node, () => sender.results.some((r) => r.at > stoppedAt && r.code >= 400 && r.code < 500)),
        "a 4xx to a submission during the outage",
        20_000,
      ).catch((error) => {
        const since = sender.results.filter((r) => r.at > stoppedAt).map((r) => `${r.rcpt}: ${r.line}`);
        throw new Error(`${error.message}\nsince the stop: ${since.join("\n")}\n${tail(node)}`);
      });
      await waitUntil(
        alive(node, async () => {
          const status = (await node.get("/readyz")).status;
          return status !== 200 && status !== 0;
        }),
        "/readyz to answer non-200 while the database is down",
        15_000,
      );
      const readyzDown = await node.get("/readyz");
      assert.equal(readyzDown.status, 503, JSON.stringify(readyzDown.body));
      assert.deepEqual((readyzDown.body as { database: boolean }).database, false);

      // A new customer: AUTH cannot look the account up (454, RFC 4954 6), or ATRN cannot (451).
      const atrnReply = await atrnAttempt(node.odmrPort);
      assert.match(atrnReply, /^(454|451) /, `ATRN during the outage: ${atrnReply}`);
      // The customer authenticated before: ATRN cannot check its domains now (RFC 2645 5.2.1: 451),
      // and the session stays usable.
      await early.sendLine(`ATRN ${DOMAIN}`);
      const earlyReply = (await early.readReply()).at(-1)!;
      assert.match(earlyReply, /^451 /, `ATRN of an authenticated session during the outage: ${earlyReply}`);
      await early.sendLine("NOOP");
      assert.match((await early.readReply()).at(-1)!, /^250 /);
      early.close();

      await sleep(Math.max(0, OUTAGE_MS - (Date.now() - downAt)));
      assert.ok(!node.exited, `the relay kept running during the outage:\n${node.output()}`);

      upAt = Date.now();
      await pgs.startServer();
      dbDown = false;
      // The same process recovers: ready again and accepting new mail, without a restart.
      await waitUntil(
        alive(node, async () => (await node.get("/readyz")).status === 200),
        "/readyz 200 again",
        30_000,
      );
      await waitUntil(
        alive(node, () => sender.results.filter((r) => r.at > upAt && r.accepted).length >= 5),
        "5 messages accepted after the database came back",
        30_000,
      );
    } finally {
      early?.close();
      if (dbDown) await pgs.startServer().catch(() => {});
      await sender.stop();
    }
    assert.equal(node.pid, pid);
    assert.ok(!node.exited, `the relay is still the same process:\n${node.output()}`);

    const results = sender.results;
    const accepted = sender.accepted().map((r) => r.rcpt);
    // Every attempt got an answer: 250, or a temporary refusal; never silence, never a 5xx.
    const odd = results.filter((r) => !r.accepted && !(r.code >= 400 && r.code < 500));
    assert.deepEqual(odd, [], "every submission got a 250 or a 4xx");
    // Started after the server was gone and answered before it was back: nothing can have stored it.
    const duringOutage = results.filter((r) => r.startedAt > stoppedAt && r.at < upAt);
    assert.ok(duringOutage.length >= 1, "submissions were attempted during the outage");
    assert.deepEqual(duringOutage.filter((r) => r.accepted), [], "a 250 while the database was down");
    const refused = results.filter((r) => !r.accepted);
    assert.ok(refused.length >= 1);
    console.log(
      `${results.length} submissions: ${accepted.length} accepted, ${refused.length} refused (` +
        [...new Set(refused.map((r) => r.line.slice(0, 3)))].join(",") + ")",
    );

    // Every 250 is stored (a 4xx'd message may be stored too, if its commit landed: a duplicate at
    // worst, which RFC 5321 6.1 accepts; a 250 without a row would be a lost message).
    const stored = new Set(
      (await query<{ address: string }>(url, `SELECT address FROM recipients WHERE status = 'queued'`))
        .map((r) => r.address),
    );
    assert.deepEqual(accepted.filter((a) => !stored.has(a)), [], "accepted but not in the database");

    // One ATRN collects every stored message.
    const local = await startFakeMx({ name: "local.test" });
    try {
      const result = await collect(node, DOMAIN, local.port);
      assert.equal(result.outcome, "turned", result.message);
      assert.equal(result.messages, stored.size);
      const collected = new Set(local.messages.flatMap((m) => m.rcpts));
      assert.deepEqual(accepted.filter((a) => !collected.has(a)), [], "accepted but not collected");
    } finally {
      await local.close();
    }
    assert.deepEqual(await queueCounts(url), { queued: 0, messages: 0 });
    assert.doesNotMatch(node.output(), /uncaught|unhandled/i);
  });
  it("the database goes away under a delivery session: nothing lost, collected once it is back", async () => {
    const pgs = server!;
    const node = relay();
    const sent: string[] = [];
    for (let i = 0; i < 20; i++) {
      const rcpt = `s${i}@${SESSION_DOMAIN}`;
      const r = await submit(node.smtpPort, rcpt, `session-${i}`);
      assert.ok(r.accepted, r.line);
      sent.push(rcpt);
    }
    // A local server slow per message, so the database goes away with most of the mail undelivered.
    let slow = true;
    const local = await startFakeCustomer({
      endOfData: () => slow ? { kind: "delay", ms: 100, reply: "250 2.0.0 Ok: queued" } : undefined,
    });
    let dbDown = false;
    try {
      const first = collect(node, SESSION_DOMAIN, local.port);
      await waitUntil(
        alive(node, () => (local.sessions[0]?.messages.length ?? 0) >= 3),
        "3 messages delivered before the outage",
        20_000,
      );
      await pgs.stopServer();
      dbDown = true;
      slow = false;
      const cut = await first;
      await sleep(500);
      assert.ok(!node.exited, `the relay survived the outage under a session:\n${tail(node)}`);
      await pgs.startServer();
      dbDown = false;
      await waitUntil(
        alive(node, async () => (await node.get("/readyz")).status === 200),
        "/readyz 200",
        30_000,
      );

      // The session's lease could not be released while the database was down; it expires by itself.
      const deadline = Date.now() + LEASE_TTL_MS + 15_000;
      const attempts: string[] = [`first: ${cut.outcome} ${cut.message}`];
      for (;;) {
        assert.ok(Date.now() < deadline, `never collected after the outage: ${attempts.join(" | ")}`);
        const r = await collect(node, SESSION_DOMAIN, local.port);
        attempts.push(`${r.outcome} ${r.message}`);
        if (r.outcome === "turned" || r.outcome === "no-mail") break;
        await sleep(200);
      }
      const received = local.sessions.flatMap((s) => s.messages.flatMap((m) => m.rcpts));
      console.log(
        `delivery under the outage: ${received.length} received for ${sent.length} sent; the cut session: ` +
          `${cut.outcome} (${cut.messages}); ${attempts.length - 1} polls after the outage`,
      );
      const addresses = new Set(received.map((line) => /<([^>]*)>/.exec(line)?.[1] ?? line));
      assert.deepEqual(sent.filter((a) => !addresses.has(a)), [], `lost: ${attempts.join(" | ")}`);
      assert.equal(
        (await query<{ n: number }>(
          url,
          `SELECT count(*)::int AS n FROM recipients WHERE domain = '${SESSION_DOMAIN}'`,
        ))[0]!.n,
        0,
      );
    } finally {
      if (dbDown) await pgs.startServer().catch(() => {});
      await local.close();
    }
    assert.doesNotMatch(node.output(), /uncaught|unhandled/i);
  });
});
