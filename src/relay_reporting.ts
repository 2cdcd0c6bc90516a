/**
 * The reporting side of the relay over the embedded SQLite queue: the DSN step, delay warnings, customer
 * notices and postmaster forwarding (src/queue/reporting.ts), and the outbound queue and worker that send
 * what they compose. They work in the queue's own SQLite transactions, so a DSN is committed together
 * with the removal of what it reports. The PostgreSQL side is src/relay_reporting_pg.ts; the outbound
 * worker and the metrics of DSNs are the same for both, and built here.
 *
 * @module
 */
import { type Clock } from "./clock.ts";
import type { Config } from "./config/fields.ts";
import type { Logger } from "./log/logger.ts";
import type { NewMailSignal } from "./queue/new_mail.ts";
import { OutboundQueue, type OutboundRow } from "./queue/outbound_queue.ts";
import { bounceForwarded, forwardPostmasterMail } from "./queue/postmaster.ts";
import { DSN_BATCH, reportPendingDsns } from "./queue/bounces.ts";
import { sendDelayWarnings } from "./queue/delay_warnings.ts";
import { type PendingDsnCounts, Reporting } from "./queue/reporting.ts";
import { sendWaitingNotices } from "./queue/waiting_notices.ts";
import { ReportRouter, type Routed } from "./queue/report_router.ts";
import { ReportStore } from "./queue/report_store.ts";
import type { QueueStore } from "./queue/store.ts";
import { type OutboundStore, OutboundWorker } from "./outbound/worker.ts";
import { clientTimeouts } from "./client/deliver_session.ts";
import type { RelayState } from "./relay_state.ts";

/** The reporting side as the relay holds it, whatever the backend. */
export interface ReportingSide {
  reporting: Reporting;
  /** The outbound queue (its counts feed /status and /metrics) and the worker that sends it. */
  outbound: { queue: OutboundStore; worker: OutboundWorker };
}

/**
 * The reporting side: DSNs and notices are composed from the queue (src/queue/reporting.ts) and go
 * out through the outbound queue and its worker, to the smarthost or the recipients' MX.
 */
export function startReporting(
  config: Config,
  store: QueueStore,
  state: RelayState,
  logger: Logger,
  clock: Clock,
  newMail: NewMailSignal,
): ReportingSide {
  const queue = new OutboundQueue(store.database, clock);
  const reports = new ReportStore(store.database);
  const router = new ReportRouter(store, queue, {
    hostname: config.hostname,
    lifetimeMs: config.dsnLifetime,
    clock,
    logger,
    // A DSN to a hosted sender wakes a session watching that domain (push delivery).
    onQueuedLocally: (domain) => newMail.notify([domain]),
  });
  const outbound = sqliteOutboundStore(queue, store);
  const bounce = { store, router, hostname: config.hostname, clock, logger };
  const worker = startOutboundWorker(
    { config, state, logger, clock },
    outbound,
    (row, answer) => bounceForwarded(bounce, row, answer),
  );
  const reportLogger = logger.child({ component: "reports" });
  const common = { store, reports, router, hostname: config.hostname, clock, logger: reportLogger };
  const reporting = buildReporting(config, state, reportLogger, worker, {
    dsnBatch: (settings) => reportPendingDsns({ ...common, ...settings }),
    delayWarnings: (settings) => sendDelayWarnings({ ...common, ...settings }),
    waitingNotices: (settings) => sendWaitingNotices({ ...common, ...settings }),
    forwardPostmaster: (address, lifetimeMs) =>
      forwardPostmasterMail({ store, outbound: queue, lifetimeMs, logger: reportLogger }, address),
    pendingCounts: () => reports.pendingCounts(),
  });
  return { reporting, outbound: { queue: outbound, worker } };
}

/** The SQLite outbound queue as the worker's store: each write in its own store transaction. */
export function sqliteOutboundStore(queue: OutboundQueue, store: QueueStore): OutboundStore {
  return {
    // One process: rows being sent are only skipped, not claimed.
    due: async (limit, exclude) =>
      await Promise.resolve(
        queue.due(limit + exclude.size).filter((r) => !exclude.has(r.id)).slice(0, limit),
      ),
    // One process holds every row: the change always applies.
    remove: async (id) => await Promise.resolve(store.transaction(() => (queue.remove(id), true))),
    defer: async (id, at, error) =>
      await Promise.resolve(store.transaction(() => (queue.defer(id, at, error), true))),
    nextDueAt: async () => await Promise.resolve(queue.nextDueAt()),
    counts: async () => await Promise.resolve(queue.counts()),
  };
}

/** Told of each DSN queued and where it went. */
type OnDsn = (kind: "failure" | "relayed" | "delay", route: Routed) => void;

