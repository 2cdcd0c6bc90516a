/**
 * `migrate --to`: a SQLite queue built through the real store is copied into a real throwaway PostgreSQL
 * cluster, and the copy is compared row by row (ids, addresses, bodies byte for byte), counter by counter,
 * and refused when it would merge two queues.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.ts";
import { migrateTo } from "../../src/cli/migrate_to.ts";
import type { CliIo } from "../../src/cli/command.ts";
import {
  COPIED_TABLES,
  CopyMismatchError,
  copySqliteToPostgres,
  MAX_BATCH_BYTES,
  MAX_BATCH_ROWS,
  TargetNotEmptyError,
} from "../../src/queue/copy_to_postgres.ts";
import { OutboundQueue } from "../../src/queue/outbound_queue.ts";
import { PostgresDatabase } from "../../src/queue/pg/database.ts";
import { CHUNK_SIZE } from "../../src/queue/spool.ts";
import type { QueueStore } from "../../src/queue/store.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { bodyOf, incoming, tempStore, testSecrets } from "../support/store.ts";

const T0 = 1_700_000_000_000;

/** `size` deterministic octets covering all 256 values (so any text/bytea mangling shows). */
function patterned(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 8)) & 255;
  return bytes;
}

/** A body handed to the store in CHUNK_SIZE pieces, as the spool does, so it is stored chunked. */
function chunkedBody(bytes: Uint8Array) {
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += CHUNK_SIZE) pieces.push(bytes.subarray(at, at + CHUNK_SIZE));
  return { size: bytes.length, eightBit: true, chunks: () => pieces };
}

/** The ordering key of each table, for comparing rows side by side. */
const ORDER_BY: Record<(typeof COPIED_TABLES)[number], string> = {
  accounts: "id",
  domains: "name",
  domain_mailboxes: "domain, local_part",
  messages: "id",
  message_chunks: "message_id, seq",
  recipients: "id",
  atrn_sessions: "id",
  outbound: "id",
  housekeeping_state: "key",
};

/** A value in one comparable form: booleans as 0/1 (SQLite's), bytes as hex. */
function comparable(value: unknown): unknown {
  if (value instanceof Uint8Array) return `hex:${Buffer.from(value).toString("hex")}`;
  if (typeof value === "boolean") return value ? 1 : 0;
  return value;
}

function sqliteRows(store: QueueStore, table: keyof typeof ORDER_BY): Record<string, unknown>[] {
  const rows = store.database.raw.prepare(`SELECT * FROM ${table} ORDER BY ${ORDER_BY[table]}`).all();
  return rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, comparable(v)])));
}

/** PostgreSQL's rows restricted to the SQLite columns (the PG schema may have more). */
async function pgRows(
  db: PostgresDatabase,
  table: keyof typeof ORDER_BY,
  columns: string[],
): Promise<Record<string, unknown>[]> {
  const { rows } = await db.query(`SELECT * FROM ${table} ORDER BY ${ORDER_BY[table]}`);
  return rows.map((row) => Object.fromEntries(columns.map((c) => [c, comparable(row[c])])));
}

