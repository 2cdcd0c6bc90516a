/**
 * Two relay PROCESSES (`src/main.ts serve` on the runtime running this test) on one shared PostgreSQL
 * queue, driven over real loopback sockets only: mail accepted by either node's intake is collected by
 * one ATRN on either node; a node SIGKILLed mid-delivery loses nothing (its domain lease expires
 * `clusterLeaseTtl` after its last heartbeat and the other node delivers the rest, at least once);
 * two ATRNs for one domain at the same moment on the two nodes turn exactly one (the other gets 451,
 * RFC 2645 5.2.1); `pull --watch` held on one node is woken by mail accepted on the other.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { PullOptions } from "../../src/customer/pull.ts";
import type { PollResult } from "../../src/customer/outcome.ts";
import {
  odmrLogin,
  pollNode,
  provision,
  query,
  queueCounts,
  type RelayNode,
  sleep,
  spawnNode,
  submit,
  waitUntil,
} from "../support/cluster.ts";
import { type FakeCustomer, startFakeCustomer } from "../support/fake_customer.ts";
import { startFakeMx } from "../support/fake_mx.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { playCustomer } from "../server/odmr_helpers.ts";

const USER = "alice";
const SECRET = "alice-secret";
/** One domain per case, so a case's leftovers cannot satisfy another case. */
const DOMAINS = ["all.test", "kill.test", "race.test", "watch.test"];
/** The shortest lease the config allows: a dead node's domains are free again 3 s after its last beat. */
const LEASE_TTL_MS = 3000;

/** The customer's side of one poll: alice collects `domain` from `node` into the local server. */
function pollOf(node: RelayNode, domain: string, localPort: number, extra: Partial<PullOptions> = {}) {
  return pollNode(node, { username: USER, secret: SECRET }, domain, localPort, extra);
}

/** Rejects after `ms` (to bound a promise that should settle by itself). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Submits `count` messages for `domain` through `node`'s intake; each must be accepted (250). */
async function sendMany(node: RelayNode, domain: string, prefix: string, count: number): Promise<string[]> {
  const subjects: string[] = [];
  for (let i = 0; i < count; i++) {
    const subject = `${prefix}-${i}`;
    const r = await submit(node.smtpPort, `u${i}@${domain}`, subject);
    assert.ok(r.accepted, `${subject} via ${node.name}: ${r.line}`);
    subjects.push(subject);
  }
  return subjects;
}

/** The subject of a message as the local server received it. */
function subjectOf(data: string | Uint8Array): string {
  const text = typeof data === "string" ? data : new TextDecoder().decode(data);
  return /^Subject: (\S+)/m.exec(text)?.[1] ?? "(none)";
}

/** Queued recipients of one domain in the shared queue. */
async function queuedIn(database: string, domain: string): Promise<number> {
  const [row] = await query<{ n: number }>(
    database,
    `SELECT count(*)::int AS n FROM recipients WHERE status = 'queued' AND domain = '${domain}'`,
  );
  return row!.n;
}