/** One backend's reporting jobs, each run with its settings from the config. */
export interface BackendJobs {
  dsnBatch(
    settings: { maxFullBytes: number; postmasterCopy: string | null; onDsn: OnDsn },
  ): number | Promise<number>;
  delayWarnings(
    settings: { maxFullBytes: number; steps: readonly number[]; lifetimeMs: number; onDsn: OnDsn },
  ): number | Promise<number>;
  waitingNotices(settings: { defaultAfterMs: number; lifetimeMs: number }): number | Promise<number>;
  /** Moves the postmaster mailbox to the outside `address`, each forward kept for `lifetimeMs`. */
  forwardPostmaster(address: string, lifetimeMs: number): number | Promise<number>;
  pendingCounts(): PendingDsnCounts | Promise<PendingDsnCounts>;
}

/** The reporting jobs of `jobs` as the configuration asks for them, handing their mail to `worker`. */
export function buildReporting(
  config: Config,
  state: RelayState,
  logger: Logger,
  worker: OutboundWorker,
  jobs: BackendJobs,
): Reporting {
  const onDsn = dsnCounter(state);
  const maxFullBytes = config.dsnMaxFullSize;
  const bounces = {
    maxFullBytes,
    postmasterCopy: config.dsnCopyToPostmaster ? config.postmasterAddress : null,
    onDsn,
  };
  const warnings = { maxFullBytes, steps: config.dsnDelayWarnings, lifetimeMs: config.queueLifetime, onDsn };
  const notices = { defaultAfterMs: config.domainNotifyAfter, lifetimeMs: config.queueLifetime };
  const postmasterAddress = config.postmasterAddress;
  return new Reporting({
    dsnBatch: () => jobs.dsnBatch(bounces),
    dsnBatchSize: DSN_BATCH,
    tickJobs: [
      ...(warnings.steps.length === 0
        ? []
        : [{ name: "delay warnings", run: () => jobs.delayWarnings(warnings) }]),
      { name: "waiting notices", run: () => jobs.waitingNotices(notices) },
      ...(postmasterAddress === null ? [] : [{
        name: "postmaster forwarding",
        run: () => jobs.forwardPostmaster(postmasterAddress, config.dsnLifetime),
      }]),
    ],
    pendingCounts: () => jobs.pendingCounts(),
    onQueued: () => worker.kick(),
    logger,
  });
}

/** Counts each DSN queued, and those queued here for a hosted sender as sent (that is their delivery). */
export function dsnCounter(
  state: RelayState,
): (kind: "failure" | "relayed" | "delay", route: Routed) => void {
  return (kind, route) => {
    state.dsnsQueued.inc(kind);
    if (route === "local") state.dsnsSent++;
  };
}

/**
 * The outbound worker over `queue`, sending to the smarthost or the recipients' MX as configured;
 * `bounce` tells the sender of a postmaster forward that was dropped (src/queue/postmaster.ts).
 */
export function startOutboundWorker(
  { config, state, logger, clock }: { config: Config; state: RelayState; logger: Logger; clock: Clock },
  queue: OutboundStore,
  bounce: (
    row: OutboundRow,
    answer: { code: number; text: string; remoteMta: string | null },
  ) => void | Promise<void>,
): OutboundWorker {
  const smarthost = config.smarthost;
  const caFile = config.smarthostCaFile;
  const credentials = config.smarthostUsername !== null && config.smarthostPassword !== null
    ? { username: config.smarthostUsername, password: config.smarthostPassword }
    : undefined;
  return new OutboundWorker({
    queue,
    destination: (row) =>
      smarthost
        ? {
          kind: "smarthost",
          host: smarthost.host,
          port: smarthost.port,
          tls: config.smarthostTls,
          ...(caFile ? { caFile } : {}),
          ...(credentials ? { credentials } : {}),
        }
        : { kind: "mx", domain: row.domain, mxPort: config.outboundMxPort },
    send: {
      hostname: config.hostname,
      dns: config.dnsServers.length > 0 ? { dnsServers: config.dnsServers } : {},
      // The RFC 5321 4.5.3.2 client timeouts are the same settings as after the ATRN turn.
      timeouts: {
        ...clientTimeouts(config),
        connectMs: config.outboundConnectTimeout,
        tlsHandshakeMs: config.tlsHandshakeTimeout,
      },
    },
    concurrency: config.outboundConcurrency,
    clock,
    logger: logger.child({ component: "outbound" }),
    onResult: async (row, outcome, answer) => {
      state.outbound.inc(outcome);
      if (row.kind === "dsn" && outcome === "delivered") state.dsnsSent++;
      if (outcome === "dropped") {
        try {
          await bounce(row, answer);
        } catch (error) {
          logger.error("bouncing a failed postmaster forward failed", { error: String(error) });
        }
      }
    },
  });
}

/**
 * Refuses to serve on a database that cannot be written: SQLite opens a write-protected file read-only
 * without complaint, and every message would then get 451. One real, committed write tells.
 */
export function assertWritable(store: QueueStore, clock: Clock): void {
  try {
    store.transaction(() => new ReportStore(store.database).setState("relay-started-at", clock.now()));
  } catch (error) {
    const path = store.database.path;
    store.database.close();
    throw new Error(
      `The queue database ${path} cannot be written: ${(error as Error).message} ` +
        "(check the permissions of the file, its -wal and -shm files and the data directory, and the free space)",
      { cause: error },
    );
  }
}
