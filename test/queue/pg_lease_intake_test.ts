/**
 * A lease is taken (and renewed, before every page and every watched message) under FOR KEY SHARE on the
 * domain rows (src/queue/pg/pg_leases.ts), which conflicts only with the FOR UPDATE of expiry, operator
 * bounces and domain removal. An intake transaction of the same domain (FOR NO KEY UPDATE, counter
 * updates) that is still open, a large body being written, must not hold the session up.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.ts";
import { PgEnqueue } from "../../src/queue/pg/pg_enqueue.ts";
import type { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import { type TwoNodes, twoQueueNodes } from "../support/pg_nodes.ts";
import { postgresSkipReason } from "../support/postgres.ts";
import { pendingAfter } from "../support/pending.ts";
import { bodyOf, incoming } from "../support/store.ts";

const T0 = 1_700_000_000_000;

describe("lease renewal against an open intake", { skip: postgresSkipReason() }, () => {
  let nodes: TwoNodes;
  let nodeA: PostgresQueue;
  let nodeB: PostgresQueue;
  const clock = new ManualClock(T0);

  before(async () => {
    nodes = await twoQueueNodes({ database: "lease_intake", domains: ["hosted.test"], clock });
    ({ a: nodeA, b: nodeB } = nodes);
  });

  after(() => nodes?.close());

  test("a session renewing its lease does not wait for an intake transaction of its domain", async () => {
    // The real intake code, inside a transaction kept open (a large body still being written).
    const intake = new PgEnqueue(nodeA.db, clock, nodeA.node);
    const client = await nodeA.db.pool.connect();
    let acquiring: Promise<boolean> | undefined;
    try {
      await client.query("BEGIN");
      await intake.enqueueWith(client, incoming("alice@outside.test", ["bob@hosted.test"]), bodyOf("x\r\n"));
      acquiring = nodeB.leases.tryAcquire(["hosted.test"], "s1", 60_000);
      const waited = await pendingAfter(acquiring, 300);
      await client.query("COMMIT");
      assert.equal(waited, false, "tryAcquire waited for the intake's domain row lock");
    } finally {
      await client.query("ROLLBACK").catch(() => {});
      client.release();
      await acquiring?.catch(() => {});
    }
  });
});
