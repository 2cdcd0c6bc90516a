/**
 * The outbound claim and the attempt it covers (src/queue/pg/pg_outbound.ts): a node claims a row for
 * `claimMs` before it sends it, and an attempt to a slow (tarpitting) MX may legally outlast that (RFC 5321
 * 4.5.3.2: minutes per step, per MX host). So the worker cuts the attempt off a minute before the claim
 * ends and defers the row: another node never sends it while this one still is. Real time, short claim.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { silentLogger } from "../../src/log/logger.ts";
import { OutboundWorker, type Sender } from "../../src/outbound/worker.ts";
import { PgOutbound } from "../../src/queue/pg/pg_outbound.ts";
import { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";

/** A claim whose attempt limit is 1.5 s (the claim minus one minute). */
const CLAIM_MS = 61_500;

describe("outbound attempts end before their claim", { skip: postgresSkipReason() }, () => {
  let cluster: TestPostgres;
  let node: PostgresQueue;

  before(async () => {
    cluster = await startPostgres();
    node = await PostgresQueue.open(await cluster.createDatabase("outbound_attempt"), {
      node: "a",
      poolSize: 3,
    });
  });
  after(async () => {
    await node?.close();
    await cluster?.stop();
  });

  test("a slow MX is cut off before the claim lapses, and the row is deferred, not sent twice", async () => {
    const outbound = new PgOutbound(node.db, { now: () => Date.now() }, { claimMs: CLAIM_MS });
    assert.equal(outbound.attemptLimitMs, 1500);
    await node.db.transaction((client) =>
      outbound.add(client, {
        kind: "dsn",
        mailFrom: "",
        rcpt: "alice@outside.test",
        domain: "outside.test",
        body: new TextEncoder().encode("Subject: dsn\r\n\r\nhi\r\n"),
        eightBit: false,
        smtputf8: false,
        lifetimeMs: 86_400_000,
      })
    );
    let abortedAfterMs: number | null = null;
    // The tarpit: answers only when the attempt is aborted, or after 10 s (the test's bound).
    const tarpit: Sender = (options) => {
      const started = Date.now();
      return new Promise((resolve) => {
        const answer = () => {
          clearTimeout(timer);
          abortedAfterMs = options.signal?.aborted ? Date.now() - started : null;
          resolve({
            recipients: [{
              address: options.recipients[0]!,
              result: "deferred",
              code: 421,
              text: "4.4.2 attempt cut off",
              remoteMta: null,
            }],
            remoteMta: null,
            remoteAddress: null,
            tls: null,
            attempts: [],
          });
        };
        const timer = setTimeout(answer, 10_000);
        options.signal?.addEventListener("abort", answer, { once: true });
      });
    };
    const worker = new OutboundWorker({
      queue: outbound,
      destination: () => ({ kind: "mx", domain: "outside.test" }),
      send: { hostname: "relay.test" },
      concurrency: 1,
      clock: { now: () => Date.now() },
      logger: silentLogger(),
      sender: tarpit,
    });
    try {
      await worker.runDue();
    } finally {
      await worker.stop();
    }
    assert.ok(abortedAfterMs !== null, "the attempt was aborted, not left to run");
    assert.ok(abortedAfterMs! >= 1400 && abortedAfterMs! < CLAIM_MS, `cut off after ${abortedAfterMs} ms`);
    const rows = await node.db.query<{ attempts: number; last_error: string }>(
      "SELECT attempts, last_error FROM outbound",
    );
    assert.deepEqual(rows.rows, [{ attempts: 1, last_error: "4.4.2 attempt cut off" }]);
  });

  test("a node whose claim lapsed can neither remove nor defer the row another node claimed since", async () => {
    await node.db.query("DELETE FROM outbound");
    let now = 1_700_000_000_000;
    const clock = { now: () => now };
    const a = new PgOutbound(node.db, clock, { claimMs: CLAIM_MS });
    const b = new PgOutbound(node.db, clock, { claimMs: CLAIM_MS });
    await node.db.transaction((client) =>
      a.add(client, {
        kind: "dsn",
        mailFrom: "",
        rcpt: "carol@outside.test",
        domain: "outside.test",
        body: new TextEncoder().encode("Subject: dsn\r\n\r\nhi\r\n"),
        eightBit: false,
        smtputf8: false,
        lifetimeMs: 86_400_000,
      })
    );
    const [claimedByA] = await a.due(10);
    assert.ok(claimedByA);
    // A stalls past its claim; B claims the row and is sending it.
    now += CLAIM_MS + 1;
    const [claimedByB] = await b.due(10);
    assert.equal(claimedByB?.id, claimedByA.id);
    assert.equal(await a.defer(claimedByA.id, now + 60_000, "451 late answer from A"), false);
    assert.equal(await a.remove(claimedByA.id), false);
    const left = await node.db.query<{ attempts: number; next_attempt_at: string }>(
      "SELECT attempts, next_attempt_at FROM outbound",
    );
    assert.deepEqual(left.rows.map((r) => [r.attempts, Number(r.next_attempt_at)]), [[0, now + CLAIM_MS]]);
    // B's own outcome still applies.
    assert.equal(await b.remove(claimedByB.id), true);
    assert.equal((await node.db.query("SELECT 1 FROM outbound")).rowCount, 0);
  });
});
