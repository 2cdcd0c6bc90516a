/**
 * The hot half of the PostgreSQL queue against a real throwaway cluster: intake (PgEnqueue), delivery
 * (PgDelivery) and the domain leases shared by nodes (PgLeaseTable). "Two nodes" are two connection
 * pools on one database, so the races below are real races between transactions.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.ts";
import { PostgresDatabase } from "../../src/queue/pg/database.ts";
import { PgDelivery } from "../../src/queue/pg/pg_delivery.ts";
import { PgEnqueue } from "../../src/queue/pg/pg_enqueue.ts";
import { PgLeaseTable } from "../../src/queue/pg/pg_leases.ts";
import { type IncomingMessage, QuotaExceededError } from "../../src/queue/enqueue.ts";
import { CHUNK_SIZE, SpoolWriter } from "../../src/queue/spool.ts";
import { StoreError } from "../../src/queue/store_error.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { bodyOf, incoming } from "../support/store.ts";
import { tempDir } from "../support/temp.ts";
import { migratePostgres } from "../../src/queue/pg/migrate.ts";

const T0 = 1_700_000_000_000;

/** Bounded wait for `check` to hold (server-clock expiry cannot be driven by a ManualClock). */
async function eventually(what: string, check: () => Promise<boolean>, limitMs = 5000): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (let round = 0; round < 500; round++) {
    if (await check()) return;
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`${what}: not within ${limitMs} ms`);
}

/** A body of `size` deterministic octets, all 256 values. */
function patterned(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 8)) & 255;
  return bytes;
}

/** The body as the intake hands it over: through a spool, in CHUNK_SIZE pieces over reused buffers. */
function spooled(bytes: Uint8Array): SpoolWriter {
  const spool = new SpoolWriter(tempDir("odmr-pg-spool-"));
  // Written in odd-sized pieces, as DATA arrives.
  for (let at = 0; at < bytes.length; at += 10_007) spool.write(bytes.subarray(at, at + 10_007));
  return spool;
}

async function collect(body: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const parts: Uint8Array[] = [];
  for await (const part of body) parts.push(part);
  return parts;
}

