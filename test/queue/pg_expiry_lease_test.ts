/**
 * Expiry and operator bounces never fail mail a session is delivering on any node
 * (src/queue/pg/pg_leases.ts `domainBeingDelivered`): the check runs in the failing statement after
 * the domain row is locked, and taking a lease share-locks the same row, so a session that starts
 * (or wakes from a watch) while an expiry is in flight reads the queue only after it committed.
 * Without the lock, a recipient the customer accepted could be reported "expired" to its sender.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.ts";
import type { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import { type TwoNodes, twoQueueNodes } from "../support/pg_nodes.ts";
import { postgresSkipReason } from "../support/postgres.ts";
import { pendingAfter } from "../support/pending.ts";
import { bodyOf, incoming } from "../support/store.ts";

const T0 = 1_700_000_000_000;
const DAY = 86_400_000;
const BODY = "Subject: hello\r\nFrom: alice@outside.test\r\n\r\nThe body.\r\n";
const TEXT = "4.4.7 test expiry";

describe("expiry and bounces against delivery leases", { skip: postgresSkipReason() }, () => {
  let nodes: TwoNodes;
  let nodeA: PostgresQueue;
  let nodeB: PostgresQueue;

  before(async () => {
    nodes = await twoQueueNodes({
      database: "expiry_lease",
      domains: ["hosted.test"],
      clock: new ManualClock(T0),
    });
    ({ a: nodeA, b: nodeB } = nodes);
  });

  after(() => nodes?.close());

  beforeEach(async () => {
    await nodeA.db.query("DELETE FROM domain_leases");
    await nodeA.db.query("DELETE FROM messages");
  });

  const queue = () => nodeA.enqueue(incoming("alice@outside.test", ["bob@hosted.test"]), bodyOf(BODY));
  const statusOf = async (id: number) => (await nodeA.getMessage(id))?.recipients[0]?.status;

  test("a busy lease on another node keeps the domain's mail from expiring; an idle one does not", async () => {
    const id = await queue();
    assert.ok(await nodeB.leases.tryAcquire(["hosted.test"], "s1", 60_000));
    assert.equal(await nodeA.expireQueued("hosted.test", T0 + DAY, TEXT), 0);
    assert.equal(await statusOf(id), "queued");
    // A watching session waiting for new mail: nothing is in flight, so expiry goes ahead.
    await nodeB.leases.setIdle("s1", true);
    assert.equal(await nodeA.expireQueued("hosted.test", T0 + DAY, TEXT), 1);
    assert.equal(await statusOf(id), "failed");
  });

  test("an operator bounce skips recipients a session delivers right now", async () => {
    const id = await queue();
    assert.ok(await nodeB.leases.tryAcquire(["hosted.test"], "s1", 60_000));
    assert.equal(await nodeA.bounceMessage(id, "operator"), 0);
    assert.equal(await statusOf(id), "queued");
    await nodeB.leases.release("s1");
    assert.equal(await nodeA.bounceMessage(id, "operator"), 1);
  });

  test("a lease taken while an expiry holds the domain waits, then finds no expired mail to deliver", async () => {
    const id = await queue();
    // The expiry's first statement (the domain row, FOR UPDATE), held open on its own connection.
    const expiry = await nodeA.db.pool.connect();
    try {
      await expiry.query("BEGIN");
      await expiry.query("SELECT name FROM domains WHERE name = 'hosted.test' FOR UPDATE");
      const acquiring = nodeB.leases.tryAcquire(["hosted.test"], "s2", 60_000);
      assert.ok(await pendingAfter(acquiring, 300), "the lease must wait for the expiry in flight");
      await expiry.query(
        "UPDATE recipients SET status = 'failed', failure_kind = 'expired' WHERE message_id = $1",
        [
          id,
        ],
      );
      await expiry.query("COMMIT");
      assert.ok(await acquiring);
    } finally {
      // A failed assertion must not hand the pool a client inside a transaction that holds the lock.
      await expiry.query("ROLLBACK").catch(() => {});
      expiry.release();
    }
    assert.deepEqual(await nodeB.nextDeliverable(["hosted.test"], 0, 10), []);
  });

  test("an expiry started while a lease is being taken waits, then sees the session and expires nothing", async () => {
    const id = await queue();
    // tryAcquire's transaction (key-share lock, then the lease row), held open before its commit.
    const session = await nodeB.db.pool.connect();
    try {
      await session.query("BEGIN");
      await session.query("SELECT name FROM domains WHERE name = 'hosted.test' FOR KEY SHARE");
      await session.query(
        "INSERT INTO domain_leases (domain, owner, node, expires_at, idle) " +
          "VALUES ('hosted.test', 's3', 'b', (extract(epoch from clock_timestamp()) * 1000)::bigint + 60000, false)",
      );
      const expiring = nodeA.expireQueued("hosted.test", T0 + DAY, TEXT);
      assert.ok(await pendingAfter(expiring, 300), "the expiry must wait for the lease in flight");
      await session.query("COMMIT");
      assert.equal(await expiring, 0);
    } finally {
      await session.query("ROLLBACK").catch(() => {});
      session.release();
    }
    assert.equal(await statusOf(id), "queued");
  });
});
