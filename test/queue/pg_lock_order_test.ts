/**
 * lock-order inversions between a
 * delivery's outcome record (src/queue/pg/pg_delivery.ts: domain rows, then recipient rows, then
 * `queue_totals` through the counter triggers) and the reporting side / expiry, which take those locks
 * in another order. Each test holds one real transaction at the point where the inversion bites (a
 * gate inside the router, or a row lock another statement would hold for a moment) and then lets both
 * run: PostgreSQL's deadlock detector aborts one of them (40P01). Both must succeed: the loser runs again (PostgresDatabase.transaction retries 40P01).
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { ManualClock } from "../../src/clock.ts";
import { Logger } from "../../src/log/logger.ts";
import { EXPIRED_TEXT } from "../../src/queue/housekeeping.ts";
import { pgReportPendingDsns } from "../../src/queue/pg/pg_bounces.ts";
import { pgSendDelayWarnings } from "../../src/queue/pg/pg_delay_warnings.ts";
import { PgEnqueue } from "../../src/queue/pg/pg_enqueue.ts";
import { PgOutbound } from "../../src/queue/pg/pg_outbound.ts";
import { PgReportRouter, type PgRouted } from "../../src/queue/pg/pg_report_router.ts";
import type { Report } from "../../src/queue/report_router.ts";
import { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { bodyOf, incoming, testSecrets } from "../support/store.ts";

const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;
const BODY = "Subject: hello\r\nFrom: carol@sender.test\r\n\r\nThe body.\r\n";

/** A router that, after routing, waits for `open()` before the transaction goes on. */
class GatedRouter extends PgReportRouter {
  #release: () => void = () => {};
  #gate: Promise<void> = new Promise((r) => (this.#release = r));
  routed: Promise<void>;
  #onRouted: () => void = () => {};

