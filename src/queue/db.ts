/**
 * Opens the queue database: pragmas for durability, then migrations.
 *
 * WAL + synchronous=FULL: a COMMIT returns only after the WAL is fsync'ed, so the 250 after DATA
 * (sent after the commit) means the message survives a crash or power loss (RFC 5321 4.1.1.4, 6.1).
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { DatabaseSync } from "node:sqlite";
import { drizzleOverNodeSqlite, openSqlite, type SqliteDrizzle } from "../runtime/sqlite.ts";
import { migrate, SchemaTooNewError } from "./migrate.ts";
import * as schema from "./schema.ts";

/** The drizzle database typed with our schema. */
export type QueueDb = SqliteDrizzle<typeof schema>;

/** An open queue database: drizzle for queries, the raw handle for pragmas and hot statements. */
export interface OpenDatabase {
  db: QueueDb;
  raw: DatabaseSync;
  path: string;
  close(): void;
}

/** Options for opening the database. */
export interface OpenOptions {
  /** Milliseconds a statement waits for a lock held by another process (the CLI) before failing. */
  busyTimeoutMs?: number;
  /** Apply pending migrations (default true). */
  migrate?: boolean;
  /**
   * SQLite's page cache in bytes (default: SQLite's own, 2 MB). The per-domain oldest-age seeks of
   * `/status` and the ATRN selection read the recipients index; once it outgrows the cache every
   * request rereads it from the OS (scripts/bench/footprint.ts measured 1.2 ms at 10k and 3.0 ms at 100k
   * queued recipients with 2 MB, 1.1 and 1.3 ms with 16 MB). Pages are allocated as used.
   */
  cacheBytes?: number;
}

/** Path of the queue database inside a data directory. */
export function databasePath(dataDir: string): string {
  return `${dataDir.replace(/\/+$/, "")}/queue.db`;
}

/** Opens (creating when missing) and migrates the database at `path` (or ":memory:"). */
export function openDatabase(path: string, options: OpenOptions = {}): OpenDatabase {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  let raw: ReturnType<typeof openSqlite>;
  try {
    raw = openSqlite(path);
  } catch (error) {
    // SQLite's own text ("unable to open database file") names neither the file nor what to check.
    throw new Error(
      `Cannot open the queue database ${path}: ${(error as Error).message} ` +
        "(check that the data directory exists and is writable by this user)",
      { cause: error },
    );
  }
  try {
    raw.exec("PRAGMA journal_mode = WAL");
    raw.exec("PRAGMA synchronous = FULL");
    raw.exec("PRAGMA foreign_keys = ON");
    raw.exec(`PRAGMA busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 5000)}`);
    // A negative cache_size is in KiB (sqlite.org/pragma.html#pragma_cache_size).
    if (options.cacheBytes) {
      raw.exec(`PRAGMA cache_size = -${Math.max(1, Math.trunc(options.cacheBytes / 1024))}`);
    }
    // Deleted chunk pages are reused; keeps a drained 50 MB message from leaving a 50 MB hole forever.
    raw.exec("PRAGMA auto_vacuum = INCREMENTAL");
    if (options.migrate !== false) migrate(raw);
  } catch (error) {
    raw.close();
    if (error instanceof SchemaTooNewError) throw error;
    throw new Error(
      `Cannot open the queue database ${path}: ${(error as Error).message} ` +
        "(check that the data directory and the database files are writable by this user)",
      { cause: error },
    );
  }
  const db = drizzleOverNodeSqlite(raw, schema);
  return { db, raw, path, close: () => raw.close() };
}
