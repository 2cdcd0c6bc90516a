/**
 * The PostgreSQL migrator (src/queue/pg/migrate.ts) and the schema its bundled migrations make, against a
 * real throwaway cluster (test/support/postgres.ts): versions, nodes starting together, a newer schema,
 * the counter triggers, and that the tables are those of the SQLite queue.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.ts";
import { openDatabase } from "../../src/queue/db.ts";
import type { BundledMigration } from "../../src/queue/migrations_bundle.ts";
import { PostgresDatabase } from "../../src/queue/pg/database.ts";
import { migratePostgres, postgresSchemaVersion, SchemaTooNewError } from "../../src/queue/pg/migrate.ts";
import { POSTGRES_MIGRATIONS } from "../../src/queue/pg/migrations_bundle.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";

const T0 = 1_700_000_000_000;
const ALL_TAGS = POSTGRES_MIGRATIONS.map((m) => m.tag);

/** Tables only the shared queue has: leases and cluster members. */
const POSTGRES_ONLY = new Set(["domain_leases", "nodes"]);

/** One column as both databases can describe it. */
interface ColumnShape {
  name: string;
  notNull: boolean;
  /** integer (SQLite INTEGER: PostgreSQL bigint, integer or boolean), text, or blob. */
  family: string;
}

const sortShapes = (shapes: ColumnShape[]) => shapes.sort((a, b) => a.name.localeCompare(b.name));

/** The SQLite queue's schema, freshly migrated: columns per table, index and trigger names. */
function sqliteSchema() {
  const open = openDatabase(":memory:");
  try {
    const names = (type: string) =>
      (open.raw.prepare(
        "SELECT name FROM sqlite_master WHERE type = ? AND name NOT LIKE 'sqlite_%' ORDER BY name",
      ).all(type) as { name: string }[]).map((r) => r.name);
    const tables = new Map<string, ColumnShape[]>();
    for (const table of names("table")) {
      const info = open.raw.prepare(`PRAGMA table_info("${table}")`).all() as {
        name: string;
        type: string;
        notnull: number;
        pk: number;
      }[];
      tables.set(
        table,
        sortShapes(info.map((c) => ({
          name: c.name,
          // An INTEGER PRIMARY KEY is the rowid: never null, whatever PRAGMA says.
          notNull: c.notnull === 1 || c.pk > 0,
          family: c.type.toLowerCase(),
        }))),
      );
    }
    return { tables, indexes: names("index"), triggers: names("trigger") };
  } finally {
    open.close();
  }
}

const POSTGRES_FAMILY: Record<string, string> = {
  bigint: "integer",
  integer: "integer",
  boolean: "integer",
  text: "text",
  bytea: "blob",
};

/** The same description of a migrated PostgreSQL database. */
async function postgresSchema(db: PostgresDatabase) {
  const columns = await db.query<
    { table_name: string; column_name: string; is_nullable: string; data_type: string }
  >(
    "SELECT table_name, column_name, is_nullable, data_type FROM information_schema.columns " +
      "WHERE table_schema = current_schema() ORDER BY table_name",
  );
  const tables = new Map<string, ColumnShape[]>();
  for (const row of columns.rows) {
    const list = tables.get(row.table_name) ?? [];
    list.push({
      name: row.column_name,
      notNull: row.is_nullable === "NO",
      family: POSTGRES_FAMILY[row.data_type] ?? `unexpected ${row.data_type}`,
    });
    tables.set(row.table_name, list);
  }
  for (const list of tables.values()) sortShapes(list);
  // Primary keys left out: SQLite keeps those as unnamed autoindexes, or as the rowid.
  const indexes = await db.query<{ indexname: string; indexdef: string }>(
    "SELECT c.relname AS indexname, pg_get_indexdef(i.indexrelid) AS indexdef FROM pg_index i " +
      "JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisprimary " +
      "AND c.relnamespace = current_schema()::regnamespace ORDER BY c.relname",
  );
  const triggers = await db.query<{ trigger_name: string }>(
    "SELECT DISTINCT trigger_name FROM information_schema.triggers WHERE trigger_schema = current_schema() " +
      "ORDER BY trigger_name",
  );
  return { tables, indexes: indexes.rows, triggers: triggers.rows.map((r) => r.trigger_name) };
}

