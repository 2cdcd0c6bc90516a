/**
 * The reporting side on the shared PostgreSQL queue against a real throwaway cluster: the DSN step,
 * delay warnings, waiting notices, postmaster forwarding and the outbound table
 * (src/queue/pg/pg_{bounces,delay_warnings,waiting_notices,postmaster,outbound,report_router}.ts).
 * "Two nodes" are two PostgresQueue instances on one database, each with its own pool, so the races
 * below are real races between transactions.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { EXPIRED_TEXT } from "../../src/queue/housekeeping.ts";
import type { IncomingMessage } from "../../src/queue/enqueue.ts";
import { pgReportPendingDsns } from "../../src/queue/pg/pg_bounces.ts";
import { pgSendDelayWarnings } from "../../src/queue/pg/pg_delay_warnings.ts";
import { PgEnqueue } from "../../src/queue/pg/pg_enqueue.ts";
import { PgOutbound } from "../../src/queue/pg/pg_outbound.ts";
import { pgBounceForwarded, pgForwardPostmasterMail } from "../../src/queue/pg/pg_postmaster.ts";
import { PgReportRouter } from "../../src/queue/pg/pg_report_router.ts";
import { pendingCounts } from "../../src/queue/pg/pg_report_store.ts";
import { pgSendWaitingNotices } from "../../src/queue/pg/pg_waiting_notices.ts";
import { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import { OutboundWorker } from "../../src/outbound/worker.ts";
import { loadConfig } from "../../src/config/load.ts";
import { startRelay } from "../../src/relay.ts";
import { tempDir } from "../support/temp.ts";
import { TEST_TIMEOUTS } from "../outbound/_helpers.ts";
import { startFakeMx } from "../support/fake_mx.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { bodyOf, incoming, testSecrets } from "../support/store.ts";

const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;
const CLAIM_MS = 60_000;
const BODY = "Subject: hello\r\nFrom: someone@outside.test\r\n\r\nThe body.\r\n";

/** One node's reporting jobs over its own pool. */
function jobsOf(queue: PostgresQueue, clock: ManualClock) {
  const logger = silentLogger();
  const outbound = new PgOutbound(queue.db, clock, { claimMs: CLAIM_MS });
  const router = new PgReportRouter(new PgEnqueue(queue.db, clock), outbound, {
    hostname: "relay.test",
    lifetimeMs: 5 * 86_400_000,
    logger,
  });
  const local: string[] = [];
  const common = {
    db: queue.db,
    router,
    hostname: "relay.test",
    clock,
    logger,
    onQueuedLocally: (domain: string) => void local.push(domain),
  };
  return {
    outbound,
    local,
    common,
    dsnStep: () => pgReportPendingDsns({ ...common, maxFullBytes: 100_000, postmasterCopy: null }),
    warnings: () =>
      pgSendDelayWarnings({
        ...common,
        maxFullBytes: 100_000,
        steps: [4 * HOUR],
        lifetimeMs: 5 * 86_400_000,
      }),
    notices: () => pgSendWaitingNotices({ ...common, defaultAfterMs: 24 * HOUR, lifetimeMs: 5 * 86_400_000 }),
    forward: () =>
      pgForwardPostmasterMail({ db: queue.db, outbound, lifetimeMs: 86_400_000, logger }, "pm@outside.test"),
  };
}

interface OutboundDbRow {
  id: number;
  kind: string;
  mail_from: string;
  rcpt: string;
  domain: string;
  body: Uint8Array;
  about_message_id: number | null;
}