describe("two relay processes on one PostgreSQL queue", { skip: postgresSkipReason() }, () => {
  let server: TestPostgres | undefined;
  let url = "";
  let a: RelayNode | undefined;
  let b: RelayNode | undefined;
  const nodeA = () => a ?? assert.fail("node A did not start");
  const nodeB = () => b ?? assert.fail("node B did not start");
  const startB = () =>
    spawnNode({
      database: url,
      nodeName: "B",
      flags: { "cluster-lease-ttl": `${LEASE_TTL_MS / 1000}s`, "atrn-max-per-minute": "1000" },
    });

  before(async () => {
    server = await startPostgres();
    url = await server.createDatabase("two_nodes");
    await provision(url, { user: USER, secret: SECRET, domains: DOMAINS });
    const flags = { "cluster-lease-ttl": `${LEASE_TTL_MS / 1000}s`, "atrn-max-per-minute": "1000" };
    [a, b] = await Promise.all([spawnNode({ database: url, nodeName: "A", flags }), startB()]);
  });
  after(async () => {
    try {
      await Promise.all([a?.kill(), b?.kill()]);
    } finally {
      await server?.stop();
    }
  });

  it("30 messages accepted by each node; one ATRN on either node collects all 60", async () => {
    const sent = [
      ...(await sendMany(nodeA(), "all.test", "via-a", 30)),
      ...(await sendMany(nodeB(), "all.test", "via-b", 30)),
    ];
    assert.equal(await queuedIn(url, "all.test"), 60);
    const local = await startFakeMx({ name: "local.test" });
    try {
      const result = await within(pollOf(nodeA(), "all.test", local.port), 30_000, "the poll on A");
      assert.equal(result.outcome, "turned", result.message);
      assert.equal(result.messages, 60, result.message);
      assert.deepEqual(local.messages.map((m) => subjectOf(m.data)).sort(), [...sent].sort());
      assert.equal(local.sessions.length, 1, "one session collected everything");
    } finally {
      await local.close();
    }
    assert.equal(await queuedIn(url, "all.test"), 0);
  });

  it("both nodes get an ATRN for one domain at the same moment: exactly one turns, the other gets 451", async () => {
    for (let round = 0; round < 3; round++) {
      await sendMany(nodeA(), "race.test", `race${round}`, 3);
      // Both sessions authenticated first, so the two ATRNs leave together.
      const [onA, onB] = await Promise.all([
        odmrLogin(nodeA().odmrPort, USER, SECRET),
        odmrLogin(nodeB().odmrPort, USER, SECRET),
      ]);
      try {
        const replies = await Promise.all([onA, onB].map(async (peer) => {
          await peer.sendLine("ATRN race.test");
          return (await peer.readReply()).at(-1) ?? "";
        }));
        const turned = replies.filter((r) => r.startsWith("250 "));
        const busy = replies.filter((r) => r.startsWith("451 "));
        assert.deepEqual([turned.length, busy.length], [1, 1], `round ${round}: ${JSON.stringify(replies)}`);
        // The turned connection is ours to serve as the customer: collect, so the next round starts empty.
        const winner = replies[0]!.startsWith("250 ") ? onA : onB;
        const log = await within(playCustomer(winner), 15_000, "the turned session");
        assert.equal(log.messages.length, 3);
        assert.ok(log.quit, "the relay ended the session with QUIT");
      } finally {
        onA.close();
        onB.close();
      }
      await waitUntil(async () => (await queuedIn(url, "race.test")) === 0, "race.test collected", 5000);
    }
  });

  it("node B SIGKILLed mid-delivery: A collects the rest once the lease expires; nothing lost", async () => {
    const sent = await sendMany(nodeA(), "kill.test", "kill", 30);
    // A local server slow per message while B delivers, so B is killed with most of the mail unsent.
    let slow = true;
    const local: FakeCustomer = await startFakeCustomer({
      endOfData: () => slow ? { kind: "delay", ms: 100, reply: "250 2.0.0 Ok: queued" } : undefined,
    });
    try {
      const onB = pollOf(nodeB(), "kill.test", local.port);
      await waitUntil(
        () => (local.sessions[0]?.messages.length ?? 0) >= 5,
        "B to deliver 5 messages",
        20_000,
      );
      await nodeB().kill();
      const killedAt = Date.now();
      slow = false;
      const cut = await within(onB, 20_000, "the poll on B after the kill");
      assert.notEqual(cut.outcome, "turned", `B's session was cut, not ended: ${cut.message}`);
      const fromB = local.sessions[0]!.messages.length;
      assert.ok(fromB < sent.length, `B was killed mid-delivery (${fromB} of ${sent.length} delivered)`);

      // B's lease is still live (B beat at most a third of the ttl ago): A must refuse, then turn.
      const attempts: PollResult[] = [];
      let collected: PollResult | undefined;
      while (!collected) {
        assert.ok(
          Date.now() - killedAt < LEASE_TTL_MS + 10_000,
          `A never turned: ${JSON.stringify(attempts)}`,
        );
        const r = await within(pollOf(nodeA(), "kill.test", local.port), 20_000, "a poll on A");
        attempts.push(r);
        if (r.outcome === "turned") collected = r;
        else await sleep(100);
      }
      const waited = Date.now() - killedAt;
      console.log(
        `B delivered ${fromB} before the kill; A turned after ${waited} ms and ${attempts.length} ATRNs, delivering ${collected.messages}`,
      );
      assert.equal(
        attempts[0]!.outcome,
        "refused",
        `the first ATRN on A met B's lease: ${attempts[0]!.message}`,
      );
      assert.match(attempts[0]!.message, /451/);
      assert.ok(attempts.slice(0, -1).every((r) => /451/.test(r.message)), JSON.stringify(attempts));
      // Expired within the ttl of the kill, plus one poll's round trip on a loaded machine.
      assert.ok(waited < LEASE_TTL_MS + 5000, `A turned ${waited} ms after the kill`);

      const received = local.sessions.flatMap((s) => s.messages.map((m) => subjectOf(m.data)));
      assert.ok(received.length >= sent.length, `at least once: ${received.length} of ${sent.length}`);
      assert.deepEqual([...new Set(received)].sort(), [...sent].sort());
      assert.equal(collected.messages + fromB >= sent.length, true);
      assert.equal(await queuedIn(url, "kill.test"), 0);
    } finally {
      await local.close();
    }
    // B comes back on the same database; the rest of the suite uses it again.
    b = await startB();
    assert.deepEqual(await queueCounts(url), { queued: 0, messages: 0 });
  });

  it("pull --watch held on node B is woken by mail accepted on node A", async () => {
    const local = await startFakeMx({ name: "local.test" });
    const stop = new AbortController();
    try {
      const session = pollOf(nodeB(), "watch.test", local.port, { watch: true, abandon: stop.signal });
      await waitUntil(
        async () => {
          const status = (await nodeB().get("/status")).body as { watching?: unknown[] } | null;
          return (status?.watching?.length ?? 0) === 1;
        },
        "the session to watch on B",
        15_000,
      );
      for (let i = 0; i < 2; i++) {
        const sentAt = Date.now();
        const r = await submit(nodeA().smtpPort, `w${i}@watch.test`, `watch-${i}`);
        assert.ok(r.accepted, r.line);
        // Far below the keepalive (2 min): only the NOTIFY from A's enqueue can have woken B this fast.
        await waitUntil(() => local.messages.length === i + 1, `watch-${i} pushed by B`, 10_000);
        assert.ok(Date.now() - sentAt < 10_000);
      }
      assert.deepEqual(local.messages.map((m) => subjectOf(m.data)), ["watch-0", "watch-1"]);
      stop.abort();
      const result = await within(session, 15_000, "the watching poll after the stop");
      assert.equal(result.messages, 2, result.message);
    } finally {
      stop.abort();
      await local.close();
    }
    await waitUntil(async () => (await queuedIn(url, "watch.test")) === 0, "watch.test empty", 5000);
  });
});
