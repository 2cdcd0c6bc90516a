/**
 * Assembles the running relay: one process, one event loop, listeners over one SQLite queue
 * (DESIGN.md 1). `startRelay` binds everything or fails with a clear message; `stop` shuts down
 * in order: listeners drain (new connections get 421, DATA in flight gets the grace period),
 * then the HTTP API, then the database.
 */
import type { SecureContext } from "node:tls";
import { systemClock } from "./clock.ts";
import type { Config } from "./config/fields.ts";
import { isLoopback } from "./config/load.ts";
import { createApp } from "./http/app.ts";
import type { Logger } from "./log/logger.ts";
import { openServingStore, spoolDir } from "./cli/open_store.ts";
import { loadSecureContext } from "./net/tls.ts";
import type { QueueStore } from "./queue/store.ts";
import { RelayState } from "./relay_state.ts";
import { type HttpServer, serveHttp } from "./runtime/http_serve.ts";
import { freeSpaceProbe, IntakeProtocol } from "./server/intake.ts";
import { DomainLeases } from "./queue/leases.ts";
import { startHousekeeping } from "./queue/housekeeping.ts";
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
  store: QueueStore;
  state: RelayState;
  http: HttpServer | null;
  services: SmtpService[];
  /** Graceful stop; resolves when everything is closed. */
  stop(): Promise<void>;
}

/** Knobs that are not configuration (tests): the AUTH throttle's delays. */
export interface RelayOptions {
  /** Overrides of the AUTH failure throttle (e.g. a short `baseDelayMs` in tests). */
  authThrottle?: Pick<AuthThrottleOptions, "baseDelayMs" | "maxDelayMs">;
}

/** Starts every configured listener. */
export async function startRelay(config: Config, logger: Logger, options: RelayOptions = {}): Promise<Relay> {
  const { store, staleSpoolFiles } = openServingStore(config.dataDir);
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
    ? async (conn: import("./net/line_connection.ts").LineConnection, readyReply: string) => {
      await conn.startTlsServer(tls, { readyReply, handshakeTimeoutMs: config.tlsHandshakeTimeout });
    }
    : null;
  const stopHousekeeping = startHousekeeping(store, { lifetimeMs: config.queueLifetime, logger });
  const stopAll = async () => {
    state.shuttingDown = true;
    stopHousekeeping();
    await Promise.all(
      services.map((s) =>
        s.stop(config.shutdownGrace).catch((error) =>
          logger.error("error while stopping", { error: String(error) })
        )
      ),
    );
    await http?.stop().catch((error) => logger.error("error while stopping http", { error: String(error) }));
    store.database.close();
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
              // Sessions finishing DATA together share one fsync (src/queue/group_commit.ts).
              commit: (message, body) => committer.enqueue(message, body, { fromData: true }),
              dataStarted: () => committer.beginData(),
              dataAbandoned: () => committer.abandonData(),
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
    const leases = new DomainLeases();
    const throttle = new AuthThrottle(systemClock, {
      windowMs: config.authFailureWindow,
      maxFailuresPerIp: config.authMaxFailuresPerIp,
      maxFailuresPerAccountIp: config.authMaxFailuresPerAccountIp,
      ...options.authThrottle,
    });
    const atrnRateLimit = new SlidingWindowLimit(systemClock, {
      limit: config.atrnMaxPerMinute,
      windowMs: 60_000,
    });
    const dummyCramSecret = cramMd5Secret(generateSecret());
    const dummyPasswordHash = await makeDummyHash();
    const deliver = makeDeliver({ config, store, logger });
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
              tlsAvailable: tls !== null,
              dummyCramSecret,
              dummyPasswordHash,
              deliver,
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
  return {
    store,
    state,
    http,
    services,
    stop() {
      stopped ??= stopAll();
      return stopped;
    },
  };
}