  constructor(...args: ConstructorParameters<typeof PgReportRouter>) {
    super(...args);
    this.routed = new Promise((r) => (this.#onRouted = r));
  }

  override async route(client: pg.PoolClient, report: Report): Promise<PgRouted> {
    const routed = await super.route(client, report);
    this.#onRouted();
    await this.#gate;
    return routed;
  }

  open(): void {
    this.#release();
  }
}

describe("lock order between delivery and reporting/expiry", { skip: postgresSkipReason() }, () => {
  let cluster: TestPostgres;
  let url: string;
  let clock: ManualClock;
  let nodeA: PostgresQueue;
  let nodeB: PostgresQueue;
  const errors: string[] = [];
  const logger = new Logger({ level: "error", sink: (line) => void errors.push(line) });

  before(async () => {
    cluster = await startPostgres();
    url = await cluster.createDatabase("review_deadlock");
    clock = new ManualClock(T0);
    nodeA = await PostgresQueue.open(url, { clock, node: "a", poolSize: 4 });
    nodeB = await PostgresQueue.open(url, { clock, node: "b", poolSize: 4 });
    await nodeA.addAccount("cust", testSecrets("pw"));
    for (const d of ["hosted.test", "other.test", "sender.test"]) await nodeA.addDomain(d, "cust");
  });

  after(async () => {
    await nodeA?.close();
    await nodeB?.close();
    await cluster?.stop();
  });

  beforeEach(async () => {
    clock.set(T0);
    errors.length = 0;
    await nodeA.db.query("DELETE FROM outbound");
    await nodeA.db.query("DELETE FROM messages");
    await nodeA.db.query("DELETE FROM housekeeping_state");
  });

  /**
   * Bounded wait until `n` backends of this database wait on a heavyweight lock, or until `unless` has
   * settled: since the counter triggers fire at COMMIT (migrations/postgres/0002_deferred_counters.sql),
   * some of the statements below no longer wait for `queue_totals` at all and simply finish.
   */
  async function lockWaiters(n: number, unless?: Promise<unknown>): Promise<void> {
    let settled = false;
    void unless?.then(() => (settled = true), () => (settled = true));
    for (let i = 0; i < 200; i++) {
      if (settled) return;
      const waiting = (await nodeA.db.query<{ n: number }>(
        "SELECT COUNT(*)::bigint AS n FROM pg_stat_activity WHERE datname = current_database() " +
          "AND wait_event_type = 'Lock'",
      )).rows[0]!.n;
      if (waiting >= n) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`fewer than ${n} backends ever waited on a lock`);
  }

  function gatedRouter(): GatedRouter {
    return new GatedRouter(new PgEnqueue(nodeA.db, clock), new PgOutbound(nodeA.db, clock), {
      hostname: "relay.test",
      lifetimeMs: 5 * 86_400_000,
      logger,
    });
  }

  /** A message from a hosted sender to bob@hosted.test and dan@other.test; ids of both recipients. */
  async function twoDomainMessage(): Promise<{ id: number; bob: number; dan: number }> {
    const id = await nodeA.enqueue(
      incoming("carol@sender.test", ["bob@hosted.test", "dan@other.test"]),
      bodyOf(BODY),
    );
    const [hosted] = await nodeA.nextDeliverable(["hosted.test"], id - 1, 1);
    const [other] = await nodeB.nextDeliverable(["other.test"], id - 1, 1);
    return { id, bob: hosted!.recipients[0]!.id, dan: other!.recipients[0]!.id };
  }

  test("DSN step routing to a hosted sender vs a delivery of the message's other recipient: no deadlock", async () => {
    const { id, bob, dan } = await twoDomainMessage();
    // bob's customer refused him: his DSN is pending; dan is still queued, being delivered on node B.
    await nodeA.recordOutcomes(id, [{ id: bob, result: "failed", code: 550, text: "5.1.1 No such user" }]);
    const router = gatedRouter();
    // Node A: the DSN step locks the message, routes the DSN into sender.test (taking that domain's
    // row and queue_totals), and is held right there by the gate.
    const dsn = pgReportPendingDsns({
      db: nodeA.db,
      router,
      hostname: "relay.test",
      clock,
      logger,
      maxFullBytes: 100_000,
      postmasterCopy: null,
    });
    await router.routed;
    // Node B: dan was delivered. Its record locks other.test and deletes dan; its trigger waits for
    // queue_totals if node A holds it (only at A's COMMIT since migration 0002; before, from the route on).
    const delivery = nodeB.recordOutcomes(id, [{ id: dan, result: "delivered", code: 250, text: "ok" }]);
    // Node A goes on: finishReported locks the message's remaining recipients (dan, held by node B).
    await lockWaiters(1, delivery).finally(() => router.open());
    const [reported, recorded] = await Promise.allSettled([dsn, delivery]);
    assert.equal(
      recorded.status,
      "fulfilled",
      `the delivery's record failed: ${
        String(
          recorded.status === "rejected" ? recorded.reason : "",
        )
      }`,
    );
    assert.deepEqual(reported, { status: "fulfilled", value: 1 }, `DSN step: ${errors.join("\n")}`);
    assert.equal(errors.length, 0, errors.join("\n"));
  });

  test("DSN step with a postmaster copy into a hosted domain vs an intake for that domain: no deadlock", async () => {
    const id = await nodeA.enqueue(incoming("carol@sender.test", ["bob@hosted.test"]), bodyOf(BODY));
    const [hosted] = await nodeA.nextDeliverable(["hosted.test"], id - 1, 1);
    await nodeA.recordOutcomes(id, [
      { id: hosted!.recipients[0]!.id, result: "failed", code: 550, text: "5.1.1 No such user" },
    ]);
    const router = gatedRouter();
    // Node A: the DSN to carol joins sender.test (that row and queue_totals now held), then waits.
    const dsn = pgReportPendingDsns({
      db: nodeA.db,
      router,
      hostname: "relay.test",
      clock,
      logger,
      maxFullBytes: 100_000,
      postmasterCopy: "postmaster@other.test",
    });
    await router.routed;
    // Node B's intake for other.test: locks other.test, inserts, and its trigger may wait for queue_totals.
    const intake = nodeB.enqueue(incoming("alice@outside.test", ["x@other.test"]), bodyOf(BODY));
    // Node A routes the postmaster copy into other.test: it waits for node B's domain lock.
    await lockWaiters(1, intake).finally(() => router.open());
    const [reported, accepted] = await Promise.allSettled([dsn, intake]);
    assert.equal(
      accepted.status,
      "fulfilled",
      `the intake failed (451 to the sender): ${
        String(
          accepted.status === "rejected" ? accepted.reason : "",
        )
      }`,
    );
    assert.deepEqual(reported, { status: "fulfilled", value: 1 }, `DSN step: ${errors.join("\n")}`);
  });

  test("a delay warning routed to a hosted sender vs a delivery of a warned recipient: no deadlock", async () => {
    const id = await nodeA.enqueue(incoming("carol@sender.test", ["dan@other.test"]), bodyOf(BODY));
    const [other] = await nodeB.nextDeliverable(["other.test"], id - 1, 1);
    const dan = other!.recipients[0]!.id;
    clock.advance(5 * HOUR);
    const router = gatedRouter();
    const warnings = pgSendDelayWarnings({
      db: nodeA.db,
      router,
      hostname: "relay.test",
      clock,
      logger,
      maxFullBytes: 100_000,
      steps: [4 * HOUR],
      lifetimeMs: 5 * 86_400_000,
    });
    await router.routed;
    // The warning holds sender.test and queue_totals; the delivery takes other.test and dan's row,
    // then waits for queue_totals; the warning then marks dan (markWarned) and waits for node B.
    const delivery = nodeB.recordOutcomes(id, [{ id: dan, result: "delivered", code: 250, text: "ok" }]);
    await lockWaiters(1, delivery).finally(() => router.open());
    const [warned, recorded] = await Promise.allSettled([warnings, delivery]);
    assert.equal(
      recorded.status,
      "fulfilled",
      `the delivery's record failed: ${
        String(
          recorded.status === "rejected" ? recorded.reason : "",
        )
      }`,
    );
    assert.equal(
      warned.status,
      "fulfilled",
      `delay warnings: ${
        String(
          warned.status === "rejected" ? warned.reason : "",
        )
      }`,
    );
  });

  test("expiry vs a delivery of the same domain's old mail: no deadlock", async () => {
    const first = await nodeA.enqueue(incoming("alice@outside.test", ["bob@hosted.test"]), bodyOf(BODY));
    const second = await nodeA.enqueue(incoming("alice@outside.test", ["eve@hosted.test"]), bodyOf(BODY));
    const [m1, m2] = await nodeB.nextDeliverable(["hosted.test"], first - 1, 2);
    const bob = m1!.recipients[0]!.id;
    const eve = m2!.recipients[0]!.id;
    clock.advance(6 * 86_400_000);
    // Another statement holds eve's row for a moment (a DSN step's or an operator's lock would do).
    const holder = new pg.Client({ connectionString: url });
    holder.on("error", () => {});
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT id FROM recipients WHERE id = $1 FOR UPDATE", [eve]);
      // Housekeeping on node A: the expiry statement locks bob, then waits for eve.
      const expiry = nodeA.expireQueued("hosted.test", clock.now() - 5 * 86_400_000, EXPIRED_TEXT);
      await lockWaiters(1);
      // Node B: bob was delivered. The record locks hosted.test first, then waits for bob's row.
      const delivery = nodeB.recordOutcomesMany([
        { messageId: first, outcomes: [{ id: bob, result: "delivered", code: 250, text: "ok" }] },
        { messageId: second, outcomes: [{ id: eve, result: "delivered", code: 250, text: "ok" }] },
      ]);
      await lockWaiters(2);
      // The expiry gets eve, and its triggers want hosted.test's row, which the delivery holds.
      await holder.query("COMMIT");
      const [expired, recorded] = await Promise.allSettled([expiry, delivery]);
      assert.equal(
        expired.status,
        "fulfilled",
        `expiry: ${
          String(
            expired.status === "rejected" ? expired.reason : "",
          )
        }`,
      );
      assert.equal(
        recorded.status,
        "fulfilled",
        `the delivery's record failed: ${
          String(
            recorded.status === "rejected" ? recorded.reason : "",
          )
        }`,
      );
    } finally {
      await holder.end().catch(() => {});
    }
  });
});
