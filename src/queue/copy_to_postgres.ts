/**
 * Moves an embedded SQLite queue into a fresh PostgreSQL database (`odmr-relay migrate --to`, issue
 * 14): accounts, domains, queued mail and the relay's own outbound mail keep their ids, so nothing a
 * log line or a DSN names changes meaning.
 *
 * - All or nothing: one PostgreSQL transaction, verified by row counts and by the trigger-kept counters
 *   before COMMIT; any mismatch throws and the transaction rolls back, leaving the target empty.
 * - Every column: a SQLite column the PostgreSQL schema lacks (a binary whose two schemas drifted apart)
 *   refuses the copy before any row moves, since leaving it behind would drop queue state silently.
 * - Never a merge: the target must hold no queue rows; two queues' ids would collide, and a half-merged
 *   queue cannot be told apart from a corrupted one.
 * - Bounded memory: SQLite rows are read one at a time (`iterate()`) and sent in multi-row INSERTs of at
 *   most {@linkcode MAX_BATCH_ROWS} rows or about {@linkcode MAX_BATCH_BYTES} bytes.
 * - One snapshot of the source: the SQLite reads share one read transaction (WAL keeps it stable), so the
 *   counts compared at the end describe the rows copied. Mail a still-running relay accepts afterwards
 *   would not be copied: stop every relay on this data directory first.
 *
 * @module
 */
import type pg from "pg";
import type { OpenDatabase } from "./db.ts";
import type { PostgresDatabase } from "./pg/database.ts";
import { migratePostgres } from "./pg/migrate.ts";

/**
 * The copied tables in foreign-key order (parents first). `queue_totals` is not among them: it is counted
 * from the copied rows (recountCounters), and compared with SQLite's afterwards.
 */
export const COPIED_TABLES = [
  "accounts",
  "domains",
  "domain_mailboxes",
  "messages",
  "message_chunks",
  "recipients",
  "atrn_sessions",
  "outbound",
  "housekeeping_state",
] as const;

/**
 * Columns the PostgreSQL triggers keep (docs/design.md, queue counters): inserted as 0 and then counted
 * from the copied rows in one pass (recountCounters); SQLite's own values are the check afterwards.
 */
const TRIGGER_KEPT_COLUMNS: Readonly<Record<string, readonly string[]>> = {
  domains: ["queued_recipients", "queued_bytes"],
};

/** Most rows in one INSERT. */
export const MAX_BATCH_ROWS = 500;
/** Bytes of values in one INSERT before it is sent (body chunks and outbound mail are large rows). */
export const MAX_BATCH_BYTES = 8 * 1024 * 1024;
/** PostgreSQL's limit on bind parameters in one statement (the protocol counts them in 16 bits). */
const MAX_PARAMETERS = 65_535;

/** One table's row counts. */
export interface TableCount {
  table: string;
  /** Rows in the SQLite queue. */
  source: number;
  /** Rows in PostgreSQL after the copy. */
  target: number;
}

/** What {@linkcode copySqliteToPostgres} copied. */
export interface CopyReport {
  /** Per table in copy order; source and target are equal (the copy throws otherwise). */
  tables: TableCount[];
}

/** Options of {@linkcode copySqliteToPostgres}. */
export interface CopyOptions {
  /** Called after each batch with the rows of `table` copied so far. */
  onProgress?: (table: string, rows: number) => void;
}

/** The target already holds queue data. */
export class TargetNotEmptyError extends Error {
  constructor(readonly occupied: TableCount[]) {
    super(
      `The PostgreSQL database already holds queue data (${
        occupied.map((t) => `${t.table}: ${t.target} rows`).join(", ")
      }); copy only into a new, empty database (two queues are never merged)`,
    );
    this.name = "TargetNotEmptyError";
  }
}

/** The copy did not reproduce the source (the transaction was rolled back). */
export class CopyMismatchError extends Error {
  constructor(what: string) {
    super(`The copy was rolled back: ${what}`);
    this.name = "CopyMismatchError";
  }
}

type SqlValue = null | number | bigint | string | Uint8Array;
type SqliteRow = Record<string, SqlValue>;
/** A PostgreSQL column's `information_schema.columns.data_type`, by column name. */
type PgColumns = Map<string, string>;

/**
 * Copies the SQLite queue `source` (open and migrated) into `target`: migrates `target`, refuses unless
 * it is empty, copies every table in one transaction, moves the id sequences past the copied ids, and
 * verifies counts and counters before committing.
 */