function sqliteColumns(store: QueueStore, table: string): string[] {
  return (store.database.raw.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((r) =>
    r.name
  );
}

async function pgCount(db: PostgresDatabase, table: string): Promise<number> {
  return (await db.query<{ n: number }>(`SELECT COUNT(*)::int8 AS n FROM ${table}`)).rows[0]!.n;
}

interface Seeded {
  store: QueueStore;
  dataDir: string;
  inlineId: number;
  chunkedId: number;
  inlineBody: Uint8Array;
  chunkedBytes: Uint8Array;
}

/**
 * The queue the brief describes: 2 accounts, 3 domains (one with mailboxes, one held), an inline and
 * a chunked (300 KB) message, queued and failed recipients, an ATRN session, an outbound DSN, a
 * housekeeping fact; and a deleted message, so the ids have a gap the copy must keep.
 */
function seededQueue(): Seeded {
  const clock = new ManualClock(T0);
  const { store, dataDir } = tempStore(clock);
  const alice = store.addAccount("alice", testSecrets("alice-secret"));
  store.addAccount("bob", testSecrets("bob-secret"));
  store.addDomain("a.test", "alice", { mailboxes: ["info", "Sales"] });
  store.addDomain("b.test", "alice");
  store.addDomain("held.test", "bob");
  store.setDomainHold("held.test", true);
  store.updateDomain("b.test", { notifyAddress: "ops@elsewhere.test", notifyAfterMs: 3_600_000 });
  clock.advance(1000);
  const gone = store.enqueue(incoming("s@x.test", ["info@a.test"]), bodyOf("deleted\r\n"));
  const inlineBody = new TextEncoder().encode("Subject: hi\r\n\r\nGr\u00fc\u00dfe\r\n");
  const inlineId = store.enqueue(incoming("s@x.test", ["info@a.test", "u@b.test"]), bodyOf(inlineBody));
  const chunkedBytes = patterned(300 * 1024);
  const chunkedId = store.enqueue(incoming("", ["v@b.test", "w@held.test"]), chunkedBody(chunkedBytes));
  assert.equal(store.deleteMessage(gone), true);
  const failed = store.database.raw.prepare("SELECT id FROM recipients WHERE address = 'u@b.test'").get() as {
    id: number;
  };
  store.recordOutcomes(inlineId, [
    { id: failed.id, result: "failed", code: 550, text: "5.1.1 no such user", remoteMta: "mx.b.test" },
  ]);
  store.recordAtrnSession({
    accountId: alice.id,
    username: "alice",
    domains: ["a.test", "b.test"],
    peer: "192.0.2.7",
    tls: true,
    startedAt: T0 + 2000,
    endedAt: T0 + 3000,
    delivered: 0,
    deferred: 0,
    failed: 1,
    outcome: "turned",
    detail: null,
  });
  new OutboundQueue(store.database, clock).add({
    kind: "dsn",
    mailFrom: "",
    rcpt: "s@x.test",
    domain: "x.test",
    body: patterned(5000),
    eightBit: true,
    smtputf8: false,
    lifetimeMs: 86_400_000,
    aboutMessageId: inlineId,
  });
  store.database.raw.prepare("INSERT INTO housekeeping_state (key, value) VALUES ('delay_scan_after', ?)")
    .run(inlineId);
  return { store, dataDir, inlineId, chunkedId, inlineBody, chunkedBytes };
}

describe("copying a SQLite queue to PostgreSQL", { skip: postgresSkipReason() }, () => {
  let cluster: TestPostgres;
  const opened: PostgresDatabase[] = [];
  const stores: QueueStore[] = [];
  let databases = 0;

  /** A new empty database on the cluster, with its URL. */
  async function freshTarget(): Promise<{ db: PostgresDatabase; url: string }> {
    const url = await cluster.createDatabase(`copy_${++databases}`);
    const db = new PostgresDatabase(url, { poolSize: 3 });
    opened.push(db);
    return { db, url };
  }

  function seeded(): Seeded {
    const queue = seededQueue();
    stores.push(queue.store);
    return queue;
  }

  before(async () => {
    cluster = await startPostgres();
  });

  after(async () => {
    for (const db of opened) await db.close();
    for (const store of stores) store.database.close();
    await cluster?.stop();
  });

  describe("a seeded queue", () => {
    let queue: Seeded;
    let target: PostgresDatabase;
    let report: Awaited<ReturnType<typeof copySqliteToPostgres>>;

    before(async () => {
      queue = seeded();
      target = (await freshTarget()).db;
      report = await copySqliteToPostgres(queue.store.database, target);
    });

    test("every table has as many rows in PostgreSQL as in SQLite", () => {
      assert.deepEqual(report.tables.map((t) => t.table), [...COPIED_TABLES]);
      const counts = Object.fromEntries(report.tables.map((t) => [t.table, [t.source, t.target]]));
      assert.deepEqual(counts, {
        accounts: [2, 2],
        domains: [3, 3],
        domain_mailboxes: [2, 2],
        messages: [2, 2],
        message_chunks: [2, 2],
        recipients: [4, 4],
        atrn_sessions: [1, 1],
        outbound: [1, 1],
        housekeeping_state: [1, 1],
      });
    });

    test("the PostgreSQL rows equal the SQLite rows, ids included", async () => {
      for (const table of COPIED_TABLES) {
        const expected = sqliteRows(queue.store, table);
        const actual = await pgRows(target, table, sqliteColumns(queue.store, table));
        assert.deepEqual(actual, expected, table);
      }
      // The deleted first message left a gap: ids were kept, not renumbered.
      const ids = (await target.query<{ id: number }>("SELECT id FROM messages ORDER BY id")).rows.map((r) =>
        r.id
      );
      assert.deepEqual(ids, [queue.inlineId, queue.chunkedId]);
      assert.ok(queue.inlineId > 1);
    });

    test("bodies are the same bytes, inline and reassembled from the chunks", async () => {
      const inline = await target.query<{ body_inline: Buffer; chunk_count: number }>(
        "SELECT body_inline, chunk_count FROM messages WHERE id = $1",
        [queue.inlineId],
      );
      assert.equal(inline.rows[0]!.chunk_count, 0);
      assert.ok(Buffer.from(queue.inlineBody).equals(inline.rows[0]!.body_inline));
      const chunks = await target.query<{ data: Buffer }>(
        "SELECT data FROM message_chunks WHERE message_id = $1 ORDER BY seq",
        [queue.chunkedId],
      );
      assert.equal(chunks.rows.length, 2);
      assert.ok(Buffer.concat(chunks.rows.map((r) => r.data)).equals(Buffer.from(queue.chunkedBytes)));
      const chunked = await target.query<
        { body_inline: Buffer | null; chunk_count: number; eight_bit: boolean }
      >(
        "SELECT body_inline, chunk_count, eight_bit FROM messages WHERE id = $1",
        [queue.chunkedId],
      );
      assert.deepEqual(chunked.rows[0], { body_inline: null, chunk_count: 2, eight_bit: true });
    });

    test("booleans, held domains, mailboxes, statuses and the ATRN/notify fields came across", async () => {
      const domains = (await target.query(
        "SELECT name, hold, catch_all, last_atrn_at, last_atrn_peer, notify_address, notify_after_ms " +
          "FROM domains ORDER BY name",
      )).rows;
      assert.deepEqual(domains, [
        {
          name: "a.test",
          hold: false,
          catch_all: false,
          last_atrn_at: T0 + 3000,
          last_atrn_peer: "192.0.2.7",
          notify_address: null,
          notify_after_ms: null,
        },
        {
          name: "b.test",
          hold: false,
          catch_all: true,
          last_atrn_at: T0 + 3000,
          last_atrn_peer: "192.0.2.7",
          notify_address: "ops@elsewhere.test",
          notify_after_ms: 3_600_000,
        },
        {
          name: "held.test",
          hold: true,
          catch_all: true,
          last_atrn_at: null,
          last_atrn_peer: null,
          notify_address: null,
          notify_after_ms: null,
        },
      ]);
      const mailboxes =
        (await target.query("SELECT local_part FROM domain_mailboxes ORDER BY local_part")).rows;
      assert.deepEqual(mailboxes.map((r) => r.local_part), ["Sales", "info"]);
      const recipients =
        (await target.query("SELECT address, status, last_code FROM recipients ORDER BY id")).rows;
      assert.deepEqual(recipients, [
        { address: "info@a.test", status: "queued", last_code: null },
        { address: "u@b.test", status: "failed", last_code: 550 },
        { address: "v@b.test", status: "queued", last_code: null },
        { address: "w@held.test", status: "queued", last_code: null },
      ]);
      const session = (await target.query("SELECT username, domains, tls, failed FROM atrn_sessions")).rows;
      assert.deepEqual(session, [{ username: "alice", domains: "a.test,b.test", tls: true, failed: 1 }]);
    });

    test("the trigger-kept counters equal SQLite's: queued recipients counted once, failed ones not", async () => {
      const sizes = queue.store.database.raw.prepare("SELECT id, size FROM messages").all() as {
        id: number;
        size: number;
      }[];
      const sizeOf = (id: number) => sizes.find((m) => m.id === id)!.size;
      const counters = (await target.query(
        "SELECT name, queued_recipients, queued_bytes FROM domains ORDER BY name",
      )).rows;
      assert.deepEqual(counters, [
        { name: "a.test", queued_recipients: 1, queued_bytes: sizeOf(queue.inlineId) },
        { name: "b.test", queued_recipients: 1, queued_bytes: sizeOf(queue.chunkedId) },
        { name: "held.test", queued_recipients: 1, queued_bytes: sizeOf(queue.chunkedId) },
      ]);
      const totals =
        (await target.query("SELECT messages, bytes, recipients FROM queue_totals WHERE id = 1")).rows;
      assert.deepEqual(totals, [{
        messages: 2,
        bytes: sizeOf(queue.inlineId) + sizeOf(queue.chunkedId),
        recipients: 3,
      }]);
    });

    test("a second copy into the same database is refused and changes nothing", async () => {
      await assert.rejects(
        copySqliteToPostgres(queue.store.database, target),
        (error: Error) =>
          error instanceof TargetNotEmptyError && /already holds queue data/.test(error.message),
      );
      for (const t of report.tables) assert.equal(await pgCount(target, t.table), t.target, t.table);
      const recipients = (await target.query("SELECT SUM(queued_recipients)::int8 AS n FROM domains"))
        .rows[0]!;
      assert.equal(recipients.n, 3);
    });

    test("rows inserted after the copy get ids above the copied ones", async () => {
      const maxOf = async (table: string) =>
        (await target.query<{ m: number }>(`SELECT MAX(id) AS m FROM ${table}`)).rows[0]!.m;
      const [accounts, messages, recipients, sessions, outbound] = await Promise.all(
        ["accounts", "messages", "recipients", "atrn_sessions", "outbound"].map(maxOf),
      );
      const account = await target.query<{ id: number }>(
        "INSERT INTO accounts (username, cram_md5_secret, password_hash, created_at) " +
          "VALUES ('carol', 'c', 'h', $1) RETURNING id",
        [T0],
      );
      assert.equal(account.rows[0]!.id, accounts! + 1);
      const message = await target.query<{ id: number }>(
        "INSERT INTO messages (received_at, mail_from, size, client_ip, client_helo) " +
          "VALUES ($1, 's@x.test', 3, '127.0.0.1', 'h') RETURNING id",
        [T0],
      );
      assert.equal(message.rows[0]!.id, messages! + 1);
      const recipient = await target.query<{ id: number }>(
        "INSERT INTO recipients (message_id, address, domain, queued_at, message_size) " +
          "VALUES ($1, 'z@b.test', 'b.test', $2, 3) RETURNING id",
        [message.rows[0]!.id, T0],
      );
      assert.equal(recipient.rows[0]!.id, recipients! + 1);
      const session = await target.query<{ id: number }>(
        "INSERT INTO atrn_sessions (username, domains, peer, started_at, outcome) " +
          "VALUES ('bob', 'held.test', '192.0.2.8', $1, 'no-mail') RETURNING id",
        [T0],
      );
      assert.equal(session.rows[0]!.id, sessions! + 1);
      const dsn = await target.query<{ id: number }>(
        "INSERT INTO outbound (created_at, kind, mail_from, rcpt, domain, body, next_attempt_at, expires_at) " +
          "VALUES ($1, 'dsn', '', 'r@x.test', 'x.test', '\\x00'::bytea, $1, $1) RETURNING id",
        [T0],
      );
      assert.equal(dsn.rows[0]!.id, outbound! + 1);
    });
  });

  test("counters that do not add up roll the whole copy back", async () => {
    const queue = seeded();
    // A counter SQLite's triggers would never leave like this: the verification must catch it.
    queue.store.database.raw.exec(
      "UPDATE domains SET queued_recipients = queued_recipients + 1 WHERE name = 'b.test'",
    );
    const { db } = await freshTarget();
    await assert.rejects(
      copySqliteToPostgres(queue.store.database, db),
      (error: Error) => error instanceof CopyMismatchError && /b\.test/.test(error.message),
    );
    for (const table of COPIED_TABLES) {
      assert.equal(await pgCount(db, table), 0, `${table} after the rollback`);
    }
    assert.equal(queue.store.database.raw.isTransaction, false, "the SQLite snapshot was ended");
  });

  test("ids SQLite handed out to mail already gone are not handed out again", async () => {
    const queue = seeded();
    const last = queue.store.enqueue(incoming("s@x.test", ["info@a.test"]), bodyOf("delivered\r\n"));
    const lastRecipient = (queue.store.database.raw.prepare("SELECT MAX(id) AS m FROM recipients").get() as {
      m: number;
    }).m;
    assert.equal(queue.store.deleteMessage(last), true);
    const { db } = await freshTarget();
    await copySqliteToPostgres(queue.store.database, db);
    const message = await db.query<{ id: number }>(
      "INSERT INTO messages (received_at, mail_from, size, client_ip, client_helo) " +
        "VALUES ($1, 's@x.test', 3, '127.0.0.1', 'h') RETURNING id",
      [T0],
    );
    assert.equal(message.rows[0]!.id, last + 1);
    const recipient = await db.query<{ id: number }>(
      "INSERT INTO recipients (message_id, address, domain, queued_at, message_size) " +
        "VALUES ($1, 'z@b.test', 'b.test', $2, 3) RETURNING id",
      [message.rows[0]!.id, T0],
    );
    assert.equal(recipient.rows[0]!.id, lastRecipient + 1);
    // The counter triggers, off during the copy, count again afterwards.
    const counted = async () =>
      (await db.query<{ n: string }>("SELECT recipients AS n FROM queue_totals WHERE id = 1")).rows[0]!.n;
    const before = Number(await counted());
    await db.query("DELETE FROM recipients WHERE id = $1", [recipient.rows[0]!.id]);
    assert.equal(Number(await counted()), before - 1);
  });

  test("a SQLite column PostgreSQL has no room for refuses the copy before any row moves", async () => {
    const queue = seeded();
    // What a binary whose SQLite migration added a column its PostgreSQL migration lacks would hold.
    queue.store.database.raw.exec("ALTER TABLE recipients ADD COLUMN future_state TEXT");
    const { db } = await freshTarget();
    await assert.rejects(
      copySqliteToPostgres(queue.store.database, db),
      (error: Error) => error instanceof CopyMismatchError && /recipients\.future_state/.test(error.message),
    );
    for (const table of COPIED_TABLES) {
      assert.equal(await pgCount(db, table), 0, `${table} after the refusal`);
    }
  });

  test("a big queue goes in bounded batches: rows per INSERT and bytes per INSERT", async () => {
    const clock = new ManualClock(T0);
    const { store } = tempStore(clock);
    stores.push(store);
    store.addAccount("alice", testSecrets("alice-secret"));
    store.addDomain("big.test", "alice");
    const many = Array.from({ length: 2 * MAX_BATCH_ROWS + 100 }, (_, i) => `r${i}@big.test`);
    store.enqueue(incoming("s@x.test", many), bodyOf("small\r\n"));
    // Just over the byte budget: the chunks need two INSERTs.
    const bodyBytes = patterned(MAX_BATCH_BYTES + 4 * CHUNK_SIZE);
    store.enqueue(incoming("s@x.test", ["big@big.test"]), chunkedBody(bodyBytes));
    const { db } = await freshTarget();
    const progress: Record<string, number[]> = {};
    const report = await copySqliteToPostgres(store.database, db, {
      onProgress: (table, rows) => (progress[table] ??= []).push(rows),
    });
    assert.deepEqual(progress.recipients, [MAX_BATCH_ROWS, 2 * MAX_BATCH_ROWS, many.length + 1]);
    const chunkBatches = progress.message_chunks!.map((rows, i, all) => rows - (all[i - 1] ?? 0));
    assert.ok(chunkBatches.length >= 2, `chunks in batches ${chunkBatches}`);
    for (const rows of chunkBatches) {
      assert.ok(rows * CHUNK_SIZE <= MAX_BATCH_BYTES, `batch of ${rows} chunks`);
    }
    assert.equal(chunkBatches.reduce((a, b) => a + b, 0), bodyBytes.length / CHUNK_SIZE);
    assert.equal(report.tables.find((t) => t.table === "recipients")!.target, many.length + 1);
    const chunks = await db.query<{ data: Buffer }>(
      "SELECT data FROM message_chunks WHERE message_id = 2 ORDER BY seq",
    );
    assert.ok(Buffer.concat(chunks.rows.map((r) => r.data)).equals(Buffer.from(bodyBytes)));
    // An empty table's sequence starts at 1.
    const session = await db.query<{ id: number }>(
      "INSERT INTO atrn_sessions (username, domains, peer, started_at, outcome) " +
        "VALUES ('alice', 'big.test', '192.0.2.9', $1, 'no-mail') RETURNING id",
      [T0],
    );
    assert.equal(session.rows[0]!.id, 1);
  });

  describe("migrateTo (the CLI)", () => {
    function captured(): CliIo & { lines: string[]; errors: string[] } {
      const lines: string[] = [];
      const errors: string[] = [];
      return {
        lines,
        errors,
        out: (text) => lines.push(...text.split("\n")),
        err: (text) => errors.push(...text.split("\n")),
        readStdin: () => Promise.resolve(""),
        env: {},
      };
    }

    test("prints one line per table and the database setting without the password", async () => {
      const queue = seeded();
      const { url } = await freshTarget();
      const io = captured();
      assert.equal(await migrateTo(url, queue.dataDir, io), 0, io.errors.join("\n"));
      assert.deepEqual(io.lines.slice(0, COPIED_TABLES.length), [
        "accounts 2 -> 2",
        "domains 3 -> 3",
        "domain_mailboxes 2 -> 2",
        "messages 2 -> 2",
        "message_chunks 2 -> 2",
        "recipients 4 -> 4",
        "atrn_sessions 1 -> 1",
        "outbound 1 -> 1",
        "housekeeping_state 1 -> 1",
      ]);
      const noPassword = url.replace(`:${cluster.password}@`, "@");
      assert.notEqual(noPassword, url);
      assert.deepEqual(io.lines.slice(COPIED_TABLES.length), [
        `copied; point every node at the new database with database = "${noPassword}"`,
      ]);
      assert.deepEqual(io.errors, []);

      const again = captured();
      assert.equal(await migrateTo(url, queue.dataDir, again), 1);
      assert.match(again.errors.join("\n"), /already holds queue data/);
      assert.equal(again.errors.join("\n").includes(cluster.password), false, "no password in the error");
      assert.deepEqual(again.lines, []);
    });

    test("refuses a data directory without a queue and a URL that is not PostgreSQL", async () => {
      const { url } = await freshTarget();
      const io = captured();
      assert.equal(await migrateTo(url, "/nonexistent/odmr-data", io), 1);
      assert.match(io.errors.join("\n"), /no queue database at \/nonexistent\/odmr-data\/queue\.db/);
      const sqlite = captured();
      assert.equal(await migrateTo("sqlite:///tmp/x.db", "/nonexistent", sqlite), 2);
      assert.match(sqlite.errors.join("\n"), /postgres:\/\/ URL/);
    });
  });
});
