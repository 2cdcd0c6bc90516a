/**
 * Applies the PostgreSQL migrations carried inside the program (src/queue/pg/migrations_bundle.ts),
 * as src/queue/migrate.ts does for SQLite. What differs is that several nodes may start at once
 * against one database:
 *
 * - `schema_migrations` holds one row per applied migration; the highest `version` is the schema
 *   version (PostgreSQL has no `PRAGMA user_version`).
 * - Each migration runs in its own transaction, so a crash (or a failed statement) leaves the schema at
 *   a whole version. PostgreSQL DDL is transactional, so that holds for CREATE TABLE and triggers too.
 * - Every such transaction first takes one fixed advisory transaction lock and only then reads the
 *   version: two nodes starting together queue on the lock, and the second finds the migration applied
 *   and skips it. The lock ends with the transaction, so a node that dies mid-migration holds nothing.
 * - A database at a newer version than this program knows is refused (`SchemaTooNewError`), as for
 *   SQLite: an older release must not run against tables it does not understand.
 *
 * @module
 */
import { type Clock, systemClock } from "../../clock.ts";
import { SchemaTooNewError } from "../migrate.ts";
import type { BundledMigration } from "../migrations_bundle.ts";
import type pg from "pg";
import type { PostgresDatabase } from "./database.ts";
import { POSTGRES_MIGRATIONS } from "./migrations_bundle.ts";

export { SchemaTooNewError };

/**
 * The advisory lock (two-int form) that serialises migrations between nodes: "odmr", "migr". The
 * other advisory locks of the queue use "odmr" with another second key (src/queue/pg/pg_accounts.ts,
 * src/queue/pg/pg_enqueue.ts).
 */
const MIGRATION_LOCK = [0x6f646d72, 0x6d696772] as const;

const CREATE_SCHEMA_MIGRATIONS =
  "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, " +
  "tag text NOT NULL, hash text NOT NULL, applied_at bigint NOT NULL)";

/** The pool or one transaction's client. */
interface RunsQueries {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** The schema version as seen by `client`: 0 before the first migration. */
async function versionOn(client: RunsQueries): Promise<number> {
  // to_regclass follows search_path, as the unqualified table names of the migrations do.
  const exists = await client.query<{ name: string | null }>(
    "SELECT to_regclass('schema_migrations')::text AS name",
  );
  if (!exists.rows[0]?.name) return 0;
  const result = await client.query<{ version: number }>(
    "SELECT COALESCE(max(version), 0)::integer AS version FROM schema_migrations",
  );
  return result.rows[0]?.version ?? 0;
}

/** Current schema version of the database (0 when it was never migrated). */
export async function postgresSchemaVersion(db: PostgresDatabase): Promise<number> {
  return await versionOn(db);
}

/**
 * Brings the schema up to date; returns the tags applied now (empty when already current, or when
 * another node applied them meanwhile). Throws `SchemaTooNewError` when the database is newer than
 * `migrations`, and "Migration <tag> failed: ..." when a statement fails (that migration is rolled back;
 * the ones before it stay applied).
 */
export async function migratePostgres(
  db: PostgresDatabase,
  migrations: readonly BundledMigration[] = POSTGRES_MIGRATIONS,
  clock: Clock = systemClock,
): Promise<string[]> {
  const applied: string[] = [];
  // One transaction per migration, and one more that finds nothing left to do.
  for (let step = 0; step <= migrations.length; step++) {
    const tag = await db.transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1::int, $2::int)", [...MIGRATION_LOCK]);
      // Read under the lock: a node that started at the same time may have applied migrations meanwhile.
      const current = await versionOn(client);
      if (current > migrations.length) throw new SchemaTooNewError(current, migrations.length);
      const migration = migrations[current];
      if (!migration) return undefined;
      try {
        if (current === 0) await client.query(CREATE_SCHEMA_MIGRATIONS);
        // One statement per query, never split at ';' (PL/pgSQL bodies hold their own).
        for (const statement of migration.statements) await client.query(statement);
      } catch (error) {
        throw new Error(`Migration ${migration.tag} failed: ${(error as Error).message}`, { cause: error });
      }
      await client.query(
        "INSERT INTO schema_migrations (version, tag, hash, applied_at) VALUES ($1, $2, $3, $4)",
        [current + 1, migration.tag, migration.hash, clock.now()],
      );
      return migration.tag;
    });
    if (tag === undefined) break;
    applied.push(tag);
  }
  return applied;
}
