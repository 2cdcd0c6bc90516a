/**
 * The lease heartbeat runs on a connection of its own (src/queue/pg/pg_leases.ts): a node whose pool
 * is saturated (every connection busy with slow queries) still renews its domain leases, so another
 * node cannot take a domain this one is delivering. Real cluster, real time, a short ttl.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { testSecrets } from "../support/store.ts";

/** Lease ttl of the test nodes: beats every 200 ms. */
const TTL_MS = 600;

describe("lease heartbeat under a saturated pool", { skip: postgresSkipReason() }, () => {
  let cluster: TestPostgres;
  let nodeA: PostgresQueue;
  let nodeB: PostgresQueue;

  before(async () => {
    cluster = await startPostgres();
    const url = await cluster.createDatabase("heartbeat");
    nodeA = await PostgresQueue.open(url, { node: "a", poolSize: 1, leaseTtlMs: TTL_MS });
    nodeB = await PostgresQueue.open(url, { node: "b", poolSize: 2, leaseTtlMs: TTL_MS });
    await nodeB.addAccount("cust", testSecrets("pw"));
    await nodeB.addDomain("hosted.test", "cust");
  });

  after(async () => {
    await nodeA?.close();
    await nodeB?.close();
    await cluster?.stop();
  });

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
