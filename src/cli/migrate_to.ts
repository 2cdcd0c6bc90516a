/**
 * `migrate --to postgres://...`: copies this data directory's SQLite queue into a new PostgreSQL
 * database (src/queue/copy_to_postgres.ts) and says how to point the nodes at it.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { copySqliteToPostgres } from "../queue/copy_to_postgres.ts";
import { databasePath, openDatabase } from "../queue/db.ts";
import { isPostgresUrl, PostgresDatabase, redactUrl } from "../queue/pg/database.ts";
import type { CliIo } from "./command.ts";

/**
 * Copies the queue in `dataDir` to the PostgreSQL database at `url`. Prints `table source -> target`
 * per table, then the `database` setting to use. Returns 0, or 1 (2 for a URL that is not PostgreSQL)
 * with the error on stderr; on any error PostgreSQL holds no queue data (only the schema).
 */
export async function migrateTo(url: string, dataDir: string, io: CliIo): Promise<number> {
  if (!isPostgresUrl(url)) {
    io.err(`migrate: --to takes a postgres:// URL, not ${JSON.stringify(redactUrl(url))}`);
    return 2;
  }
  const path = databasePath(dataDir);
  // openDatabase would create an empty queue: a mistyped --data-dir must not "succeed" with nothing.
  if (!existsSync(path)) {
    io.err(`migrate: no queue database at ${path} (check --data-dir)`);
    return 1;
  }
  let source: ReturnType<typeof openDatabase> | undefined;
  let target: PostgresDatabase | undefined;
  try {
    source = openDatabase(path);
    // Idle connections the server closes are replaced by the pool; the copy's own errors are thrown.
    target = new PostgresDatabase(url, { poolSize: 2, onIdleError: () => {} });
    const report = await copySqliteToPostgres(source, target);
    for (const t of report.tables) io.out(`${t.table} ${t.source} -> ${t.target}`);
    io.out(`copied; point every node at the new database with database = "${withoutPassword(url)}"`);
    return 0;
  } catch (error) {
    io.err(`migrate: ${(error as Error).message} (${redactUrl(url)})`);
    return 1;
  } finally {
    source?.close();
    await target?.close().catch(() => {});
  }
}

/**
 * The URL for every node's `database` setting, without the password: this line ends up in terminals and
 * tickets. The password goes back into the configuration file's URL, or into PGPASSWORD or ~/.pgpass
 * (both read by `pg`).
 */
export function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.password = "";
    return parsed.toString();
  } catch {
    return redactUrl(url);
  }
}