function joined(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

describe("PostgreSQL hot side", { skip: postgresSkipReason() }, () => {
  let cluster: TestPostgres;
  /** Node A's and node B's pools on the one database. */
  let dbA: PostgresDatabase;
  let dbB: PostgresDatabase;
  let clock: ManualClock;
  let enqueueA: PgEnqueue;
  let enqueueB: PgEnqueue;
  let delivery: PgDelivery;
  let accountId: number;

  before(async () => {
    cluster = await startPostgres();
    const url = await cluster.createDatabase("hot_side");
    dbA = new PostgresDatabase(url, { poolSize: 6 });
    dbB = new PostgresDatabase(url, { poolSize: 6 });
    await migratePostgres(dbA);
    clock = new ManualClock(T0);
    enqueueA = new PgEnqueue(dbA, clock);
    enqueueB = new PgEnqueue(dbB, clock);
    delivery = new PgDelivery(dbA, clock);
    accountId = (await dbA.query<{ id: number }>(
      "INSERT INTO accounts (username, cram_md5_secret, password_hash, disabled, created_at) " +
        "VALUES ('alice', 'x', 'y', false, $1) RETURNING id",
      [T0],
    )).rows[0]!.id;
  });

  after(async () => {
    await dbA?.close();
    await dbB?.close();
    await cluster?.stop();
  });

  /** A hosted domain of the test account. */
  async function addDomain(
    name: string,
    options: { quotaBytes?: number; catchAll?: boolean; mailboxes?: string[]; retentionMs?: number } = {},
  ): Promise<void> {
    await dbA.query(
      "INSERT INTO domains (name, account_id, hold, catch_all, retention_ms, quota_bytes, allow_routing_syntax, " +
        "created_at) VALUES ($1, $2, false, $3, $4, $5, false, $6)",
      [
        name,
        accountId,
        options.catchAll ?? true,
        options.retentionMs ?? null,
        options.quotaBytes ?? null,
        T0,
      ],
    );
    for (const localPart of options.mailboxes ?? []) {
      await dbA.query("INSERT INTO domain_mailboxes (domain, local_part) VALUES ($1, $2)", [name, localPart]);
    }
  }

  async function counters(name: string): Promise<{ recipients: number; bytes: number }> {
    const row = (await dbA.query<{ queued_recipients: number; queued_bytes: number }>(
      "SELECT queued_recipients, queued_bytes FROM domains WHERE name = $1",
      [name],
    )).rows[0]!;
    return { recipients: row.queued_recipients, bytes: row.queued_bytes };
  }

  async function recipientRows(messageId: number) {
    return (await dbA.query<{
      id: number;
      address: string;
      status: string;
      attempts: number;
      last_code: number | null;
      last_text: string | null;
      last_attempt_at: number | null;
      failure_kind: string | null;
      remote_mta: string | null;
    }>(
      "SELECT id, address, status, attempts, last_code, last_text, last_attempt_at, failure_kind, remote_mta " +
        "FROM recipients WHERE message_id = $1 ORDER BY id",
      [messageId],
    )).rows;
  }

  async function messageExists(id: number): Promise<boolean> {
    return (await dbA.query("SELECT 1 FROM messages WHERE id = $1", [id])).rowCount === 1;
  }

  describe("intake", () => {
    test("recipientVerdict: unknown domain, routing syntax, mailboxes, postmaster, quota", async () => {
      await addDomain("verdict.test", { catchAll: false, mailboxes: ["Bob"], quotaBytes: 1000 });
      assert.equal(await enqueueA.recipientVerdict("nowhere.test", "bob"), "unknown-domain");
      assert.equal(
        await enqueueA.recipientVerdict("VERDICT.test", "Bob"),
        "accept",
        "domain key is lower-cased",
      );
      assert.equal(
        await enqueueA.recipientVerdict("verdict.test", "bob"),
        "unknown-mailbox",
        "local part keeps case",
      );
      assert.equal(await enqueueA.recipientVerdict("verdict.test", "PostMaster"), "accept", "RFC 5321 4.5.1");
      assert.equal(await enqueueA.recipientVerdict("verdict.test", "a%b"), "routing-syntax");
      assert.equal(await enqueueA.recipientVerdict("verdict.test", "Bob", 1000), "accept");
      assert.equal(await enqueueA.recipientVerdict("verdict.test", "Bob", 1001), "over-quota");
      // The relay's own postmaster mailbox (domain key ""), bounded by postmasterQuotaBytes.
      const mailbox = new PgEnqueue(dbA, clock);
      mailbox.postmasterQuotaBytes = 100;
      assert.equal(await mailbox.recipientVerdict("", "postmaster", 100), "accept");
      assert.equal(await mailbox.recipientVerdict("", "postmaster", 101), "over-quota");
    });

    test("enqueue stores the envelope, recipients in RCPT order and the counters", async () => {
      await addDomain("intake.test");
      await addDomain("other-intake.test");
      const message: IncomingMessage = {
        ...incoming("sender@x.test", ["u1@Intake.TEST", "w@other-intake.test", "u2@intake.test"]),
        tls: true,
        bodyType: "8BITMIME",
        smtputf8: true,
        envid: "env+2Did",
        ret: "HDRS",
      };
      message.recipients[0]!.notify = "SUCCESS,FAILURE";
      message.recipients[0]!.orcpt = "rfc822;u1@intake.test";
      const id = await enqueueA.enqueue(message, bodyOf("Subject: hi\r\n\r\nh\u00e9\r\n"));
      const [m] = await delivery.nextDeliverable(["intake.test"], 0);
      assert.ok(m);
      assert.equal(m.id, id);
      assert.deepEqual(
        { ...m, recipients: m.recipients.map((r) => ({ ...r, id: 0 })) },
        {
          id,
          mailFrom: "sender@x.test",
          size: 20,
          bodyType: "8BITMIME",
          smtputf8: true,
          eightBit: true,
          envid: "env+2Did",
          ret: "HDRS",
          receivedAt: T0,
          recipients: [
            { id: 0, address: "u1@Intake.TEST", notify: "SUCCESS,FAILURE", orcpt: "rfc822;u1@intake.test" },
            { id: 0, address: "u2@intake.test", notify: null, orcpt: null },
          ],
        },
        "only the granted domain's recipients, in RCPT order",
      );
      assert.ok(m.recipients[0]!.id < m.recipients[1]!.id);
      assert.deepEqual(await counters("intake.test"), { recipients: 2, bytes: 40 });
      assert.deepEqual(await counters("other-intake.test"), { recipients: 1, bytes: 20 });
      const stored = (await dbA.query(
        "SELECT tls, client_ip, client_helo, chunk_count, body_inline IS NOT NULL AS inline FROM messages WHERE id = $1",
        [id],
      )).rows[0];
      assert.deepEqual(stored, {
        tls: true,
        client_ip: "127.0.0.1",
        client_helo: "client.test",
        chunk_count: 0,
        inline: true,
      });
      assert.deepEqual(
        joined(await collect(delivery.readBody(id))),
        new TextEncoder().encode("Subject: hi\r\n\r\nh\u00e9\r\n"),
      );
    });

    test("a 300 KB body round-trips through readBody byte for byte, in chunks", async () => {
      await addDomain("big.test");
      const bytes = patterned(300 * 1024);
      const spool = spooled(bytes);
      const id = await enqueueA.enqueue(incoming("s@x.test", ["u@big.test"]), spool);
      spool.discard();
      const head =
        (await dbA.query("SELECT chunk_count, body_inline FROM messages WHERE id = $1", [id])).rows[0];
      assert.deepEqual(head, { chunk_count: 2, body_inline: null });
      const parts = await collect(delivery.readBody(id));
      assert.deepEqual(parts.map((p) => p.length), [CHUNK_SIZE, bytes.length - CHUNK_SIZE]);
      assert.ok(parts.every((p) => Object.getPrototypeOf(p) === Uint8Array.prototype), "plain Uint8Arrays");
      assert.deepEqual(joined(parts), bytes);
    });

    test("a body of more chunks than one read batch comes back whole and in order", async () => {
      await addDomain("bigger.test");
      const bytes = patterned(6 * CHUNK_SIZE + 123);
      const spool = spooled(bytes);
      const id = await enqueueA.enqueue(incoming("s@x.test", ["u@bigger.test"]), spool);
      spool.discard();
      const parts = await collect(delivery.readBody(id));
      assert.equal(parts.length, 7);
      assert.ok(joined(parts).every((b, i) => b === bytes[i]), "same octets");
      // A chunk lost underneath is an error, not a short body.
      await dbA.query("DELETE FROM message_chunks WHERE message_id = $1 AND seq = 5", [id]);
      await assert.rejects(collect(delivery.readBody(id)), /missing body chunk 5/);
      await assert.rejects(
        collect(delivery.readBody(id + 10_000)),
        (e) => e instanceof StoreError && e.kind === "not-found",
      );
    });

    test("quota race: two nodes enqueueing at once never commit more than the quota", async () => {
      await addDomain("quota-race.test", { quotaBytes: 10_000 });
      const attempt = (node: PgEnqueue, i: number) =>
        node.enqueue(incoming("s@x.test", [`u${i}@quota-race.test`]), bodyOf("q".repeat(1000)))
          .then(() => "ok", (error) => error);
      // 30 messages of 1000 octets, half through each node's pool, all in flight together.
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) => attempt(i % 2 === 0 ? enqueueA : enqueueB, i)),
      );
      const accepted = results.filter((r) => r === "ok").length;
      const refused = results.filter((r) => r instanceof QuotaExceededError);
      assert.equal(accepted, 10, "exactly as many as fit");
      assert.equal(refused.length, 20, `every other one refused: ${results.filter((r) => r !== "ok")[0]}`);
      assert.equal((refused[0] as QuotaExceededError).domain, "quota-race.test");
      const committed = (await dbA.query<{ n: number }>(
        "SELECT COALESCE(SUM(message_size), 0)::bigint AS n FROM recipients WHERE domain = 'quota-race.test'",
      )).rows[0]!.n;
      assert.equal(committed, 10_000);
      assert.deepEqual(await counters("quota-race.test"), { recipients: 10, bytes: 10_000 });
    });

    test("a domain's bytes count once per recipient in it, as its counter does", async () => {
      await addDomain("per-rcpt.test", { quotaBytes: 250 });
      await assert.rejects(
        enqueueA.enqueue(
          incoming("s@x.test", ["a@per-rcpt.test", "b@per-rcpt.test", "c@per-rcpt.test"]),
          bodyOf("x".repeat(100)),
        ),
        QuotaExceededError,
      );
      assert.deepEqual(await counters("per-rcpt.test"), { recipients: 0, bytes: 0 }, "nothing stored");
      await enqueueA.enqueue(
        incoming("s@x.test", ["a@per-rcpt.test", "b@per-rcpt.test"]),
        bodyOf("x".repeat(100)),
      );
      assert.deepEqual(await counters("per-rcpt.test"), { recipients: 2, bytes: 200 });
    });

    test("the postmaster mailbox quota holds against two nodes at once", async () => {
      const a = new PgEnqueue(dbA, clock);
      const b = new PgEnqueue(dbB, clock);
      a.postmasterQuotaBytes = b.postmasterQuotaBytes = 500;
      const toMailbox = (node: PgEnqueue) =>
        node.enqueue(
          {
            ...incoming("", []),
            recipients: [{ address: "postmaster", domain: "", notify: null, orcpt: null }],
          },
          bodyOf("p".repeat(100)),
        ).then(() => "ok", (error) => error);
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => toMailbox(i % 2 ? a : b)));
      assert.equal(results.filter((r) => r === "ok").length, 5);
      assert.ok(
        results.filter((r) => r !== "ok").every((r) =>
          r instanceof QuotaExceededError && r.domain === "postmaster"
        ),
      );
      const bytes = (await dbA.query<{ n: number }>(
        "SELECT COALESCE(SUM(message_size), 0)::bigint AS n FROM recipients WHERE domain = '' AND status = 'queued'",
      )).rows[0]!.n;
      assert.equal(bytes, 500);
    });

    test("enqueueMany: one transaction, a failing message alone rejected in its slot", async () => {
      await addDomain("batch.test", { quotaBytes: 300 });
      await addDomain("batch2.test");
      const broken = incoming("s@x.test", ["v@batch2.test"]);
      // A NOT NULL violation inside the database: its savepoint is rolled back, the others go on.
      (broken.recipients[0] as { address: string | null }).address = null;
      const results = await enqueueB.enqueueMany([
        { message: incoming("s@x.test", ["a@batch.test", "w@batch2.test"]), body: bodyOf("x".repeat(200)) },
        { message: incoming("s@x.test", ["b@batch.test"]), body: bodyOf("y".repeat(200)) }, // 400 > 300
        { message: broken, body: bodyOf("z") },
        { message: incoming("s@x.test", ["c@batch.test"]), body: bodyOf("w".repeat(100)) }, // exactly 300
      ]);
      assert.equal(typeof results[0], "number");
      assert.ok(results[1] instanceof QuotaExceededError, String(results[1]));
      assert.ok(
        results[2] instanceof Error && !(results[2] instanceof QuotaExceededError),
        String(results[2]),
      );
      assert.equal(typeof results[3], "number");
      assert.deepEqual(await counters("batch.test"), { recipients: 2, bytes: 300 });
      assert.deepEqual(
        await counters("batch2.test"),
        { recipients: 1, bytes: 200 },
        "the broken one left nothing",
      );
      const ids = (await delivery.nextDeliverable(["batch.test", "batch2.test"], 0)).map((m) => m.id);
      assert.deepEqual(ids, [results[0], results[3]]);
      assert.deepEqual(await enqueueB.enqueueMany([]), []);
    });

    test("enqueueMany into overlapping domains from two nodes in opposite orders does not deadlock", async () => {
      await addDomain("cross-a.test");
      await addDomain("cross-b.test");
      // One recipient per message, alternating domains: each batch reaches its second domain while
      // holding its first, the shape that deadlocks unless a batch locks all its domains up front.
      const batch = (first: string, second: string) =>
        Array.from({ length: 6 }, (_, i) => ({
          message: incoming("s@x.test", [`u${i}@${i % 2 ? second : first}`]),
          body: bodyOf("m".repeat(2)),
        }));
      const rounds = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          (i % 2 ? enqueueA : enqueueB).enqueueMany(
            i % 2 ? batch("cross-a.test", "cross-b.test") : batch("cross-b.test", "cross-a.test"),
          )),
      );
      assert.ok(
        rounds.flat().every((r) => typeof r === "number"),
        String(rounds.flat().find((r) => r instanceof Error)),
      );
      assert.deepEqual(await counters("cross-a.test"), { recipients: 24, bytes: 48 });
      assert.deepEqual(await counters("cross-b.test"), { recipients: 24, bytes: 48 });
    });
  });

  describe("delivery", () => {
    test("hasQueuedMail looks only at queued recipients of the given domains", async () => {
      await addDomain("has.test");
      await addDomain("has-not.test");
      assert.equal(await delivery.hasQueuedMail([]), false);
      assert.equal(await delivery.hasQueuedMail(["has.test", "has-not.test"]), false);
      const id = await enqueueA.enqueue(incoming("s@x.test", ["u@has.test"]), bodyOf("x"));
      assert.equal(await delivery.hasQueuedMail(["has-not.test"]), false);
      assert.equal(await delivery.hasQueuedMail(["has-not.test", "has.test"]), true);
      const [m] = await delivery.nextDeliverable(["has.test"], 0);
      await delivery.recordOutcomes(id, [{
        id: m!.recipients[0]!.id,
        result: "failed",
        code: 550,
        text: "no",
      }]);
      assert.equal(await delivery.hasQueuedMail(["has.test"]), false, "a failed recipient waits for its DSN");
    });

    test("nextDeliverable pages by id with a limit", async () => {
      await addDomain("page.test");
      await addDomain("page2.test");
      const ids: number[] = [];
      for (let i = 0; i < 5; i++) {
        ids.push(
          await enqueueA.enqueue(
            incoming("s@x.test", [`u${i}@${i % 2 ? "page" : "page2"}.test`]),
            bodyOf("x"),
          ),
        );
      }
      const first = await delivery.nextDeliverable(["page.test", "page2.test"], 0, 3);
      assert.deepEqual(first.map((m) => m.id), ids.slice(0, 3));
      const rest = await delivery.nextDeliverable(["page.test", "page2.test"], first[2]!.id, 3);
      assert.deepEqual(rest.map((m) => m.id), ids.slice(3));
      assert.deepEqual(await delivery.nextDeliverable([], 0), []);
    });

    test("recordOutcomesMany: every kind of outcome, several messages, one transaction", async () => {
      await addDomain("out.test");
      clock.set(T0 + 1000);
      const big = spooled(patterned(CHUNK_SIZE + 10));
      const m1 = await enqueueA.enqueue(
        incoming("s@x.test", [
          "del@out.test",
          "def@out.test",
          "rel@out.test",
          "cust@out.test",
          "loc@out.test",
        ]),
        bodyOf("x".repeat(10)),
      );
      const m2 = await enqueueA.enqueue(incoming("s@x.test", ["a@out.test", "b@out.test"]), big);
      big.discard();
      assert.deepEqual(await counters("out.test"), { recipients: 7, bytes: 50 + 2 * (CHUNK_SIZE + 10) });
      const r1 = await recipientRows(m1);
      const r2 = await recipientRows(m2);
      clock.set(T0 + 5000);
      await delivery.recordOutcomesMany([
        {
          messageId: m1,
          outcomes: [
            { id: r1[0]!.id, result: "delivered", code: 250, text: "ok" },
            { id: r1[1]!.id, result: "deferred", code: 451, text: "later" },
            { id: r1[2]!.id, result: "relayed", code: 250, text: "queued", remoteMta: "mx.customer.test" },
            {
              id: r1[3]!.id,
              result: "failed",
              code: 550,
              text: "no such user",
              remoteMta: "mx.customer.test",
            },
            { id: r1[4]!.id, result: "failed", code: 554, text: "refused here", local: true },
          ],
        },
        {
          messageId: m2,
          outcomes: [
            { id: r2[0]!.id, result: "delivered", code: 250, text: "ok" },
            { id: r2[1]!.id, result: "delivered", code: 250, text: "ok" },
          ],
        },
      ]);
      const after1 = await recipientRows(m1);
      const view = (r: (typeof after1)[number]) => ({
        address: r.address,
        status: r.status,
        attempts: r.attempts,
        last_code: r.last_code,
        last_text: r.last_text,
        last_attempt_at: r.last_attempt_at,
        failure_kind: r.failure_kind,
        remote_mta: r.remote_mta,
      });
      assert.deepEqual(after1.map(view), [
        {
          address: "def@out.test",
          status: "queued",
          attempts: 1,
          last_code: 451,
          last_text: "later",
          last_attempt_at: T0 + 5000,
          failure_kind: null,
          remote_mta: null,
        },
        {
          address: "rel@out.test",
          status: "relayed",
          attempts: 1,
          last_code: 250,
          last_text: "queued",
          last_attempt_at: T0 + 5000,
          failure_kind: null,
          remote_mta: "mx.customer.test",
        },
        {
          address: "cust@out.test",
          status: "failed",
          attempts: 1,
          last_code: 550,
          last_text: "no such user",
          last_attempt_at: T0 + 5000,
          failure_kind: "customer-rejected",
          remote_mta: "mx.customer.test",
        },
        {
          address: "loc@out.test",
          status: "failed",
          attempts: 1,
          last_code: 554,
          last_text: "refused here",
          last_attempt_at: T0 + 5000,
          failure_kind: "local-refusal",
          remote_mta: null,
        },
      ]);
      assert.equal(await messageExists(m1), true, "recipients remain");
      assert.equal(await messageExists(m2), false, "no recipient left: the message goes");
      assert.equal((await dbA.query("SELECT 1 FROM message_chunks WHERE message_id = $1", [m2])).rowCount, 0);
      assert.deepEqual(
        await counters("out.test"),
        { recipients: 1, bytes: 10 },
        "only the deferred one is queued",
      );

      // Outcomes touch only recipients still queued: a failed one is not marked again.
      await delivery.recordOutcomes(m1, [
        { id: after1[2]!.id, result: "deferred", code: 421, text: "again" },
        { id: after1[0]!.id, result: "deferred", code: 452, text: "still later" },
      ]);
      const again = await recipientRows(m1);
      assert.deepEqual([again[0]!.attempts, again[0]!.last_code, again[0]!.last_text], [
        2,
        452,
        "still later",
      ]);
      assert.deepEqual([again[2]!.attempts, again[2]!.last_code, again[2]!.status], [1, 550, "failed"]);
      await delivery.recordOutcomesMany([]);
    });

    test("a commit that never happens leaves the recipients queued (at least once)", async () => {
      await addDomain("atleastonce.test");
      const id = await enqueueA.enqueue(incoming("s@x.test", ["u@atleastonce.test"]), bodyOf("x"));
      const [m] = await delivery.nextDeliverable(["atleastonce.test"], 0);
      // A recipient id that does not exist as a bigint makes the statement fail inside the transaction.
      await assert.rejects(delivery.recordOutcomesMany([
        {
          messageId: id,
          outcomes: [{ id: m!.recipients[0]!.id, result: "delivered", code: 250, text: "ok" }],
        },
        { messageId: id, outcomes: [{ id: 2 ** 70, result: "delivered", code: 250, text: "ok" }] },
      ]));
      assert.equal(await delivery.hasQueuedMail(["atleastonce.test"]), true);
      assert.deepEqual(await counters("atleastonce.test"), { recipients: 1, bytes: 1 });
    });

    test("expiryCandidates and expireQueued", async () => {
      await addDomain("expire.test", { retentionMs: 3_600_000 });
      await addDomain("expire-empty.test");
      clock.set(T0);
      const old = await enqueueA.enqueue(
        incoming("s@x.test", ["old@expire.test", "deferred@expire.test"]),
        bodyOf("x"),
      );
      clock.set(T0 + 10_000);
      const young = await enqueueA.enqueue(incoming("s@x.test", ["young@expire.test"]), bodyOf("y"));
      const rows = await recipientRows(old);
      await delivery.recordOutcomes(old, [{
        id: rows[1]!.id,
        result: "deferred",
        code: 452,
        text: "mailbox full",
      }]);
      const candidates = await delivery.expiryCandidates();
      assert.ok(candidates.some((c) => c.name === "expire.test" && c.retentionMs === 3_600_000));
      assert.ok(!candidates.some((c) => c.name === "expire-empty.test"));
      assert.equal(await delivery.expireQueued("expire.test", T0 + 5000, "not collected in time"), 2);
      const expired = await recipientRows(old);
      assert.deepEqual(
        expired.map((r) => [r.address, r.status, r.failure_kind, r.last_code, r.last_text]),
        [
          ["old@expire.test", "failed", "expired", 451, "not collected in time"],
          ["deferred@expire.test", "failed", "expired", 452, "mailbox full"],
        ],
        "the customer's last reply is kept for the DSN",
      );
      assert.equal((await recipientRows(young))[0]!.status, "queued");
      assert.deepEqual(await counters("expire.test"), { recipients: 1, bytes: 1 });
      assert.equal(await delivery.expireQueued("expire.test", T0 + 5000, "again"), 0);
    });
  });

  describe("leases shared by nodes", () => {
    const TTL = 60_000;
    let leasesA: PgLeaseTable;
    let leasesB: PgLeaseTable;

    before(() => {
      leasesA = new PgLeaseTable(dbA, { node: "node-a#1", ttlMs: TTL });
      leasesB = new PgLeaseTable(dbB, { node: "node-b#1", ttlMs: TTL });
    });

    test("only one node gets a domain; all or nothing; release frees it", async () => {
      assert.equal(await leasesA.tryAcquire(["one.test", "two.test"], "s1", TTL), true);
      assert.equal(await leasesB.tryAcquire(["one.test"], "s9", TTL), false);
      // The same session id on another node is another owner.
      assert.equal(await leasesB.tryAcquire(["two.test"], "s1", TTL), false);
      assert.equal(await leasesB.tryAcquire(["three.test", "two.test"], "s9", TTL), false);
      assert.ok(
        !(await leasesA.busyDomains()).includes("three.test"),
        "nothing of a refused request is taken",
      );
      assert.equal(
        await leasesA.tryAcquire(["one.test", "two.test", "three.test"], "s1", TTL),
        true,
        "renewal, and more",
      );
      await leasesA.release("s1");
      assert.equal(await leasesB.tryAcquire(["one.test", "two.test", "three.test"], "s9", TTL), true);
      assert.deepEqual(
        (await leasesA.busyDomains()).filter((d) => ["one.test", "two.test", "three.test"].includes(d)),
        ["one.test", "three.test", "two.test"],
        "busy domains of any node",
      );
      await leasesB.release("s9");
      assert.deepEqual(await leasesA.busyDomains(), []);
    });

    test("idle marks: kept by a renewal of the same owner, a new owner starts busy", async () => {
      assert.equal(await leasesA.tryAcquire(["idle.test"], "w1", 400), true);
      await leasesA.setIdle("w1", true);
      assert.ok(!(await leasesB.busyDomains()).includes("idle.test"), "idle is not busy");
      assert.equal(
        await leasesB.tryAcquire(["idle.test"], "w2", TTL),
        false,
        "an idle lease still keeps others out",
      );
      assert.equal(await leasesA.tryAcquire(["idle.test"], "w1", 400), true);
      assert.ok(!(await leasesB.busyDomains()).includes("idle.test"), "renewal kept the idle mark");
      await leasesA.setIdle("w1", false);
      assert.ok((await leasesB.busyDomains()).includes("idle.test"));
      await leasesA.setIdle("w1", true);
      // w1 asked for 400 ms and no heartbeat runs: the lease expires, and a new owner starts busy.
      await eventually("the idle lease expires", () => leasesB.tryAcquire(["idle.test"], "w2", TTL));
      assert.ok((await leasesA.busyDomains()).includes("idle.test"));
      await leasesB.release("w2");
    });

    test("expiry lets the other node in (short ttl, server clock)", async () => {
      const shortA = new PgLeaseTable(dbA, { node: "short-a#1", ttlMs: 300 });
      const shortB = new PgLeaseTable(dbB, { node: "short-b#1", ttlMs: 300 });
      const started = Date.now();
      assert.equal(await shortA.tryAcquire(["expiry.test"], "s", TTL), true, "held for the table's 300 ms");
      assert.equal(await shortB.tryAcquire(["expiry.test"], "s", TTL), false);
      await eventually("node B takes the expired lease", () => shortB.tryAcquire(["expiry.test"], "s", TTL));
      assert.ok(Date.now() - started >= 250, "not before the ttl");
      assert.equal(await shortA.tryAcquire(["expiry.test"], "s", TTL), false, "now it is B's");
      await shortB.releaseNode();
    });

    test("a heartbeat keeps a live node's lease past the ttl; a stopped node's lease expires", async () => {
      const beatA = new PgLeaseTable(dbA, { node: "beat-a#1", ttlMs: 1000, hostname: "host-a" });
      const other = new PgLeaseTable(dbB, { node: "beat-b#1", ttlMs: 1000 });
      assert.equal(await beatA.tryAcquire(["beat.test"], "s", TTL), true);
      beatA.startHeartbeat(100);
      try {
        // Two and a half ttls later the lease is still A's.
        const until = Date.now() + 2500;
        for (let round = 0; round < 100 && Date.now() < until; round++) {
          assert.equal(await other.tryAcquire(["beat.test"], "s", TTL), false, "held while A beats");
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const node =
          (await dbA.query("SELECT hostname, heartbeat_at >= started_at AS ok FROM nodes WHERE id = $1", [
            "beat-a#1",
          ])).rows[0];
        assert.deepEqual(node, { hostname: "host-a", ok: true }, "the beat is recorded in nodes");
      } finally {
        beatA.stop();
        await beatA.stopped();
      }
      // "Node A died": no more beats. Its lease expires within the ttl.
      const stoppedAt = Date.now();
      await eventually(
        "the dead node's lease expires",
        () => other.tryAcquire(["beat.test"], "s", TTL),
        4000,
      );
      // The ttl after the last beat, plus scheduling slack.
      assert.ok(Date.now() - stoppedAt < 2500, `took ${Date.now() - stoppedAt} ms`);
      await other.releaseNode();
      await beatA.releaseNode();
      assert.equal((await dbA.query("SELECT 1 FROM nodes WHERE id = 'beat-a#1'")).rowCount, 0);
    });

    test("the heartbeat does not extend a session past the ttl it asked for", async () => {
      const clockA = new ManualClock(T0);
      const beatA = new PgLeaseTable(dbA, { node: "bounded-a#1", clock: clockA, ttlMs: 300 });
      const other = new PgLeaseTable(dbB, { node: "bounded-b#1", ttlMs: 300 });
      assert.equal(await beatA.tryAcquire(["bounded.test"], "stuck", 10_000), true);
      await beatA.heartbeat();
      assert.equal(await other.tryAcquire(["bounded.test"], "s", TTL), false);
      // Ten seconds later on A's clock the session never renewed: beats stop extending it.
      clockA.advance(10_001);
      beatA.startHeartbeat(50);
      try {
        await eventually(
          "the stuck session's lease expires",
          () => other.tryAcquire(["bounded.test"], "s", TTL),
        );
      } finally {
        await beatA.releaseNode();
        await other.releaseNode();
      }
    });

    test("20 rounds of concurrent tryAcquire from both nodes: never both", async () => {
      for (let round = 0; round < 20; round++) {
        // Overlapping sets in opposite orders: one must win, neither may deadlock.
        const x = `race${round}-x.test`;
        const y = `race${round}-y.test`;
        const [a, b] = await Promise.all([
          leasesA.tryAcquire([x, y], "racer", TTL),
          leasesB.tryAcquire([y, x], "racer", TTL),
        ]);
        assert.ok(!(a && b), `round ${round}: both nodes got the domains`);
        assert.ok(a || b, `round ${round}: neither got free domains`);
        const owners = (await dbA.query<{ node: string }>(
          "SELECT DISTINCT node FROM domain_leases WHERE domain = ANY($1::text[])",
          [[x, y]],
        )).rows;
        assert.deepEqual(owners, [{ node: a ? "node-a#1" : "node-b#1" }], "all or nothing");
        await (a ? leasesA : leasesB).release("racer");
      }
    });

    test("claimJob: one node runs a cluster-wide job until its lease lapses; releaseNode hands it over", async () => {
      assert.equal(await leasesA.claimJob("expiry", 300), true);
      assert.equal(await leasesB.claimJob("expiry", 300), false);
      assert.equal(await leasesA.claimJob("expiry", 300), true, "renewed by its holder");
      assert.ok(!(await leasesA.busyDomains()).some((d) => d.startsWith("job:")), "jobs are not domains");
      await eventually("the lapsed job moves to B", () => leasesB.claimJob("expiry", 60_000));
      assert.equal(await leasesA.claimJob("expiry", 300), false);
      await leasesB.releaseNode();
      assert.equal(await leasesA.claimJob("expiry", 60_000), true, "free at once after a clean shutdown");
      await leasesA.releaseNode();
    });
  });
});
