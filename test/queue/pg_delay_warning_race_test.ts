/**
 * A delay warning rolled back because
 * one of the message's recipients left the queue between the read and the mark
 * (src/queue/pg/pg_delay_warnings.ts `marked.length < rows.length`) is never sent for the recipients
 * still waiting: the step's watermark moves past them in the same run. SQLite reads and marks in one
 * synchronous transaction, so it has no such window. A real delivery on a second node commits inside
 * the window (held open by a gate in the router, after routing and before the mark).
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import type pg from "pg";
import { ManualClock } from "../../src/clock.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { pgSendDelayWarnings } from "../../src/queue/pg/pg_delay_warnings.ts";
import { PgEnqueue } from "../../src/queue/pg/pg_enqueue.ts";
import { PgOutbound } from "../../src/queue/pg/pg_outbound.ts";
import { PgReportRouter, type PgRouted } from "../../src/queue/pg/pg_report_router.ts";
import type { Report } from "../../src/queue/report_router.ts";
import type { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import { type TwoNodes, twoQueueNodes } from "../support/pg_nodes.ts";
import { postgresSkipReason } from "../support/postgres.ts";
import { bodyOf, incoming } from "../support/store.ts";

const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;
const BODY = "Subject: hello\r\nFrom: alice@outside.test\r\n\r\nThe body.\r\n";

/** A router that runs `during` once after its first route, inside the caller's open transaction. */
class HookedRouter extends PgReportRouter {
  during: (() => Promise<void>) | null = null;

  override async route(client: pg.PoolClient, report: Report): Promise<PgRouted> {
    const routed = await super.route(client, report);
    const hook = this.during;
    this.during = null;
    await hook?.();
    return routed;
  }
}

describe("delay warnings racing a delivery", { skip: postgresSkipReason() }, () => {
  let nodes: TwoNodes;
  let clock: ManualClock;
  let nodeA: PostgresQueue;
  let nodeB: PostgresQueue;

  before(async () => {
    clock = new ManualClock(T0);
    nodes = await twoQueueNodes({
      database: "review_delay",
      domains: ["hosted.test", "other.test"],
      clock,
      poolSizes: [4, 4],
    });
    ({ a: nodeA, b: nodeB } = nodes);
  });

  after(() => nodes?.close());

  beforeEach(async () => {
    clock.set(T0);
    await nodeA.db.query("DELETE FROM outbound");
    await nodeA.db.query("DELETE FROM messages");
    await nodeA.db.query("DELETE FROM housekeeping_state");
  });

  test("a recipient delivered mid-warning: the one still waiting is warned on a later run", async () => {
    const id = await nodeA.enqueue(
      incoming("alice@outside.test", ["bob@hosted.test", "dan@other.test"]),
      bodyOf(BODY),
    );
    const [hosted] = await nodeB.nextDeliverable(["hosted.test"], id - 1, 1);
    const bob = hosted!.recipients[0]!.id;
    clock.advance(5 * HOUR);
    const logger = silentLogger();
    const router = new HookedRouter(new PgEnqueue(nodeA.db, clock), new PgOutbound(nodeA.db, clock), {
      hostname: "relay.test",
      lifetimeMs: 5 * 86_400_000,
      logger,
    });
    const deps = {
      db: nodeA.db,
      router,
      hostname: "relay.test",
      clock,
      logger,
      maxFullBytes: 100_000,
      steps: [4 * HOUR],
      lifetimeMs: 5 * 86_400_000,
    };
    // Node B delivers bob while node A's warning (read: bob and dan) is between routing and marking.
    router.during = () => nodeB.recordOutcomes(id, [{ id: bob, result: "delivered", code: 250, text: "ok" }]);
    const first = await pgSendDelayWarnings(deps);
    assert.equal(first, 0, "the first warning went back (bob left meanwhile)");
    clock.advance(60_000);
    const second = await pgSendDelayWarnings(deps);
    const warned = (await nodeA.db.query<{ n: number }>(
      "SELECT COUNT(*)::bigint AS n FROM outbound WHERE kind = 'dsn'",
    )).rows[0]!.n;
    const dan = (await nodeA.db.query<{ delay_warnings: number }>(
      "SELECT delay_warnings FROM recipients WHERE message_id = $1",
      [id],
    )).rows;
    assert.equal(
      second + warned,
      2,
      `dan (still queued, past the 4 h step) was never warned: second run ${second}, outbound ${warned}, ` +
        `recipients ${JSON.stringify(dan)}`,
    );
  });
});
