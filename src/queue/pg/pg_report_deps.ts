/**
 * What every reporting job on the shared PostgreSQL queue works with (the SQLite jobs' is
 * src/queue/report_deps.ts), and the one way they run a write that another node may have done first.
 *
 * @module
 */
import type pg from "pg";
import type { Clock } from "../../clock.ts";
import type { Logger } from "../../log/logger.ts";
import type { PostgresDatabase } from "./database.ts";
import type { PgReportRouter } from "./pg_report_router.ts";

/** The database, where reports go, and who writes them. */
export interface PgReportJobDeps {
  db: PostgresDatabase;
  router: PgReportRouter;
  /** Our host name: Reporting-MTA, From: MAILER-DAEMON@, the Message-ID's right-hand side. */
  hostname: string;
  clock: Clock;
  logger: Logger;
  /** A report joined the main queue for `domain`; called after COMMIT (wakes a watching session here). */
  onQueuedLocally?: (domain: string) => void;
}

/** Thrown inside a transaction to roll it back when another node has already done its work. */
class AlreadyDone extends Error {}

/**
 * Runs `fn` in one transaction; `fn` calls `done()` when it finds its work already done (by another
 * node), which rolls everything back and resolves with null.
 */
export async function unlessDone<T>(
  deps: Pick<PgReportJobDeps, "db">,
  fn: (client: pg.PoolClient, done: () => never) => Promise<T>,
): Promise<T | null> {
  try {
    return await deps.db.transaction((client) =>
      fn(client, () => {
        throw new AlreadyDone();
      })
    );
  } catch (error) {
    if (error instanceof AlreadyDone) return null;
    throw error;
  }
}
