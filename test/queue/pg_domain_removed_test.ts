/**
 * Mail for a domain removed between
 * RCPT (where the intake checks the domain) and the end of DATA. The enqueue locks the destination
 * domain rows, but a row that is gone locks nothing and the insert goes on: the 250 is answered for
 * recipients that no ATRN can collect (no domain, no account), that expiry never looks at (it walks the
 * `domains` table) and that therefore never get a DSN. Expected here: the enqueue refuses them (a 4xx or
 * 5xx for the sender), or they end up reported.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.ts";
import type { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import { type TwoNodes, twoQueueNodes } from "../support/pg_nodes.ts";
import { postgresSkipReason } from "../support/postgres.ts";
import { bodyOf, incoming } from "../support/store.ts";

const T0 = 1_700_000_000_000;

describe("a domain removed before the end of DATA", { skip: postgresSkipReason() }, () => {
  let nodes: TwoNodes;
  let nodeA: PostgresQueue;
  let nodeB: PostgresQueue;

  before(async () => {
    nodes = await twoQueueNodes({
      database: "review_orphan",
      domains: ["gone.test"],
      clock: new ManualClock(T0),
    });
    ({ a: nodeA, b: nodeB } = nodes);
  });

  after(() => nodes?.close());

  test("the enqueue does not accept recipients of a domain that no longer exists", async () => {
    // Node B's intake accepted RCPT TO:<bob@gone.test> (the domain existed) ...
    assert.equal(await nodeB.recipientVerdict("gone.test", "bob"), "accept");
    // ... the operator removes the (still empty) domain on node A ...
    await nodeA.removeDomain("gone.test");
    // ... and DATA ends on node B.
    let id: number | null = null;
    try {
      id = await nodeB.enqueue(
        incoming("alice@outside.test", ["bob@gone.test"]),
        bodyOf("Subject: x\r\n\r\nx\r\n"),
      );
    } catch {
      // Refused: the sender gets a reply other than 250 and keeps responsibility for the message.
    }
    if (id === null) return;
    const candidates = (await nodeA.expiryCandidates()).map((c) => c.name);
    assert.fail(
      `message ${id} was accepted for a domain that is gone; expiry candidates: ${
        JSON.stringify(candidates)
      } ` +
        "(it will never be delivered, expired or reported)",
    );
  });
});
