/**
 * A listening SMTP-family service (intake or ODMR): accepts connections within the configured
 * limits, runs one SessionLoop per connection, and shuts down gracefully. On stop, the port stays
 * open for the grace period so new connections are told `421 4.3.2` (RFC 5321 3.8) instead of
 * being refused by the kernel; idle sessions get 421 at once; a session in DATA finishes its
 * message or, past the grace period, is dropped without an acknowledgement (so nothing is lost:
 * the client still owns the message).
 */
import { randomBytes } from "node:crypto";
import type { SecureContext } from "node:tls";
import type { ListenAddress } from "../config/fields.ts";
import type { Logger } from "../log/logger.ts";
import type { Connection } from "../net/connection.ts";
import { type ConnectionInfo, type Listener, startListener } from "../net/listener.ts";
import type { RelayState } from "../relay_state.ts";
import { formatReply } from "../smtp/reply.ts";
import { C421ShuttingDown, C421TooManyConnections } from "../smtp/reply_codes.ts";
import { SessionLoop } from "./session.ts";

/** How to build a session for a new connection. */
export type SessionFactory = (conn: Connection, cid: string, logger: Logger) => SessionLoop;

/** Options of a service. */
export interface ServiceOptions {
  name: "smtp" | "odmr" | "odmrs";
  listen: ListenAddress;
  hostname: string;
  /** Implicit TLS from the first byte (the odmrs listener). */
  implicitTls?: SecureContext;
  /** Longest implicit-TLS handshake (config `tlsHandshakeTimeout`). */
  tlsHandshakeTimeoutMs: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  maxLineLength: number;
  logger: Logger;
  state: RelayState;
  createSession: SessionFactory;
}

/** A running service. */
export interface SmtpService {
  readonly name: string;
  address(): { host: string; port: number };
  activeSessions(): number;
  /**
   * Serves a connection that did not come through the listener (an in-memory pipe in tests), exactly
   * as an accepted socket past the listener's limits. Resolves when the session has ended.
   */
  accept(conn: Connection): Promise<void>;
  /** Graceful stop; see the module documentation. */
  stop(graceMs: number): Promise<void>;
}

/** A short random connection id for logs (`cid`); transactions append `.N`. */
export function newConnectionId(): string {
  return randomBytes(6).toString("base64url");
}

/** Binds and starts a service. Rejects with a clear message when the bind fails. */
export async function startSmtpService(options: ServiceOptions): Promise<SmtpService> {
  const { logger, state, name, hostname } = options;
  const sessions = new Map<Connection, SessionLoop>();
  let draining = false;
  const counter = name === "smtp" ? "activeSmtpSessions" : "activeOdmrSessions";

  /** One connection's whole life: refused while draining, else a session until it ends. */
  async function serve(conn: Connection, info: ConnectionInfo): Promise<void> {
    if (draining) {
      state.connections.inc(`${name}-refused-shutdown`);
      await conn.write(formatReply(C421ShuttingDown(hostname), { enhanced: true })).catch(() => {});
      return;
    }
    const cid = newConnectionId();
    const sessionLogger = logger.child({ cid, listener: name });
    sessionLogger.info("connect", { ip: info.remoteAddress, port: info.remotePort, tls: info.tls });
    state.connections.inc(`${name}-accepted`);
    const session = options.createSession(conn, cid, sessionLogger);
    sessions.set(conn, session);
    state[counter]++;
    try {
      await session.run();
    } finally {
      sessions.delete(conn);
      state[counter]--;
      sessionLogger.info("disconnect", { bytesIn: conn.bytesIn, bytesOut: conn.bytesOut });
    }
  }

  const listener: Listener = await startListener({
    host: options.listen.host,
    port: options.listen.port,
    // Real clients finish a handshake in milliseconds; a short limit frees idle sockets quickly.
    ...(options.implicitTls
      ? { tls: options.implicitTls, handshakeTimeoutMs: options.tlsHandshakeTimeoutMs }
      : {}),
    maxConnections: options.maxConnections,
    maxConnectionsPerIp: options.maxConnectionsPerIp,
    connection: { maxLineLength: options.maxLineLength },
    // When full, an idle stranger's connection makes room for a newcomer (src/net/listener.ts).
    evictable: (conn) => sessions.get(conn)?.evictable ?? false,
    evict: (conn) => {
      state.connections.inc(`${name}-evicted`);
      const session = sessions.get(conn);
      if (session) session.evict();
      else conn.destroy();
    },
    onConnection: (conn: Connection, info: ConnectionInfo) => serve(conn, info),
    onRejected: async (conn: Connection, reason, info) => {
      state.connections.inc(`${name}-rejected-${reason}`);
      logger.warn("connection refused", { listener: name, ip: info.remoteAddress, reason });
      // RFC 5321 3.1 / docs/protocol.md#connection-limits: a 421 at connect, then close.
      await conn.write(formatReply(C421TooManyConnections(hostname), { enhanced: true })).catch(() => {});
    },
    onError: (error, info) => {
      logger.warn("connection error", { listener: name, ip: info?.remoteAddress, error: String(error) });
    },
  });
  const address = listener.address();
  logger.info("listening", {
    listener: name,
    address: `${address.host}:${address.port}`,
    tls: Boolean(options.implicitTls),
  });

  return {
    name,
    address: () => listener.address(),
    activeSessions: () => sessions.size,
    accept: async (conn) => {
      const info = { id: 0, localPort: conn.localPort, tls: conn.isTls };
      try {
        await serve(conn, { ...info, remoteAddress: conn.remoteAddress, remotePort: conn.remotePort });
      } finally {
        if (!conn.isClosed) await conn.close();
      }
    },
    async stop(graceMs: number) {
      draining = true;
      for (const session of sessions.values()) session.requestShutdown();
      /** Waits (at most `ms`) for every session to end. */
      const sessionsEnded = async (ms: number) => {
        const deadline = Date.now() + ms;
        while (sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      };
      await sessionsEnded(graceMs);
      if (sessions.size > 0) {
        logger.warn("dropping sessions at the end of the grace period", {
          listener: name,
          count: sessions.size,
        });
        // Also those handed to accept(), which the listener does not know.
        for (const conn of sessions.keys()) conn.destroy();
        // Let them unwind (record outcomes, release leases) before the caller closes the database.
        await sessionsEnded(1000);
      }
      await listener.closeAll({ graceMs: 100 });
    },
  };
}
