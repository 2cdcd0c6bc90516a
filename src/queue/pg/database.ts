/**
 * The PostgreSQL connection of the shared queue: one `pg.Pool` (docs/postgres_driver.md: why `pg`),
 * with the settings every statement relies on, and one way to run a transaction.
 *
 * - `synchronous_commit = on` for every session: a COMMIT returns only once the WAL is flushed (on the
 *   primary, and on a synchronous standby when the operator configured one), so the 250 after DATA is
 *   sent only for mail that survives a crash (RFC 5321 4.1.1.4).
 * - `int8` (bigint) columns are read as JavaScript numbers: ids, times in ms and sizes all stay far
 *   below 2^53.
 * - Every pooled client has an 'error' listener (the pool's): a server that goes away must not kill
 *   the process (Deno ends it on an unhandled 'error' event, docs/postgres_driver.md).
 *
 * @module
 */
import pg from "pg";
import { setTimeout } from "node:timers";
import { redactUrl } from "../../config/database_url.ts";

export { isPostgresUrl, redactUrl } from "../../config/database_url.ts";

/** The pg types parser for `int8` (OID 20): numbers, not strings. */
const INT8_OID = 20;

/** A client or the pool: anything that runs a query. */
export type Queryable = Pick<pg.PoolClient, "query">;

/** Options of {@linkcode openPostgres}. */
export interface PostgresOptions {
  /** Most connections this node opens (config `databasePoolSize`). */
  poolSize?: number;
  /** How long to wait for a connection from the pool or the server, ms. */
  connectTimeoutMs?: number;
  /**
   * Longest wait for one query's answer, ms: a server that hangs without closing its connections
   * (stopped, partitioned) must turn into a 451 for the session, not a session that waits forever.
   */
  queryTimeoutMs?: number;
  /** How long an unused pooled connection stays open, ms; 0 keeps it (pg's default is 10 s). */
  idleTimeoutMs?: number;
  /** Called with errors of idle clients (the server closed them); the pool replaces them. */
  onIdleError?: (error: Error) => void;
  /** PEM CA for verify-full TLS when the URL has sslmode=verify-full and no sslrootcert (tests). */
  ca?: string;
}

/** An open PostgreSQL queue database. */
export class PostgresDatabase {
  readonly pool: pg.Pool;
  /** The URL without its password, for logs and /status. */
  readonly location: string;

  constructor(url: string, options: PostgresOptions = {}) {
    this.location = redactUrl(url);
    const types = {
      getTypeParser: (oid: number, format?: string) =>
        oid === INT8_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as "text"),
    };
    this.pool = new pg.Pool({
      connectionString: url,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      query_timeout: options.queryTimeoutMs ?? 30_000,
      ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMillis: options.idleTimeoutMs } : {}),
      // TCP keepalive finds a dead server on an idle pooled connection (within minutes, not the OS's 2 h).
      keepAlive: true,
      keepAliveInitialDelayMillis: 30_000,
      // RFC 5321 4.1.1.4 durability: the commit is flushed before we answer 250.
      options: "-c synchronous_commit=on",
      types: types as pg.CustomTypesConfig,
      ...(options.ca ? { ssl: { ca: options.ca, rejectUnauthorized: true } } : {}),
    });
    this.pool.on("error", (error) => options.onIdleError?.(error));
  }

  /** One statement on any pooled connection. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values: unknown[] = [],
  ): Promise<pg.QueryResult<R>> {
    return await this.pool.query<R>(text, values);
  }

  /**
   * Runs `fn` in one transaction on one connection: COMMIT when it resolves, ROLLBACK when it
   * throws (and the error is rethrown). A connection that failed mid-transaction is destroyed, not
   * returned to the pool.
   *
   * A transaction PostgreSQL chose as a deadlock victim (40P01) or could not serialise (40001) did
   * nothing; it runs again from the start, up to `TRANSACTION_ATTEMPTS` times. Nodes take row locks in
   * orders no single module controls (the counter triggers, deferred to COMMIT, lock `domains` and
   * `queue_totals` last), so this is the cluster's safety net rather than an error for the caller.
   * `fn` must therefore only touch the database (what it does outside, it does after the promise
   * resolves).
   */
  async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#transactionOnce(fn);
      } catch (error) {
        if (attempt >= TRANSACTION_ATTEMPTS || !isRetryable(error)) throw error;
        // A short random pause, so the two transactions that collided do not collide again.
        await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20 * attempt));
      }
    }
  }

  async #transactionOnce<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    // pg-pool removes its own 'error' listener while a client is checked out: without this one, a
    // server that terminates the connection between two statements (or resets it) raises an unhandled
    // 'error' event, which ends the whole process. The statement in flight, if any, rejects as well.
    const onError = (error: Error) => (broken ??= error);
    client.on("error", onError);
    try {
      await client.query("BEGIN");
      const result = await fn(client);
      await client.query("COMMIT");
      return result;
    } catch (error) {
      try {
        await client.query("ROLLBACK");
      } catch (rollbackError) {
        broken = rollbackError as Error;
      }
      throw error;
    } finally {
      client.off("error", onError);
      // A client that failed is destroyed, not pooled; a later 'error' from it is the pool's to absorb.
      if (broken) client.on("error", () => {});
      client.release(broken);
    }
  }

  /** Closes every connection. */
  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** Most runs of one transaction that PostgreSQL aborted as a deadlock victim or serialisation failure. */
export const TRANSACTION_ATTEMPTS = 4;

/** SQLSTATE 40P01 deadlock_detected or 40001 serialization_failure: the transaction may simply run again. */
function isRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "40P01" || code === "40001";
}

/** A statement with a name: pg prepares it once per connection and reuses the plan after that. */
export interface NamedStatement {
  name: string;
  text: string;
}

/** Runs one named statement on a client or the pool. */
export function runNamed<R extends pg.QueryResultRow>(
  db: Queryable,
  statement: NamedStatement,
  values: unknown[],
): Promise<pg.QueryResult<R>> {
  return db.query<R>({ name: statement.name, text: statement.text, values });
}
