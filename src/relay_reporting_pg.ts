/**
 * The reporting side of the relay over the shared PostgreSQL queue: the same jobs as on SQLite
 * (src/relay_reporting.ts), in their cluster-safe form (src/queue/pg/pg_bounces.ts and its siblings),
 * and the outbound worker over the `outbound` table, whose rows each node claims before it sends them
 * (src/queue/pg/pg_outbound.ts). Every node runs all of it: the DSN step and the worker are safe to
 * run side by side; the delay warnings, notices and postmaster forwarding run in the housekeeping
 * round, which one node holds at a time.
 *
 * @module
 */
import type { Clock } from "./clock.ts";
import type { Config } from "./config/fields.ts";
import type { Logger } from "./log/logger.ts";
import type { NewMailSignal } from "./queue/new_mail.ts";
import { pgReportPendingDsns } from "./queue/pg/pg_bounces.ts";
import { pgSendDelayWarnings } from "./queue/pg/pg_delay_warnings.ts";
import { PgEnqueue } from "./queue/pg/pg_enqueue.ts";
import { PgOutbound } from "./queue/pg/pg_outbound.ts";
import { pgBounceForwarded, pgForwardPostmasterMail } from "./queue/pg/pg_postmaster.ts";
import { PgReportRouter } from "./queue/pg/pg_report_router.ts";
import { pendingCounts } from "./queue/pg/pg_report_store.ts";
import { pgSendWaitingNotices } from "./queue/pg/pg_waiting_notices.ts";
import { PostgresQueue } from "./queue/pg/postgres_queue.ts";
import type { Queue } from "./queue/queue.ts";
import { buildReporting, type ReportingSide, startOutboundWorker } from "./relay_reporting.ts";
import type { RelayState } from "./relay_state.ts";

/** The reporting side on PostgreSQL; the same shape as `startReporting`. */
export function startPgReporting(
  config: Config,
  queue: Queue,
  state: RelayState,
  logger: Logger,
  clock: Clock,
  newMail: NewMailSignal,
): ReportingSide {
  if (!(queue instanceof PostgresQueue)) {
    throw new Error(`No reporting side for a ${queue.backend} queue here`);
  }
  const db = queue.db;
  const outbound = new PgOutbound(db, clock);
  const reportLogger = logger.child({ component: "reports" });
  // Reports never go to the postmaster mailbox (key ""), so its quota plays no part here.
  const router = new PgReportRouter(new PgEnqueue(db, clock, queue.node), outbound, {
    hostname: config.hostname,
    lifetimeMs: config.dsnLifetime,
    logger,
  });
  const common = {
    db,
    router,
    hostname: config.hostname,
    clock,
    logger: reportLogger,
    // A DSN to a hosted sender wakes a session watching that domain on this node at once; the other
    // nodes hear of it through the enqueue's pg_notify.
    onQueuedLocally: (domain: string) => newMail.notify([domain]),
  };
  const worker = startOutboundWorker(
    { config, state, logger, clock },
    outbound,
    (row, answer) => pgBounceForwarded({ ...common, logger }, row, answer),
  );
  const reporting = buildReporting(config, state, reportLogger, worker, {
    dsnBatch: (settings) => pgReportPendingDsns({ ...common, ...settings }),
    delayWarnings: (settings) => pgSendDelayWarnings({ ...common, ...settings }),
    waitingNotices: (settings) => pgSendWaitingNotices({ ...common, ...settings }),
    forwardPostmaster: (address, lifetimeMs) =>
      pgForwardPostmasterMail({ db, outbound, lifetimeMs, logger: reportLogger }, address),
    pendingCounts: () => pendingCounts(db.pool),
  });
  return { reporting, outbound: { queue: outbound, worker } };
}