export async function copySqliteToPostgres(
  source: OpenDatabase,
  target: PostgresDatabase,
  options: CopyOptions = {},
): Promise<CopyReport> {
  await migratePostgres(target);
  return await inSqliteSnapshot(source, () =>
    target.transaction(async (client) => {
      await lockAndCheckEmpty(client);
      const pgTypes = new Map<string, PgColumns>();
      for (const table of COPIED_TABLES) pgTypes.set(table, await pgColumns(client, table));
      refuseSqliteOnlyColumns(source, pgTypes);
      await setCounterTriggers(client, "DISABLE");
      for (const table of COPIED_TABLES) await copyTable(source, client, table, pgTypes.get(table)!, options);
      await recountCounters(client);
      await setCounterTriggers(client, "ENABLE");
      await advanceSequences(source, client);
      const tables = await compareCounts(source, client);
      await compareCounters(source, client);
      return { tables };
    }));
}

/** Runs `fn` inside one SQLite read transaction, so every table is read from the same snapshot. */
async function inSqliteSnapshot<T>(source: OpenDatabase, fn: () => Promise<T>): Promise<T> {
  const raw = source.raw;
  if (raw.isTransaction) return await fn();
  raw.exec("BEGIN DEFERRED");
  try {
    return await fn();
  } finally {
    // Nothing was written: COMMIT and ROLLBACK both just end the read snapshot.
    raw.exec("ROLLBACK");
  }
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * Takes the copied tables for this transaction (EXCLUSIVE: others may read, nobody may write), then
 * refuses unless they are empty. A second `migrate --to` started at the same time waits here for the
 * first to commit, and then finds the rows.
 */
async function lockAndCheckEmpty(client: pg.PoolClient): Promise<void> {
  await client.query(`LOCK TABLE ${COPIED_TABLES.map(quote).join(", ")} IN EXCLUSIVE MODE`);
  const counts = await pgCounts(client);
  const occupied = counts.filter((t) => t.target > 0);
  if (occupied.length) throw new TargetNotEmptyError(occupied);
}

async function pgCounts(client: pg.PoolClient): Promise<TableCount[]> {
  const counts: TableCount[] = [];
  for (const table of COPIED_TABLES) {
    const { rows } = await client.query<{ n: number }>(`SELECT COUNT(*)::int8 AS n FROM ${quote(table)}`);
    counts.push({ table, source: 0, target: Number(rows[0]!.n) });
  }
  return counts;
}

/** The PostgreSQL table's columns and their types (the target schema, whatever its migration made). */
async function pgColumns(client: pg.PoolClient, table: string): Promise<PgColumns> {
  const { rows } = await client.query<{ column_name: string; data_type: string }>(
    "SELECT column_name, data_type FROM information_schema.columns " +
      "WHERE table_schema = current_schema() AND table_name = $1",
    [table],
  );
  if (!rows.length) throw new Error(`The PostgreSQL schema has no table ${table}`);
  return new Map(rows.map((r) => [r.column_name, r.data_type]));
}

/** The tables whose rows the counter triggers count (migrations/postgres/0001_queue_counters.sql). */
const COUNTED_TABLES = ["messages", "recipients"] as const;

/**
 * Switches the counter triggers off for the copy and back on after it (transactional DDL: a failed copy
 * rolls this back too; foreign keys are system triggers and stay on). Fired per row, they would write a
 * new version of the one `queue_totals` row and of each domain row for every copied row, none of which
 * can be cleaned up before COMMIT, so each update scans a longer chain: 4 times the recipients took 9 times
 * as long. The EXCLUSIVE locks taken first keep every other writer off these tables meanwhile.
 */
async function setCounterTriggers(client: pg.PoolClient, state: "DISABLE" | "ENABLE"): Promise<void> {
  for (const table of COUNTED_TABLES) await client.query(`ALTER TABLE ${quote(table)} ${state} TRIGGER USER`);
}

/** Sets the trigger-kept counters from the copied rows, as the triggers would have (one pass each). */
async function recountCounters(client: pg.PoolClient): Promise<void> {
  await client.query(
    "UPDATE domains d SET queued_recipients = c.n, queued_bytes = c.b FROM (" +
      "SELECT domain, COUNT(*) AS n, SUM(message_size)::int8 AS b FROM recipients WHERE status = 'queued' " +
      "GROUP BY domain) c WHERE d.name = c.domain",
  );
  await client.query(
    "INSERT INTO queue_totals (id, messages, bytes, recipients) SELECT 1, " +
      "(SELECT COUNT(*) FROM messages), (SELECT COALESCE(SUM(size), 0)::int8 FROM messages), " +
      "(SELECT COUNT(*) FROM recipients WHERE status = 'queued') " +
      "ON CONFLICT (id) DO UPDATE SET messages = EXCLUDED.messages, bytes = EXCLUDED.bytes, " +
      "recipients = EXCLUDED.recipients",
  );
}

/** Throws CopyMismatchError naming every `table.column` of the SQLite queue that PostgreSQL has no room for. */
function refuseSqliteOnlyColumns(source: OpenDatabase, pgTypes: ReadonlyMap<string, PgColumns>): void {
  const missing = COPIED_TABLES.flatMap((table) =>
    sqliteColumns(source, table).filter((c) => !pgTypes.get(table)!.has(c)).map((c) => `${table}.${c}`)
  );
  if (missing.length) {
    throw new CopyMismatchError(
      `the PostgreSQL schema has no column for ${missing.join(", ")} (this binary's two schemas differ)`,
    );
  }
}

function sqliteColumns(source: OpenDatabase, table: string): string[] {
  const rows = source.raw.prepare(`PRAGMA table_info(${quote(table)})`).all() as { name: string }[];
  return rows.map((r) => r.name);
}

/**
 * SQLite's value as PostgreSQL takes it: SQLite has no boolean (drizzle stores 0/1) and hands out blobs
 * as Uint8Array, which `pg` sends as text unless it is a Buffer.
 */
function toPg(value: SqlValue, pgType: string): unknown {
  if (value === null) return null;
  if (pgType === "boolean") {
    return typeof value === "string" ? value !== "0" && value !== "" : Number(value) !== 0;
  }
  if (pgType === "bytea") {
    if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    // A blob column that SQLite stored as text (type affinity lets it): the same UTF-8 bytes.
    return Buffer.from(String(value), "utf8");
  }
  return value;
}

/** Rough size of a value on the wire, for the batch byte budget (`pg` sends a Buffer as binary). */
function sizeOf(value: SqlValue): number {
  if (value instanceof Uint8Array) return value.byteLength;
  if (typeof value === "string") return value.length;
  return 8;
}

/** Copies one table in batches; returns the SQLite-only columns it left out. */
async function copyTable(
  source: OpenDatabase,
  client: pg.PoolClient,
  table: string,
  pgTypes: PgColumns,
  options: CopyOptions,
): Promise<void> {
  const columns = sqliteColumns(source, table).filter((c) => pgTypes.has(c));
  const zeroed = new Set(TRIGGER_KEPT_COLUMNS[table] ?? []);
  const identity = await hasAlwaysIdentity(client, table);
  const maxRows = Math.max(1, Math.min(MAX_BATCH_ROWS, Math.floor(MAX_PARAMETERS / columns.length)));
  let batch: unknown[][] = [];
  let batchBytes = 0;
  let copied = 0;
  const flush = async () => {
    if (!batch.length) return;
    await insertBatch(client, table, columns, batch, identity);
    copied += batch.length;
    batch = [];
    batchBytes = 0;
    options.onProgress?.(table, copied);
  };
  const select = source.raw.prepare(`SELECT ${columns.map(quote).join(", ")} FROM ${quote(table)}`);
  for (const row of select.iterate() as IterableIterator<SqliteRow>) {
    const rowBytes = columns.reduce((sum, c) => sum + sizeOf(row[c] ?? null), 0);
    // A row bigger than the budget on its own goes alone.
    if (batch.length && batchBytes + rowBytes > MAX_BATCH_BYTES) await flush();
    batch.push(columns.map((c) => zeroed.has(c) ? 0 : toPg(row[c] ?? null, pgTypes.get(c)!)));
    batchBytes += rowBytes;
    if (batch.length >= maxRows) await flush();
  }
  await flush();
}

/** A `GENERATED ALWAYS AS IDENTITY` column refuses explicit ids unless the INSERT overrides it. */
async function hasAlwaysIdentity(client: pg.PoolClient, table: string): Promise<boolean> {
  const { rows } = await client.query(
    "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 " +
      "AND is_identity = 'YES' AND identity_generation = 'ALWAYS'",
    [table],
  );
  return rows.length > 0;
}

async function insertBatch(
  client: pg.PoolClient,
  table: string,
  columns: string[],
  rows: unknown[][],
  overrideIdentity: boolean,
): Promise<void> {
  const width = columns.length;
  const tuples = rows.map((_, r) => `(${columns.map((_, c) => `$${r * width + c + 1}`).join(", ")})`);
  await client.query(
    `INSERT INTO ${quote(table)} (${columns.map(quote).join(", ")}) ` +
      `${overrideIdentity ? "OVERRIDING SYSTEM VALUE " : ""}VALUES ${tuples.join(", ")}`,
    rows.flat(),
  );
}

/**
 * Moves each id sequence (serial/bigserial or identity) to the largest copied id, so the next row a node
 * inserts gets a new id instead of colliding with a copied one. An empty table's sequence starts at 1.
 */
async function advanceSequences(source: OpenDatabase, client: pg.PoolClient): Promise<void> {
  // SQLite's AUTOINCREMENT never hands out an id twice: sqlite_sequence keeps the highest id ever used,
  // also one whose row has since been delivered or deleted. The sequences go past that, not just past the
  // rows copied, so an id in an old log line, Received header or DSN never names a second message.
  const used = new Map(
    (source.raw.prepare("SELECT name, seq FROM sqlite_sequence").all() as { name: string; seq: number }[])
      .map((r) => [r.name, Number(r.seq)]),
  );
  const { rows } = await client.query<{ table_name: string; column_name: string }>(
    "SELECT table_name, column_name FROM information_schema.columns " +
      "WHERE table_schema = current_schema() AND table_name = ANY($1::text[]) " +
      "AND (column_default LIKE 'nextval(%' OR is_identity = 'YES')",
    [[...COPIED_TABLES]],
  );
  for (const { table_name: table, column_name: column } of rows) {
    const highest = `GREATEST(COALESCE(MAX(${quote(column)}), 0), $3::int8)`;
    await client.query(
      `SELECT setval(pg_get_serial_sequence($1, $2), GREATEST(${highest}, 1), ${highest} > 0) ` +
        `FROM ${quote(table)}`,
      [quote(table), column, used.get(table) ?? 0],
    );
  }
}

/** Per table COUNT(*) on both sides; throws on the first difference. */
async function compareCounts(source: OpenDatabase, client: pg.PoolClient): Promise<TableCount[]> {
  const counts = await pgCounts(client);
  for (const count of counts) {
    const row = source.raw.prepare(`SELECT COUNT(*) AS n FROM ${quote(count.table)}`).get() as { n: number };
    count.source = Number(row.n);
    if (count.source !== count.target) {
      throw new CopyMismatchError(
        `${count.table} has ${count.source} rows in SQLite but ${count.target} copied`,
      );
    }
  }
  return counts;
}

interface DomainCounters {
  name: string;
  queued_recipients: number;
  queued_bytes: number;
}

interface Totals {
  messages: number;
  bytes: number;
  recipients: number;
}

/**
 * The counters the PostgreSQL triggers built from the copied rows must equal the ones SQLite's triggers
 * kept (migrations/sqlite/0001_queue_counters.sql): per domain, and the whole-queue totals. A difference means
 * the triggers counted differently (or twice): quotas and /status would be wrong from the first minute.
 */
async function compareCounters(source: OpenDatabase, client: pg.PoolClient): Promise<void> {
  const expected = source.raw.prepare(
    "SELECT name, queued_recipients, queued_bytes FROM domains ORDER BY name",
  ).all() as unknown as DomainCounters[];
  const { rows } = await client.query<DomainCounters>(
    "SELECT name, queued_recipients, queued_bytes FROM domains",
  );
  const actual = new Map(rows.map((r) => [r.name, r]));
  for (const domain of expected) {
    const copied = actual.get(domain.name);
    if (
      !copied || Number(copied.queued_recipients) !== Number(domain.queued_recipients) ||
      Number(copied.queued_bytes) !== Number(domain.queued_bytes)
    ) {
      throw new CopyMismatchError(
        `domain ${domain.name} counts ${domain.queued_recipients} queued recipients / ${domain.queued_bytes} bytes ` +
          `in SQLite but ${copied?.queued_recipients} / ${copied?.queued_bytes} after the copy`,
      );
    }
  }
  const sqliteTotals = totalsOf(
    source.raw.prepare("SELECT messages, bytes, recipients FROM queue_totals WHERE id = 1").get() as
      | Totals
      | undefined,
  );
  const pgTotals = totalsOf(
    (await client.query<Totals>("SELECT messages, bytes, recipients FROM queue_totals WHERE id = 1")).rows[0],
  );
  if (JSON.stringify(sqliteTotals) !== JSON.stringify(pgTotals)) {
    throw new CopyMismatchError(
      `the queue totals are ${JSON.stringify(sqliteTotals)} in SQLite but ${JSON.stringify(pgTotals)} ` +
        "after the copy",
    );
  }
}

function totalsOf(row: Totals | undefined): Totals {
  return {
    messages: Number(row?.messages ?? 0),
    bytes: Number(row?.bytes ?? 0),
    recipients: Number(row?.recipients ?? 0),
  };
}
