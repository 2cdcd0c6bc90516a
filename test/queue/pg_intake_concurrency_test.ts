/**
 * Intake transactions of different domains do not wait for each other: the counter triggers fire at
 * COMMIT (migrations/postgres/0002_deferred_counters.sql), so an intake still writing a large body
 * holds only its own domain's row, not the one `queue_totals` row every commit updates.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.ts";
import { PgEnqueue } from "../../src/queue/pg/pg_enqueue.ts";
import { type TwoNodes, twoQueueNodes } from "../support/pg_nodes.ts";
import { postgresSkipReason } from "../support/postgres.ts";
import { pendingAfter } from "../support/pending.ts";
import { bodyOf, incoming } from "../support/store.ts";

const T0 = 1_700_000_000_000;

describe("intake on two nodes, two domains", { skip: postgresSkipReason() }, () => {
  let nodes: TwoNodes;
  const clock = new ManualClock(T0);

  before(async () => {
    nodes = await twoQueueNodes({ database: "intake_concurrency", domains: ["a.test", "b.test"], clock });
  });

  after(() => nodes?.close());

  test("a commit for one domain does not wait for an open intake of another", async () => {
    const { a, b } = nodes;
    // Node A's intake, inside a transaction kept open as while a large body is still being sent.
    const intake = new PgEnqueue(a.db, clock, a.node);
    const client = await a.db.pool.connect();
    let other: Promise<number> | undefined;
    try {
      await client.query("BEGIN");
      await intake.enqueueWith(client, incoming("s@outside.test", ["u@a.test"]), bodyOf("large\r\n"));
      other = b.enqueue(incoming("s@outside.test", ["v@b.test"]), bodyOf("small\r\n"));
      assert.equal(await pendingAfter(other, 300), false, "b.test's commit waited for a.test's open intake");
      await client.query("COMMIT");
    } finally {
      await client.query("ROLLBACK").catch(() => {});
      client.release();
      await other?.catch(() => {});
    }
    // Both counted once each, at their commits.
    const totals = await b.queueCounts();
    assert.equal(totals.messages, 2);
    assert.equal(totals.queuedRecipients, 2);
    const domains = new Map((await b.listDomains()).map((d) => [d.name, d.queuedRecipients]));
    assert.deepEqual([domains.get("a.test"), domains.get("b.test")], [1, 1]);
  });

  test("a transaction rolled back counts nothing, and deletes within a transaction net out", async () => {
    const { a } = nodes;
    const before = await a.queueCounts();
    const client = await a.db.pool.connect();
    try {
      await client.query("BEGIN");
      await new PgEnqueue(a.db, clock, a.node).enqueueWith(
        client,
        incoming("s@outside.test", ["w@a.test"]),
        bodyOf("gone\r\n"),
      );
      await client.query("ROLLBACK");
      await client.query("BEGIN");
      const id = await new PgEnqueue(a.db, clock, a.node).enqueueWith(
        client,
        incoming("s@outside.test", ["x@a.test"]),
        bodyOf("in and out\r\n"),
      );
      await client.query("DELETE FROM recipients WHERE message_id = $1", [id]);
      await client.query("DELETE FROM messages WHERE id = $1", [id]);
      await client.query("COMMIT");
    } finally {
      await client.query("ROLLBACK").catch(() => {});
      client.release();
    }
    assert.deepEqual(await a.queueCounts(), before);
  });
});
