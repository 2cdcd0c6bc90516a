/**
 * Opens SQLite through `node:sqlite` (the one SQLite both Deno and Bun load) and presents it to
 * drizzle-orm as the slice of the better-sqlite3 API that drizzle's `BetterSQLiteSession` uses:
 * `prepare()` with `run/all/get/raw()`, and `transaction(fn).deferred|immediate|exclusive()`.
 * better-sqlite3 itself cannot load under Deno or Bun (docs/design.md#runtimes). This touches drizzle
 * internals, which is why drizzle-orm's version is pinned exactly in package.json.
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { BetterSQLiteSession } from "drizzle-orm/better-sqlite3/session";
import { BaseSQLiteDatabase } from "drizzle-orm/sqlite-core/db";
import { SQLiteSyncDialect } from "drizzle-orm/sqlite-core/dialect";
import { createTableRelationsHelpers, extractTablesRelationalConfig } from "drizzle-orm/relations";

type SqlValue = null | number | bigint | string | Uint8Array;

/** better-sqlite3's statement shape over a node:sqlite statement. */
class StatementShim {
  readonly #stmt: StatementSync;
  constructor(stmt: StatementSync) {
    this.#stmt = stmt;
  }
  run(...params: SqlValue[]): { changes: number | bigint; lastInsertRowid: number | bigint } {
    return this.#stmt.run(...params);
  }
  all(...params: SqlValue[]): unknown[] {
    return this.#stmt.all(...params);
  }
  get(...params: SqlValue[]): unknown {
    return this.#stmt.get(...params);
  }
  /** Rows as arrays (drizzle maps columns by position, which keeps joined duplicate names apart). */
  raw(): { all: (...p: SqlValue[]) => unknown[]; get: (...p: SqlValue[]) => unknown } {
    const stmt = this.#stmt;
    const asArrays = <T>(fn: () => T): T => {
      stmt.setReturnArrays(true);
      try {
        return fn();
      } finally {
        stmt.setReturnArrays(false);
      }
    };
    return {
      all: (...p) => asArrays(() => stmt.all(...p)),
      get: (...p) => asArrays(() => stmt.get(...p)),
    };
  }
}

type TxRunner = ((...args: unknown[]) => unknown) & {
  deferred: (...args: unknown[]) => unknown;
  immediate: (...args: unknown[]) => unknown;
  exclusive: (...args: unknown[]) => unknown;
};

/** better-sqlite3's database shape over `DatabaseSync`. */
class DatabaseShim {
  readonly raw: DatabaseSync;
  constructor(raw: DatabaseSync) {
    this.raw = raw;
  }
  prepare(sql: string): StatementShim {
    return new StatementShim(this.raw.prepare(sql));
  }
  exec(sql: string): void {
    this.raw.exec(sql);
  }
  transaction(fn: (...args: unknown[]) => unknown): TxRunner {
    const inMode = (mode: string) => (...args: unknown[]) => {
      this.raw.exec(`BEGIN ${mode}`);
      try {
        const result = fn(...args);
        this.raw.exec("COMMIT");
        return result;
      } catch (error) {
        if (this.raw.isTransaction) this.raw.exec("ROLLBACK");
        throw error;
      }
    };
    const runner = inMode("DEFERRED") as TxRunner;
    runner.deferred = runner;
    runner.immediate = inMode("IMMEDIATE");
    runner.exclusive = inMode("EXCLUSIVE");
    return runner;
  }
}

/** A synchronous drizzle database over node:sqlite, typed with the given schema. */
export type SqliteDrizzle<TSchema extends Record<string, unknown>> = BaseSQLiteDatabase<
  "sync",
  { changes: number | bigint; lastInsertRowid: number | bigint },
  TSchema
>;

/** Opens (creating if needed) a SQLite file, or ":memory:". */
export function openSqlite(path: string): DatabaseSync {
  return new DatabaseSync(path);
}

/** Wraps an open node:sqlite database in drizzle-orm with `schema` for relational queries. */
export function drizzleOverNodeSqlite<TSchema extends Record<string, unknown>>(
  raw: DatabaseSync,
  schema: TSchema,
): SqliteDrizzle<TSchema> {
  const dialect = new SQLiteSyncDialect();
  const tables = extractTablesRelationalConfig(schema, createTableRelationsHelpers);
  const relational = { fullSchema: schema, schema: tables.tables, tableNamesMap: tables.tableNamesMap };
  // deno-lint-ignore no-explicit-any
  const session = new BetterSQLiteSession(new DatabaseShim(raw) as any, dialect, relational, {});
  // deno-lint-ignore no-explicit-any
  return new BaseSQLiteDatabase("sync", dialect, session as any, relational as any) as SqliteDrizzle<TSchema>;
}
