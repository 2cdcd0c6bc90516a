/**
 * The lease heartbeat runs on a connection of its own (src/queue/pg/pg_leases.ts): a node whose pool
 * is saturated (every connection busy with slow queries) still renews its domain leases, so another
 * node cannot take a domain this one is delivering. Real cluster, real time, a short ttl.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import { type TwoNodes, twoQueueNodes } from "../support/pg_nodes.ts";
import { postgresSkipReason } from "../support/postgres.ts";

/** Lease ttl of the test nodes: beats every 200 ms. */
const TTL_MS = 600;

describe("lease heartbeat under a saturated pool", { skip: postgresSkipReason() }, () => {
  let nodes: TwoNodes;
  let nodeA: PostgresQueue;
  let nodeB: PostgresQueue;

  before(async () => {
    nodes = await twoQueueNodes({
      database: "heartbeat",
      domains: ["hosted.test"],
      poolSizes: [1, 2],
      leaseTtlMs: TTL_MS,
    });
    ({ a: nodeA, b: nodeB } = nodes);
  });

  after(() => nodes?.close());

  test("leases outlive several ttls while the node's only pooled connection is held", async () => {
    assert.ok(await nodeA.leases.tryAcquire(["hosted.test"], "s1", 60_000));
    const held = await nodeA.db.pool.connect();
    try {
      // Four ttls with the pool exhausted: without its own connection the beat would wait here.
      await new Promise((r) => setTimeout(r, 4 * TTL_MS));
      assert.equal(await nodeB.leases.tryAcquire(["hosted.test"], "s2", 60_000), false);
      const live = await nodeB.db.query<{ node: string }>(
        "SELECT node FROM domain_leases WHERE domain = 'hosted.test'",
      );
      assert.deepEqual(live.rows.map((r) => r.node), [nodeA.node]);
    } finally {
      held.release();
    }
    await nodeA.leases.release("s1");
    assert.equal(await nodeB.leases.tryAcquire(["hosted.test"], "s2", 60_000), true);
  });
});
