/**
 * The reporting side of the relay over the embedded SQLite queue: the DSN step, delay warnings, customer
 * notices and postmaster forwarding (src/queue/reporting.ts), and the outbound queue and worker that send
 * what they compose. They work in the queue's own SQLite transactions, so a DSN is committed together
 * with the removal of what it reports.
 *
 * @module
 */
import { type Clock } from "./clock.ts";
import type { Config } from "./config/fields.ts";
import type { Logger } from "./log/logger.ts";
import type { NewMailSignal } from "./queue/new_mail.ts";
import { OutboundQueue } from "./queue/outbound_queue.ts";
import { bounceForwarded, forwardPostmasterMail } from "./queue/postmaster.ts";
import { Reporting } from "./queue/reporting.ts";
import { ReportRouter, type Routed } from "./queue/report_router.ts";
import { ReportStore } from "./queue/report_store.ts";
import type { QueueStore } from "./queue/store.ts";
import { OutboundWorker } from "./outbound/worker.ts";
import { clientTimeouts } from "./client/deliver_session.ts";
import type { RelayState } from "./relay_state.ts";

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
): { reporting: Reporting; outbound: { queue: OutboundQueue; worker: OutboundWorker } } {
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
  const smarthost = config.smarthost;
  const caFile = config.smarthostCaFile;
  const credentials = config.smarthostUsername !== null && config.smarthostPassword !== null
    ? { username: config.smarthostUsername, password: config.smarthostPassword }
    : undefined;
  const worker = new OutboundWorker({
    queue,
    transaction: (fn) => store.transaction(fn),
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
    onResult: (row, outcome, answer) => {
      state.outbound.inc(outcome);
      if (row.kind === "dsn" && outcome === "delivered") state.dsnsSent++;
      if (outcome === "dropped") {
        try {
          bounceForwarded({ store, router, hostname: config.hostname, clock, logger }, row, answer);
        } catch (error) {
          logger.error("bouncing a failed postmaster forward failed", { error: String(error) });
        }
      }
    },
  });
  const onDsn = (kind: "failure" | "relayed" | "delay", route: Routed) => {
    state.dsnsQueued.inc(kind);
    // Queued here for a hosted sender: that is where it is delivered to.
    if (route === "local") state.dsnsSent++;
  };
  const reportLogger = logger.child({ component: "reports" });
  const common = { store, reports, router, hostname: config.hostname, clock, logger: reportLogger };
  const reporting = new Reporting({
    bounces: {
      ...common,
      maxFullBytes: config.dsnMaxFullSize,
      postmasterCopy: config.dsnCopyToPostmaster ? config.postmasterAddress : null,
      onDsn,
    },
    warnings: config.dsnDelayWarnings.length === 0 ? null : {
      ...common,
      maxFullBytes: config.dsnMaxFullSize,
      steps: config.dsnDelayWarnings,
      lifetimeMs: config.queueLifetime,
      onDsn,
    },
    notices: { ...common, defaultAfterMs: config.domainNotifyAfter, lifetimeMs: config.queueLifetime },
    forwardPostmaster: config.postmasterAddress === null ? null : () =>
      forwardPostmasterMail(
        { store, outbound: queue, lifetimeMs: config.dsnLifetime, logger: reportLogger },
        config.postmasterAddress!,
      ),
    onQueued: () => worker.kick(),
    logger: reportLogger,
  });
  return { reporting, outbound: { queue, worker } };
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