describe("reporting on PostgreSQL", { skip: postgresSkipReason() }, () => {
  let cluster: TestPostgres;
  let clock: ManualClock;
  let nodeA: PostgresQueue;
  let nodeB: PostgresQueue;
  let a: ReturnType<typeof jobsOf>;
  let b: ReturnType<typeof jobsOf>;

  before(async () => {
    cluster = await startPostgres();
    const url = await cluster.createDatabase("reporting");
    clock = new ManualClock(T0);
    nodeA = await PostgresQueue.open(url, { clock, node: "a", poolSize: 6 });
    nodeB = await PostgresQueue.open(url, { clock, node: "b", poolSize: 6 });
    await nodeA.addAccount("cust", testSecrets("pw"));
    await nodeA.addDomain("hosted.test", "cust");
    await nodeA.addDomain("sender.test", "cust");
    a = jobsOf(nodeA, clock);
    b = jobsOf(nodeB, clock);
  });

  after(async () => {
    await nodeA?.close();
    await nodeB?.close();
    await cluster?.stop();
  });

  beforeEach(async () => {
    clock.set(T0);
    await nodeA.db.query("DELETE FROM outbound");
    await nodeA.db.query("DELETE FROM messages");
    await nodeA.db.query("DELETE FROM housekeeping_state");
    await nodeA.db.query(
      "UPDATE domains SET notify_address = NULL, notified_at = NULL, last_atrn_at = NULL, quota_bytes = NULL",
    );
  });

  async function outboundRows(): Promise<OutboundDbRow[]> {
    return (await nodeA.db.query<OutboundDbRow>(
      "SELECT id, kind, mail_from, rcpt, domain, body, about_message_id FROM outbound ORDER BY id",
    )).rows;
  }

  async function count(sql: string, values: unknown[] = []): Promise<number> {
    return (await nodeA.db.query<{ n: number }>(`SELECT COUNT(*) AS n FROM (${sql}) q`, values)).rows[0]!.n;
  }

  /** Enqueues a message and has the customer answer 550 for every recipient of it. */
  async function failedMessage(message: IncomingMessage): Promise<number> {
    const id = await nodeA.enqueue(message, bodyOf(BODY));
    const domains = [...new Set(message.recipients.map((r) => r.domain))];
    const [delivered] = (await nodeA.nextDeliverable(domains, id - 1, 1)).filter((m) => m.id === id);
    assert.ok(delivered, "the message is deliverable");
    await nodeA.recordOutcomes(
      id,
      delivered.recipients.map((r) => ({
        id: r.id,
        result: "failed" as const,
        code: 550,
        text: "5.1.1 No such user",
        remoteMta: "mx.customer.test",
      })),
    );
    return id;
  }

  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

  test("a customer's 5xx for an outside sender: one DSN on the outbound table; recipient and message leave", async () => {
    const id = await failedMessage(incoming("alice@outside.test", ["bob@hosted.test"]));
    assert.deepEqual(await pendingCounts(nodeA.db.pool), { recipients: 1, messages: 1 });
    assert.equal(await a.dsnStep(), 1);
    const rows = await outboundRows();
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.kind, "dsn");
    assert.equal(rows[0]!.mail_from, "");
    assert.equal(rows[0]!.rcpt, "alice@outside.test");
    assert.equal(rows[0]!.domain, "outside.test");
    assert.equal(rows[0]!.about_message_id, id);
    const dsn = text(rows[0]!.body);
    assert.match(dsn, /Action: failed/);
    assert.match(dsn, /Final-Recipient: rfc822;\s*bob@hosted\.test/);
    assert.match(dsn, /5\.1\.1 No such user/);
    assert.equal(await count("SELECT 1 FROM recipients"), 0);
    assert.equal(await count("SELECT 1 FROM messages WHERE id = $1", [id]), 0);
    assert.deepEqual(await pendingCounts(nodeA.db.pool), { recipients: 0, messages: 0 });
    assert.equal(await a.dsnStep(), 0, "nothing left to report");
  });

  test("a DSN for a hosted sender joins the main queue, from <>, and wakes its domain", async () => {
    await failedMessage(incoming("carol@sender.test", ["bob@hosted.test"]));
    a.local.length = 0;
    assert.equal(await a.dsnStep(), 1);
    assert.equal((await outboundRows()).length, 0);
    const queued = (await nodeA.db.query<{ mail_from: string; address: string; status: string }>(
      "SELECT m.mail_from, r.address, r.status FROM messages m JOIN recipients r ON r.message_id = m.id",
    )).rows;
    assert.deepEqual(queued, [{ mail_from: "", address: "carol@sender.test", status: "queued" }]);
    assert.deepEqual(a.local, ["sender.test"]);
    const totals = await nodeA.queueCounts();
    assert.equal(totals.messages, 1, "the triggers count the DSN, and the reported message is gone");
  });

  test("a hosted sender's domain over its quota: the DSN is dropped, the recipients still leave", async () => {
    await failedMessage(incoming("carol@sender.test", ["bob@hosted.test"]));
    await nodeA.updateDomain("sender.test", { quotaBytes: 100 });
    assert.equal(await a.dsnStep(), 1);
    assert.equal((await outboundRows()).length, 0);
    assert.equal(await count("SELECT 1 FROM messages"), 0, "neither the DSN nor the reported message");
  });

  test("the null sender and NOTIFY=NEVER get no DSN; their recipients leave all the same", async () => {
    await failedMessage(incoming("", ["bob@hosted.test"]));
    const base = incoming("alice@outside.test", ["dave@hosted.test"]);
    const never: IncomingMessage = {
      ...base,
      recipients: base.recipients.map((r) => ({ ...r, notify: "NEVER" })),
    };
    await failedMessage(never);
    assert.equal(await a.dsnStep(), 2);
    assert.equal((await outboundRows()).length, 0);
    assert.equal(await count("SELECT 1 FROM messages"), 0);
  });

  test("expired recipients get a DSN that says so", async () => {
    await nodeA.enqueue(incoming("alice@outside.test", ["bob@hosted.test"]), bodyOf(BODY));
    clock.advance(6 * 86_400_000);
    assert.equal(await nodeA.expireQueued("hosted.test", clock.now() - 5 * 86_400_000, EXPIRED_TEXT), 1);
    assert.equal(await a.dsnStep(), 1);
    const rows = await outboundRows();
    assert.equal(rows.length, 1);
    assert.match(text(rows[0]!.body), /Status: 4\.4\.7/);
    assert.equal(await count("SELECT 1 FROM messages"), 0);
  });

  test("two nodes running the DSN step at once report each message exactly once", async () => {
    const ids: number[] = [];
    for (let i = 0; i < 40; i++) {
      ids.push(await failedMessage(incoming(`s${i}@outside.test`, ["bob@hosted.test"])));
    }
    // Bounded: each round reports at least one message while any is pending.
    for (let round = 0; round < 40 && (await pendingCounts(nodeA.db.pool)).messages > 0; round++) {
      await Promise.all([a.dsnStep(), b.dsnStep()]);
    }
    assert.equal((await pendingCounts(nodeA.db.pool)).messages, 0);
    // Exactly one DSN per message, whichever node wrote it.
    const rows = await outboundRows();
    assert.equal(rows.length, 40);
    assert.deepEqual(rows.map((r) => r.about_message_id).sort((p, q) => p! - q!), ids);
    assert.equal(await count("SELECT 1 FROM messages"), 0);
  });

  test("outbound: two nodes' claims never overlap; a claim lapses; defer and remove", async () => {
    await nodeA.db.transaction(async (client) => {
      for (let i = 0; i < 12; i++) {
        clock.advance(1);
        await a.outbound.add(client, {
          kind: "dsn",
          mailFrom: "",
          rcpt: `r${i}@outside.test`,
          domain: "outside.test",
          body: new TextEncoder().encode(`row ${i}`),
          eightBit: false,
          smtputf8: false,
          lifetimeMs: HOUR,
        });
      }
    });
    const [x, y] = await Promise.all([a.outbound.due(8), b.outbound.due(8)]);
    const claimed = [...x, ...y].map((r) => r.id);
    assert.equal(new Set(claimed).size, claimed.length, "no row is claimed twice");
    assert.equal(claimed.length, 12);
    assert.deepEqual(await a.outbound.due(8), [], "claimed rows are not due");
    assert.equal((await a.outbound.counts()).pending, 12);
    // The claiming node died: after the claim the rows are due again, for any node.
    clock.advance(CLAIM_MS);
    const again = await b.outbound.due(20, new Set([x[0]!.id]));
    assert.equal(again.length, 11, "all but the excluded one");
    assert.equal(text(again[0]!.body).startsWith("row "), true);
    await b.outbound.defer(again[0]!.id, clock.now() + HOUR, "451 try later");
    await b.outbound.remove(again[1]!.id);
    const row = (await nodeA.db.query<{ attempts: number; next_attempt_at: number; last_error: string }>(
      "SELECT attempts, next_attempt_at, last_error FROM outbound WHERE id = $1",
      [again[0]!.id],
    )).rows[0]!;
    assert.deepEqual(row, { attempts: 1, next_attempt_at: clock.now() + HOUR, last_error: "451 try later" });
    assert.equal((await a.outbound.counts()).pending, 11);
    // The excluded row's first claim has just lapsed; it is the next one due.
    assert.equal(await a.outbound.nextDueAt(), clock.now());
  });

  test("a delay warning goes once per step, even with two nodes running the warnings", async () => {
    await nodeA.enqueue(incoming("alice@outside.test", ["bob@hosted.test", "eve@hosted.test"]), bodyOf(BODY));
    clock.advance(3 * HOUR);
    assert.equal(await a.warnings(), 0, "not yet due");
    clock.advance(2 * HOUR);
    const [x, y] = await Promise.all([a.warnings(), b.warnings()]);
    assert.equal(x + y, 1);
    assert.equal(await a.warnings(), 0);
    const rows = await outboundRows();
    assert.equal(rows.length, 1);
    assert.match(text(rows[0]!.body), /Action: delayed/);
    assert.match(text(rows[0]!.body), /eve@hosted\.test/);
    assert.equal(
      await count("SELECT 1 FROM recipients WHERE status = 'queued' AND delay_warnings = $1", [4 * HOUR]),
      2,
    );
  });

  test("a waiting notice goes once per threshold", async () => {
    await nodeA.updateDomain("hosted.test", { notifyAddress: "ops@outside.test", notifyAfterMs: HOUR });
    await nodeA.enqueue(incoming("alice@outside.test", ["bob@hosted.test"]), bodyOf(BODY));
    assert.equal(await a.notices(), 0, "not waiting long enough");
    clock.advance(2 * HOUR);
    const [x, y] = await Promise.all([a.notices(), b.notices()]);
    assert.equal(x + y, 1);
    assert.equal(await b.notices(), 0);
    const rows = await outboundRows();
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.kind, "notice");
    assert.equal(rows[0]!.rcpt, "ops@outside.test");
    assert.match(text(rows[0]!.body), /hosted\.test/);
  });

  test("postmaster mail is forwarded once; a refused forward is reported to its sender", async () => {
    // The relay's own mailbox: domain key "" (src/queue/postmaster.ts).
    const message = incoming("alice@outside.test", ["postmaster@"]);
    const id = await nodeA.enqueue(message, bodyOf(BODY));
    assert.equal(await nodeA.postmasterMailboxCount(), 1);
    const [x, y] = await Promise.all([a.forward(), b.forward()]);
    assert.equal(x + y, 1);
    assert.equal(await nodeA.postmasterMailboxCount(), 0);
    assert.equal(await count("SELECT 1 FROM messages WHERE id = $1", [id]), 0);
    const [row] = await a.outbound.due(10);
    assert.ok(row);
    assert.deepEqual([row.kind, row.mailFrom, row.rcpt, text(row.body)], [
      "postmaster",
      "alice@outside.test",
      "pm@outside.test",
      BODY,
    ]);
    // The worker would now drop it after a 550 and tell its sender.
    await a.outbound.remove(row.id);
    await pgBounceForwarded(a.common, row, {
      code: 550,
      text: "5.7.1 Not wanted",
      remoteMta: "mx.outside.test",
    });
    const rows = await outboundRows();
    assert.equal(rows.length, 1);
    assert.deepEqual([rows[0]!.kind, rows[0]!.mail_from, rows[0]!.rcpt], ["dsn", "", "alice@outside.test"]);
    assert.match(text(rows[0]!.body), /5\.7\.1 Not wanted/);
  });

  test("two nodes' outbound workers send each row once; a 5xx drops it, a 4xx defers it", async () => {
    const mx = await startFakeMx({
      rcptReply: (address) =>
        address.startsWith("refused@")
          ? "550 5.1.1 No such user"
          : address.startsWith("later@")
          ? "451 4.3.0 Try later"
          : undefined,
    });
    const results: string[] = [];
    const workerOf = (outbound: PgOutbound) =>
      new OutboundWorker({
        queue: outbound,
        destination: () => ({ kind: "smarthost", host: "127.0.0.1", port: mx.port, tls: "opportunistic" }),
        send: { hostname: "relay.test", timeouts: TEST_TIMEOUTS },
        concurrency: 3,
        clock,
        logger: silentLogger(),
        onResult: (row, outcome) => void results.push(`${row.rcpt} ${outcome}`),
      });
    const workers = [workerOf(a.outbound), workerOf(b.outbound)];
    try {
      const rcpts = ["r1", "r2", "r3", "r4", "refused", "later"].map((l) => `${l}@outside.test`);
      await nodeA.db.transaction(async (client) => {
        for (const rcpt of rcpts) {
          await a.outbound.add(client, {
            kind: "dsn",
            mailFrom: "",
            rcpt,
            domain: "outside.test",
            body: new TextEncoder().encode(`Subject: to ${rcpt}\r\n\r\nhi\r\n`),
            eightBit: false,
            smtputf8: false,
            lifetimeMs: HOUR,
          });
        }
      });
      // Bounded: each round sends what is due; three rows per worker per round.
      for (let round = 0; round < 5 && results.length < rcpts.length; round++) {
        await Promise.all(workers.map((w) => w.runDue()));
      }
      assert.deepEqual(mx.messages.flatMap((m) => m.rcpts).sort(), rcpts.slice(0, 4), "each sent once");
      assert.deepEqual(results.sort(), [
        "later@outside.test deferred",
        "r1@outside.test delivered",
        "r2@outside.test delivered",
        "r3@outside.test delivered",
        "r4@outside.test delivered",
        "refused@outside.test dropped",
      ]);
      const left =
        (await nodeA.db.query<{ rcpt: string; attempts: number }>("SELECT rcpt, attempts FROM outbound"))
          .rows;
      assert.deepEqual(left, [{ rcpt: "later@outside.test", attempts: 1 }]);
    } finally {
      for (const w of workers) await w.stop();
      await mx.close();
    }
  });

  test("a relay on PostgreSQL reports a failure and sends the DSN; /status and /metrics count it", async () => {
    const mx = await startFakeMx();
    const { config } = loadConfig({
      flags: {
        dataDir: tempDir("odmr-pg-reporting-"),
        database: await cluster.createDatabase("reporting_relay"),
        nodeName: "solo",
        hostname: "mx.relay.test",
        smtpListen: "127.0.0.1:0",
        odmrListen: "127.0.0.1:0",
        odmrsListen: "off",
        httpListen: "127.0.0.1:0",
        smtpMinFreeSpace: "0",
        shutdownGrace: "5s",
        smarthost: `127.0.0.1:${mx.port}`,
        smarthostTls: "opportunistic",
      },
      env: {},
    });
    const relay = await startRelay(config, silentLogger());
    try {
      const queue = relay.queue;
      await queue.addAccount("cust", testSecrets("pw"));
      await queue.addDomain("hosted.test", "cust");
      const id = await queue.enqueue(incoming("alice@outside.test", ["bob@hosted.test"]), bodyOf(BODY));
      const [m] = await queue.nextDeliverable(["hosted.test"], 0);
      await queue.recordOutcomes(id, [{
        id: m!.recipients[0]!.id,
        result: "failed",
        code: 550,
        text: "5.1.1 No",
      }]);
      const base = `http://127.0.0.1:${relay.http!.port}`;
      const metrics = async () => await (await fetch(`${base}/metrics`)).text();
      assert.match(await metrics(), /^odmr_relay_failed_recipients 1$/m);
      // The worker may already have been kicked; the DSN step reports it exactly once either way.
      await relay.reporting.reportFailures();
      assert.equal((await relay.reporting.pendingCounts()).recipients, 0);
      await relay.outbound.worker.runDue();
      assert.deepEqual(mx.messages.map((r) => r.rcpts), [["alice@outside.test"]]);
      assert.match(mx.messages[0]!.data, /Action: failed/);
      const status = await (await fetch(`${base}/status`)).json() as {
        failed: { recipients: number };
        dsnsPending: { total: number };
      };
      assert.equal(status.failed.recipients, 0);
      assert.equal(status.dsnsPending.total, 0);
      assert.match(await metrics(), /^odmr_relay_outbound_pending 0$/m);
    } finally {
      await relay.stop();
      await mx.close();
    }
  });
});
