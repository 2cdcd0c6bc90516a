/**
 * Assembles the running relay: one process, one event loop, listeners over one queue
 * (docs/design.md#one-process): the embedded SQLite by default, or a PostgreSQL database shared with
 * other nodes when the `database` setting names one. `startRelay` binds everything or fails with a clear message;
 * `stop` shuts down in order: listeners drain (new connections get 421, DATA in flight gets the grace period),
 * then the HTTP API, then the database.
 */
import type { SecureContext } from "node:tls";
import { type Clock, systemClock } from "./clock.ts";
import type { Config } from "./config/fields.ts";
import { isLoopback } from "./config/load.ts";
import { createApp } from "./http/app.ts";
import type { Logger } from "./log/logger.ts";
import { spoolDir } from "./queue/open.ts";
import { openQueue } from "./queue/open_queue.ts";
import type { Queue } from "./queue/queue.ts";
import { cleanSpoolDir } from "./queue/spool.ts";
import { SqliteQueue } from "./queue/sqlite_queue.ts";
import { assertWritable, type ReportingSide, startReporting } from "./relay_reporting.ts";
import { loadSecureContext } from "./net/tls.ts";
import { RelayState } from "./relay_state.ts";
import { type HttpServer, serveHttp } from "./runtime/http_serve.ts";
import { freeSpaceProbe, IntakeProtocol } from "./server/intake.ts";
import type { Connection } from "./net/connection.ts";
import { startHousekeeping } from "./queue/housekeeping.ts";
import { NewMailSignal } from "./queue/new_mail.ts";
import { type WatchingSession, WatchSessions } from "./server/watch_sessions.ts";
import type { Reporting } from "./queue/reporting.ts";
import { GroupCommitter } from "./queue/group_commit.ts";
import { OdmrProtocol } from "./server/odmr.ts";
import { makeDeliver } from "./server/odmr_delivery.ts";
import { SlidingWindowLimit } from "./server/rate_limit.ts";
import { AuthThrottle, type AuthThrottleOptions } from "./server/sasl/auth_throttle.ts";
import { cramMd5Secret } from "./server/sasl/cram_md5.ts";
import { generateSecret, makeDummyHash } from "./server/sasl/password.ts";
import { SessionLoop } from "./server/session.ts";
import { type SmtpService, startSmtpService } from "./server/smtp_service.ts";
import { C220Greeting } from "./smtp/reply_codes.ts";

/** A started relay. */
export interface Relay {
  queue: Queue;
  state: RelayState;
  http: HttpServer | null;
  services: SmtpService[];
  /**
   * The DSN step, delay warnings and notices (tests run them at once instead of waiting a tick), on
   * either backend (src/relay_reporting.ts, src/relay_reporting_pg.ts).
   */
  reporting: Reporting;
  /** Expiry, then the reporting jobs: one round now with `tick()` (tests move the clock, then tick). */
  housekeeping: { tick(): Promise<void> };
  /** What the relay sends to the internet itself (the outbound queue's store), and its worker. */
  outbound: ReportingSide["outbound"];
  /** Sessions watching for new mail (push delivery). */
  watching(): WatchingSession[];
  /** Graceful stop; resolves when everything is closed. */
  stop(): Promise<void>;
}

/** Knobs that are not configuration (tests): the clock, the AUTH throttle's delays. */
export interface RelayOptions {
  /** Overrides of the AUTH failure throttle (e.g. a short `baseDelayMs` in tests). */
  authThrottle?: Pick<AuthThrottleOptions, "baseDelayMs" | "maxDelayMs">;
  /** The clock of the queue and the reporting jobs (tests move it to expire mail without sleeping). */
  clock?: Clock;
}