describe("PostgreSQL migrations", { skip: postgresSkipReason() }, () => {
  let cluster: TestPostgres;
  let serial = 0;
  const opened: PostgresDatabase[] = [];

  before(async () => {
    cluster = await startPostgres();
  });

  after(async () => {
    for (const db of opened) await db.close().catch(() => {});
    await cluster?.stop();
  });

  /** `pools` connection pools on one fresh, empty database (one per "node"). */
  async function freshDatabase(pools = 1): Promise<PostgresDatabase[]> {
    const url = await cluster.createDatabase(`migrate_${++serial}`);
    const dbs = Array.from({ length: pools }, () => new PostgresDatabase(url, { poolSize: 3 }));
    opened.push(...dbs);
    return dbs;
  }

  async function recorded(db: PostgresDatabase) {
    return (await db.query("SELECT version, tag, hash, applied_at FROM schema_migrations ORDER BY version"))
      .rows;
  }

  test("a fresh database reaches the latest version and a second run is a no-op", async () => {
    const [db] = await freshDatabase();
    assert.equal(await postgresSchemaVersion(db!), 0);
    const clock = new ManualClock(T0);
    assert.deepEqual(await migratePostgres(db!, POSTGRES_MIGRATIONS, clock), ALL_TAGS);
    assert.equal(await postgresSchemaVersion(db!), POSTGRES_MIGRATIONS.length);
    const rows = POSTGRES_MIGRATIONS.map((m, i) => ({
      version: i + 1,
      tag: m.tag,
      hash: m.hash,
      applied_at: T0,
    }));
    assert.deepEqual(await recorded(db!), rows);

    clock.advance(1000);
    assert.deepEqual(await migratePostgres(db!, POSTGRES_MIGRATIONS, clock), []);
    assert.equal(await postgresSchemaVersion(db!), POSTGRES_MIGRATIONS.length);
    assert.deepEqual(await recorded(db!), rows, "nothing re-recorded");
  });

  test("two nodes migrating at the same time apply each migration once", async () => {
    const [a, b] = await freshDatabase(2);
    // Without the advisory lock both would run 0000_init, and the second CREATE TABLE would fail.
    const [appliedA, appliedB] = await Promise.all([migratePostgres(a!), migratePostgres(b!)]);
    assert.deepEqual([...appliedA!, ...appliedB!].sort(), ALL_TAGS, `A: ${appliedA}, B: ${appliedB}`);
    assert.deepEqual((await recorded(a!)).map((r) => r.tag), ALL_TAGS);
    const totals = await a!.query("SELECT id FROM queue_totals");
    assert.deepEqual(totals.rows, [{ id: 1 }], "the counters row was inserted once");
  });

  test("a database newer than this program is refused with a clear error and left alone", async () => {
    const [db] = await freshDatabase();
    await migratePostgres(db!);
    const newer = POSTGRES_MIGRATIONS.length + 1;
    await db!.query(
      "INSERT INTO schema_migrations (version, tag, hash, applied_at) VALUES ($1, '9999_future', 'f', $2)",
      [newer, T0],
    );
    await assert.rejects(migratePostgres(db!), (error: unknown) => {
      assert.ok(error instanceof SchemaTooNewError);
      assert.equal(error.found, newer);
      assert.equal(error.known, POSTGRES_MIGRATIONS.length);
      assert.match(error.message, new RegExp(`version ${newer} .*newer release`));
      return true;
    });
    assert.equal(await postgresSchemaVersion(db!), newer);
  });

  test("a migration that fails is rolled back whole; the ones before it stay applied", async () => {
    const [db] = await freshDatabase();
    const broken: BundledMigration = {
      tag: "0099_broken",
      hash: "0",
      statements: ["CREATE TABLE half_done (id integer)", "ALTER TABLE no_such_table ADD x integer"],
    };
    await assert.rejects(
      migratePostgres(db!, [...POSTGRES_MIGRATIONS, broken]),
      /^Error: Migration 0099_broken failed: relation "no_such_table" does not exist/,
    );
    assert.equal(await postgresSchemaVersion(db!), POSTGRES_MIGRATIONS.length);
    const halfDone = await db!.query("SELECT to_regclass('half_done')::text AS name");
    assert.deepEqual(halfDone.rows, [{ name: null }]);
  });

  test("the triggers keep the domain and whole-queue counters", async () => {
    const [db] = await freshDatabase();
    await migratePostgres(db!);
    const counters = async () => ({
      domain: (await db!.query("SELECT queued_recipients, queued_bytes FROM domains WHERE name = 'a.test'"))
        .rows[0],
      totals: (await db!.query("SELECT messages, bytes, recipients FROM queue_totals WHERE id = 1")).rows[0],
    });
    const account = await db!.query<{ id: number }>(
      "INSERT INTO accounts (username, cram_md5_secret, password_hash, created_at) VALUES ('alice', 'c', 'p', $1) " +
        "RETURNING id",
      [T0],
    );
    await db!.query("INSERT INTO domains (name, account_id, created_at) VALUES ('a.test', $1, $2)", [
      account.rows[0]!.id,
      T0,
    ]);
    const message = await db!.query<{ id: number }>(
      "INSERT INTO messages (received_at, mail_from, size, body_inline, client_ip, client_helo) " +
        "VALUES ($1, 'sender@example.net', 100, $2, '192.0.2.1', 'client.example.net') RETURNING id",
      [T0, new Uint8Array(100)],
    );
    const messageId = message.rows[0]!.id;
    const recipients = await db!.query<{ id: number }>(
      "INSERT INTO recipients (message_id, address, domain, queued_at, message_size) " +
        "VALUES ($1, 'one@a.test', 'a.test', $2, 100), ($1, 'two@a.test', 'a.test', $2, 100) RETURNING id",
      [messageId, T0],
    );
    const [one, two] = recipients.rows.map((r) => r.id);
    assert.deepEqual(await counters(), {
      domain: { queued_recipients: 2, queued_bytes: 200 },
      totals: { messages: 1, bytes: 100, recipients: 2 },
    });

    await db!.query("UPDATE recipients SET status = 'failed' WHERE id = $1", [one]);
    await db!.query("DELETE FROM recipients WHERE id = $1", [two]);
    assert.deepEqual(await counters(), {
      domain: { queued_recipients: 0, queued_bytes: 0 },
      totals: { messages: 1, bytes: 100, recipients: 0 },
    });

    // A failed recipient deleted after its DSN is not counted twice; one put back to queued counts again.
    await db!.query("UPDATE recipients SET status = 'queued' WHERE id = $1", [one]);
    await db!.query("UPDATE recipients SET attempts = attempts + 1 WHERE id = $1", [one]);
    assert.deepEqual(await counters(), {
      domain: { queued_recipients: 1, queued_bytes: 100 },
      totals: { messages: 1, bytes: 100, recipients: 1 },
    });

    // Deleting the message takes its recipients with it (ON DELETE CASCADE), and their counts.
    await db!.query("DELETE FROM messages WHERE id = $1", [messageId]);
    assert.deepEqual(await counters(), {
      domain: { queued_recipients: 0, queued_bytes: 0 },
      totals: { messages: 0, bytes: 0, recipients: 0 },
    });
  });

  test("the tables, columns, indexes and triggers are those of the SQLite queue", async () => {
    const [db] = await freshDatabase();
    await migratePostgres(db!);
    const sqlite = sqliteSchema();
    const postgres = await postgresSchema(db!);

    const shared = [...postgres.tables.keys()].filter((t) => !POSTGRES_ONLY.has(t)).sort();
    assert.deepEqual(shared, [...sqlite.tables.keys()].sort(), "the same tables (schema_migrations too)");
    for (const table of shared) {
      assert.deepEqual(postgres.tables.get(table), sqlite.tables.get(table), `columns of ${table}`);
    }
    assert.deepEqual(
      postgres.tables.get("domain_leases")?.map((c) => c.name),
      ["domain", "expires_at", "idle", "node", "owner"],
    );
    assert.deepEqual(postgres.tables.get("nodes")?.map((c) => c.name), [
      "heartbeat_at",
      "hostname",
      "id",
      "started_at",
    ]);

    assert.deepEqual(postgres.indexes.map((i) => i.indexname), sqlite.indexes);
    const dsnPending = postgres.indexes.find((i) => i.indexname === "recipients_dsn_pending");
    assert.match(dsnPending?.indexdef ?? "", /\(message_id\) WHERE \(status <> 'queued'::text\)$/);

    assert.deepEqual(postgres.triggers, sqlite.triggers);
  });
});
