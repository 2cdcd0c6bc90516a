/**
 * Applies the migrations carried inside the program (src/queue/migrations_bundle.ts).
 * `PRAGMA user_version` holds how many are applied; each one runs in its own IMMEDIATE
 * transaction, so a crash leaves the schema at a whole version. Starting twice is a no-op.
 */
import { type Clock, systemClock } from "../clock.ts";
import type { DatabaseSync } from "node:sqlite";
import { type BundledMigration, MIGRATIONS } from "./migrations_bundle.ts";

/** The database was written by a newer odmr-relay than this one. */
export class SchemaTooNewError extends Error {
  constructor(readonly found: number, readonly known: number) {
    super(
      `The database schema is version ${found} but this odmr-relay knows only up to version ${known}: ` +
        `it was written by a newer release. Run that release, or restore a backup.`,
    );
    this.name = "SchemaTooNewError";
  }
}

/** Current schema version of an open database. */
export function schemaVersion(db: DatabaseSync): number {
  const row = db.prepare("PRAGMA user_version").get() as { user_version: number };
  return row.user_version;
}

/** Brings the schema up to date; returns the tags applied now (empty when already current). */
export function migrate(
  db: DatabaseSync,
  migrations: readonly BundledMigration[] = MIGRATIONS,
  clock: Clock = systemClock,
): string[] {
  const current = schemaVersion(db);
  if (current > migrations.length) throw new SchemaTooNewError(current, migrations.length);
  db.exec(
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, tag TEXT NOT NULL, " +
      "hash TEXT NOT NULL, applied_at INTEGER NOT NULL)",
  );
  const applied: string[] = [];
  for (let index = current; index < migrations.length; index++) {
    const migration = migrations[index]!;
    db.exec("BEGIN IMMEDIATE");
    // Another process (serve and a CLI command started together) may have applied it meanwhile:
    // re-read the version under the write lock.
    if (schemaVersion(db) > index) {
      db.exec("COMMIT");
      continue;
    }
    try {
      for (const statement of migration.statements) db.exec(statement);
      db.prepare("INSERT INTO schema_migrations (version, tag, hash, applied_at) VALUES (?, ?, ?, ?)")
        .run(index + 1, migration.tag, migration.hash, clock.now());
      db.exec(`PRAGMA user_version = ${index + 1}`);
      db.exec("COMMIT");
    } catch (error) {
      db.exec("ROLLBACK");
      throw new Error(`Migration ${migration.tag} failed: ${(error as Error).message}`, { cause: error });
    }
    applied.push(migration.tag);
  }
  return applied;
}