/** Starts every configured listener. */
export async function startRelay(config: Config, logger: Logger, options: RelayOptions = {}): Promise<Relay> {
  const clock = options.clock ?? systemClock;
  const store = await openQueue(config, {
    clock,
    serving: true,
    // An idle pooled connection the server closed: the pool replaces it; worth a line in the log.
    onConnectionError: (error) => logger.warn("queue database connection lost", { error: error.message }),
    onHeartbeatError: (error) => logger.warn("lease heartbeat failed", { error: error.message }),
  });
  const sqlite = store instanceof SqliteQueue ? store.store : null;
  if (sqlite) assertWritable(sqlite, clock);
  else if (!(await store.isWritable())) {
    await store.close();
    throw new Error(`The queue database ${store.location} does not accept writes (read-only standby?)`);
  }
  const staleSpoolFiles = cleanSpoolDir(spoolDir(config.dataDir));
  logger.info("queue", { backend: store.backend, location: store.location });
  store.postmasterQuotaBytes = config.postmasterMailboxQuota;
  if (staleSpoolFiles > 0) {
    logger.warn("removed spool files of unfinished messages", { count: staleSpoolFiles });
  }
  const state = new RelayState();
  const services: SmtpService[] = [];
  let http: HttpServer | null = null;
  const tls: SecureContext | null = config.tlsCertFile && config.tlsKeyFile
    ? loadSecureContext({ certFile: config.tlsCertFile, keyFile: config.tlsKeyFile })
    : null;
  const startTls = tls
    ? async (conn: Connection, readyReply: string) => {
      await conn.startTlsServer(tls, { readyReply, handshakeTimeoutMs: config.tlsHandshakeTimeout });
    }
    : null;
  const newMail = new NewMailSignal();
  // Several nodes on one PostgreSQL queue: mail committed on another node wakes this node's watching
  // sessions too (NOTIFY/LISTEN, src/queue/pg/pg_new_mail.ts); "all" after the listener reconnected.
  const stopNewMail = store.watchNewMail?.(
    (domains) => domains === "all" ? newMail.notifyAll() : newMail.notify(domains),
    { onError: (error) => logger.warn("new-mail listener connection lost", { error: error.message }) },
  );
  const { reporting, outbound } = sqlite
    ? startReporting(config, sqlite, state, logger, clock, newMail)
    // Loaded only for PostgreSQL, like the queue itself (src/queue/open_queue.ts).
    : (await import("./relay_reporting_pg.ts")).startPgReporting(
      config,
      store,
      state,
      logger,
      clock,
      newMail,
    );
  const leases = store.leases;
  const watch = new WatchSessions(newMail, {
    maxSessions: config.atrnMaxWatching,
    maxPerAccount: config.atrnMaxWatchingPerAccount,
    maxMs: config.atrnWatchMaxDuration,
    keepaliveMs: config.atrnWatchKeepalive,
  }, clock);
  const housekeeping = startHousekeeping(store, {
    lifetimeMs: config.queueLifetime,
    logger,
    clock,
    afterTick: () => reporting?.runAll(),
  });
  const stopAll = async () => {
    state.shuttingDown = true;
    // Watching sessions say QUIT at once, so the listeners can drain.
    watch.stopAll();
    await stopNewMail?.().catch(() => {});
    housekeeping.stop();
    reporting?.stop();
    await outbound?.worker.stop();
    await Promise.all(
      services.map((s) =>
        s.stop(config.shutdownGrace).catch((error) =>
          logger.error("error while stopping", { error: String(error) })
        )
      ),
    );
    await http?.stop().catch((error) => logger.error("error while stopping http", { error: String(error) }));
    await store.close().catch((error) =>
      logger.error("error while closing the queue", { error: String(error) })
    );
  };

  try {
    if (config.smtpListen) {
      const freeSpace = freeSpaceProbe(config.dataDir);
      const committer = new GroupCommitter(store);
      const spool = spoolDir(config.dataDir);
      const service = await startSmtpService({
        name: "smtp",
        listen: config.smtpListen,
        hostname: config.hostname,
        tlsHandshakeTimeoutMs: config.tlsHandshakeTimeout,
        maxConnections: config.smtpMaxConnections,
        maxConnectionsPerIp: config.smtpMaxConnectionsPerIp,
        maxLineLength: config.smtpMaxLineLength,
        logger,
        state,
        createSession: (conn, cid, sessionLogger) => {
          const protocol = new IntakeProtocol(
            {
              config,
              store,
              state,
              logger: sessionLogger,
              spoolDir: spool,
              tlsAvailable: tls !== null,
              shuttingDown: () => state.shuttingDown,
              freeSpace,
              // Sessions finishing DATA together share one fsync (src/queue/group_commit.ts); then
              // watching sessions of those domains are woken (push delivery).
              commit: async (message, body) => {
                const id = await committer.enqueue(message, body, { fromData: true });
                newMail.notify(message.recipients.map((r) => r.domain));
                return id;
              },
              dataStarted: () => committer.beginData(),
              dataAbandoned: () => committer.abandonData(),
              clock,
            },
            conn,
            cid,
          );
          return new SessionLoop({
            conn,
            logger: sessionLogger,
            protocol,
            greeting: C220Greeting(config.hostname, "ESMTP odmr-relay"),
            startTls,
            clock,
            limits: {
              hostname: config.hostname,
              maxLineLength: config.smtpMaxLineLength,
              idleTimeoutMs: config.smtpIdleTimeout,
              sessionTimeoutMs: config.smtpSessionTimeout,
              maxErrors: config.smtpMaxErrors,
              maxJunkCommands: config.smtpMaxJunkCommands,
              greetingDelayMs: config.smtpGreetingDelay,
              enhancedCodes: true,
              wireTrace: config.logWire,
            },
          });
        },
      });
      services.push(service);
      const a = service.address();
      state.listeners.push({
        name: "smtp",
        host: a.host,
        port: a.port,
        tls: tls ? "starttls" : "none",
        bound: true,
      });
    }
    const throttle = new AuthThrottle(clock, {
      windowMs: config.authFailureWindow,
      maxFailuresPerIp: config.authMaxFailuresPerIp,
      maxFailuresPerAccountIp: config.authMaxFailuresPerAccountIp,
      ...options.authThrottle,
    });
    const atrnRateLimit = new SlidingWindowLimit(clock, {
      limit: config.atrnMaxPerMinute,
      windowMs: 60_000,
    });
    const dummyCramSecret = cramMd5Secret(generateSecret());
    const dummyPasswordHash = await makeDummyHash();
    const deliverQueued = makeDeliver({ config, store, logger, watch, afterRecord: () => reporting?.kick() });
    // Recipients the customer refused (or accepted with NOTIFY=SUCCESS) are reported right after.
    const deliver: typeof deliverQueued = async (...args) => {
      try {
        return await deliverQueued(...args);
      } finally {
        reporting?.kick();
      }
    };
    const odmrListeners = [
      { name: "odmr" as const, listen: config.odmrListen, implicit: false },
      { name: "odmrs" as const, listen: tls ? config.odmrsListen : null, implicit: true },
    ];
    for (const { name, listen, implicit } of odmrListeners) {
      if (!listen) continue;
      const service = await startSmtpService({
        name,
        listen,
        hostname: config.hostname,
        ...(implicit && tls ? { implicitTls: tls } : {}),
        tlsHandshakeTimeoutMs: config.tlsHandshakeTimeout,
        maxConnections: config.odmrMaxConnections,
        maxConnectionsPerIp: config.odmrMaxConnectionsPerIp,
        maxLineLength: config.smtpMaxLineLength,
        logger,
        state,
        createSession: (conn, cid, sessionLogger) => {
          const protocol = new OdmrProtocol(
            {
              config,
              store,
              state,
              logger: sessionLogger,
              leases,
              throttle,
              atrnRateLimit,
              ...(config.atrnMaxWatching > 0 ? { watchAccepting: () => watch.accepting() } : {}),
              tlsAvailable: tls !== null,
              dummyCramSecret,
              dummyPasswordHash,
              deliver,
              clock,
            },
            conn,
            cid,
          );
          return new SessionLoop({
            conn,
            logger: sessionLogger,
            protocol,
            greeting: C220Greeting(config.hostname, "ESMTP odmr-relay on-demand mail relay ready"),
            startTls,
            clock,
            limits: {
              hostname: config.hostname,
              maxLineLength: config.smtpMaxLineLength,
              idleTimeoutMs: config.odmrIdleTimeout,
              // The session before ATRN; the reversed session has its own cap (atrnSessionTimeout).
              sessionTimeoutMs: config.odmrSessionTimeout,
              preAuthTimeoutMs: config.odmrPreAuthTimeout,
              maxErrors: config.odmrMaxErrors,
              maxJunkCommands: config.odmrMaxJunkCommands,
              greetingDelayMs: 0,
              enhancedCodes: true,
              wireTrace: config.logWire,
            },
          });
        },
      });
      services.push(service);
      const a = service.address();
      state.listeners.push({
        name,
        host: a.host,
        port: a.port,
        tls: implicit ? "implicit" : tls ? "starttls" : "none",
        bound: true,
      });
    }
    if (config.httpListen) {
      const app = createApp({
        store,
        state,
        logger,
        reports: reporting,
        outbound: outbound?.queue,
        onBounced: () => reporting?.kick(),
        busyDomains: () => leases.busyDomains(),
        watching: () => watch.list(),
        clock,
        token: config.httpToken,
        listenerIsLoopback: isLoopback(config.httpListen.host),
      });
      http = await serveHttp(config.httpListen.host, config.httpListen.port, app.fetch);
      state.listeners.push({ name: "http", host: http.host, port: http.port, tls: "none", bound: true });
      logger.info("listening", { listener: "http", address: `${http.host}:${http.port}` });
    }
  } catch (error) {
    await stopAll().catch(() => {});
    throw error;
  }
  let stopped: Promise<void> | null = null;
  outbound?.worker.start();
  reporting?.kick();
  return {
    queue: store,
    state,
    http,
    services,
    reporting,
    outbound,
    housekeeping,
    watching: () => watch.list(),
    stop() {
      stopped ??= stopAll();
      return stopped;
    },
  };
}
