/**
 * TCP listeners for the intake (25), ODMR (366) and implicit-TLS ODMR (2366) ports, with total and per-IP
 * connection limits (a per-IP concurrency cap answered with `421 4.7.0` at connect, RFC 5321 3.1;
 * docs/protocol.md#connection-limits).
 *
 * Implicit TLS accepts plain TCP and wraps each socket with `new tls.TLSSocket(socket, { isServer: true })`,
 * the same measured pattern as STARTTLS, so Deno, Bun and Node share one code path.
 *
 * @module
 */

import * as net from "node:net";
import type * as tls from "node:tls";
import { addressKey } from "./address_key.ts";
import { describeBindError } from "./bind_errors.ts";
import {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  LineConnection,
  type LineConnectionOptions,
  normalizeAddress,
} from "./line_connection.ts";

/** Why a connection was refused at connect time. */
export type RejectReason = "total" | "per-ip";

/** Facts about an accepted connection, for logs and policy. */
export interface ConnectionInfo {
  /** Listener-unique connection number, starting at 1. */
  id: number;
  /** Peer IP address (IPv4-mapped IPv6 normalised to IPv4). */
  remoteAddress: string;
  /** Peer port. */
  remotePort: number;
  /** Local port the connection arrived on. */
  localPort: number;
  /** Whether the connection is implicit TLS (already encrypted when handed over). */
  tls: boolean;
}

/** Options of {@linkcode startListener}. */
export interface ListenerOptions {
  /** Address to bind, e.g. `"0.0.0.0"`, `"::"` or `"127.0.0.1"`. */
  host: string;
  /** Port to bind; 0 picks a free port (see `address()`). */
  port: number;
  /** When set, every connection is implicit TLS (RFC 8314 3.3) with this context. */
  tls?: tls.SecureContext;
  /** Implicit-TLS handshake timeout in milliseconds. Default 30 s. */
  handshakeTimeoutMs?: number;
  /** Maximum simultaneous accepted connections; more are rejected with reason `"total"`. Default unlimited. */
  maxConnections?: number;
  /** Maximum simultaneous connections from one IP; more are rejected with `"per-ip"`. Default unlimited. */
  maxConnectionsPerIp?: number;
  /** Limits applied to every {@linkcode LineConnection}. */
  connection?: LineConnectionOptions;
  /**
   * Runs one session. The returned promise stands for the session: when it settles the listener closes
   * the connection if the handler has not. A rejection is reported to `onError`, never thrown.
   */
  onConnection(conn: LineConnection, info: ConnectionInfo): void | Promise<void>;
  /**
   * Called for a connection over a limit, so the server can write `421 4.7.0 Too many connections`.
   * The listener closes the connection when it settles. Without it the socket is just closed.
   */
  onRejected?(conn: LineConnection, reason: RejectReason, info: ConnectionInfo): void | Promise<void>;
  /**
   * Whether an open connection may be closed to make room for a newcomer when the listener is full
   * (for example: not yet authenticated, not in the middle of a message). Without it, only connections
   * still in their implicit-TLS handshake are evictable.
   */
  evictable?(conn: LineConnection): boolean;
  /** Closes an evicted connection (the server says `421 4.7.0` first). Default: destroy it. */
  evict?(conn: LineConnection): void;
  /** Reports errors that belong to no session: a failed implicit-TLS handshake, a handler that threw. */
  onError?(err: unknown, info: ConnectionInfo | undefined): void;
}

/** A running listener. */
export interface Listener {
  /** The bound address; with port 0 this is the real port. */
  address(): { host: string; port: number };
  /** Accepted connections currently open (rejected ones are not counted). */
  connectionCount(): number;
  /** Stops accepting new connections; open ones are left alone. Resolves once the port is released. */
  close(): Promise<void>;
  /**
   * Stops accepting, then closes every open connection (`end()`, `destroy()` after `graceMs`) and resolves
   * when all are closed.
   */
  closeAll(options?: { graceMs?: number }): Promise<void>;
}

/**
 * Binds and starts a listener. Throws a clear error when the port is privileged (EACCES) or busy
 * (EADDRINUSE).
 */
export async function startListener(options: ListenerOptions): Promise<Listener> {
  const slots = new SlotTable(options.maxConnections ?? Infinity, options.maxConnectionsPerIp ?? Infinity);
  const everything = new Set<LineConnection>();
  const report = (err: unknown, info: ConnectionInfo | undefined): void => {
    try {
      options.onError?.(err, info);
    } catch {
      // a broken error reporter must not take the listener down
    }
  };
  let nextId = 1;
  let closing = false;
  /** Implicit-TLS sockets still in their handshake (counted against the limits, destroyed by closeAll). */
  const handshaking = new Set<net.Socket>();
  // Evicting frees a slot for a newcomer from an address that holds fewer connections (see SlotTable).
  const evict = (slot: Slot): void => {
    if (slot.socket) slot.socket.destroy();
    else if (slot.conn) {
      try {
        if (options.evict) options.evict(slot.conn);
        else slot.conn.destroy();
      } catch (err) {
        report(err, undefined);
        slot.conn.destroy();
      }
    }
  };
  const evictable = (slot: Slot): boolean => {
    if (slot.socket) return true; // a TLS handshake in progress has proved nothing yet
    if (!slot.conn || !options.evictable) return false;
    try {
      return options.evictable(slot.conn);
    } catch {
      return false;
    }
  };

  const handle = async (socket: net.Socket): Promise<void> => {
    socket.on("error", noop);
    if (closing) {
      socket.destroy();
      return;
    }
    const id = nextId++;
    let conn: LineConnection;
    const connOptions: LineConnectionOptions & { handshakeTimeoutMs?: number } = { ...options.connection };
    let slot: Slot | undefined;
    if (options.tls) {
      // A socket still in its TLS handshake takes a slot too, or anyone could hold unlimited half-open
      // handshakes before a limit applies. No 421 can be said before TLS is up, so an over-limit
      // handshake is simply closed.
      const ip = addressKey(normalizeAddress(socket.remoteAddress ?? ""));
      const taken = slots.take(ip, evictable, evict);
      if (typeof taken === "string") {
        socket.destroy();
        return;
      }
      slot = taken;
      slot.socket = socket;
      handshaking.add(socket);
      connOptions.handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
      try {
        conn = await LineConnection.acceptTls(socket, options.tls, connOptions);
      } catch (err) {
        slots.release(slot);
        if (!slot.evicted) report(err, undefined);
        socket.destroy();
        return;
      } finally {
        handshaking.delete(socket);
        slot.socket = undefined;
      }
      if (slot.evicted) {
        conn.destroy();
        return;
      }
    } else {
      conn = new LineConnection(socket, connOptions);
    }
    everything.add(conn);
    void conn.closed.then(() => everything.delete(conn));
    const info: ConnectionInfo = {
      id,
      remoteAddress: conn.remoteAddress,
      remotePort: conn.remotePort,
      localPort: conn.localPort,
      tls: conn.isTls,
    };
    if (closing) {
      if (slot) slots.release(slot);
      conn.destroy();
      return;
    }
    if (!slot) {
      const taken = slots.take(addressKey(info.remoteAddress), evictable, evict);
      if (typeof taken === "string") {
        try {
          await options.onRejected?.(conn, taken, info);
        } catch (err) {
          report(err, info);
        }
        await conn.close();
        return;
      }
      slot = taken;
    }
    const held = slot;
    held.conn = conn;
    void conn.closed.then(() => slots.release(held));
    try {
      await options.onConnection(conn, info);
    } catch (err) {
      report(err, info);
      conn.destroy();
      return;
    }
    await conn.close();
  };

  const server = net.createServer((socket) => {
    handle(socket).catch((err) => {
      report(err, undefined);
      socket.destroy();
    });
  });
  const serverClosed = new Promise<void>((resolve) => server.once("close", () => resolve()));

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off("listening", onListening);
      reject(bindError(err, options.host, options.port));
    };
    const onListening = (): void => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen({ host: options.host, port: options.port });
  });
  server.on("error", (err) => report(err, undefined));

  const bound = server.address();
  const addr = typeof bound === "object" && bound !== null
    ? { host: bound.address, port: bound.port }
    : { host: options.host, port: options.port };

  let closePromise: Promise<void> | undefined;
  const close = (): Promise<void> => {
    if (closePromise) return closePromise;
    closing = true;
    closePromise = new Promise<void>((resolve) => {
      try {
        server.close();
      } catch {
        // already closed
      }
      // The listening socket is released synchronously; 'close' itself waits for open connections.
      setTimeout(resolve, 0);
    });
    return closePromise;
  };

  return {
    address: () => ({ ...addr }),
    connectionCount: () => slots.openConnections(),
    close,
    async closeAll(opts: { graceMs?: number } = {}): Promise<void> {
      await close();
      for (const socket of handshaking) socket.destroy();
      await Promise.all([...everything].map((c) => c.close(opts.graceMs)));
      await serverClosed;
    },
  };
}

/** One taken connection slot: the handshaking socket or the connection that holds it. */
interface Slot {
  readonly ip: string;
  socket: net.Socket | undefined;
  conn: LineConnection | undefined;
  released: boolean;
  /** Closed to make room for another connection. */
  evicted: boolean;
}

/**
 * Connection slots with a total and a per-address cap (an IPv6 /64 counts as one address, as one host
 * usually owns a whole /64: src/net/address_key.ts). When the total is reached, a newcomer may take the
 * slot of the OLDEST evictable connection of the address that holds the MOST connections, provided
 * that address holds at least two more than the newcomer's: idle strangers flooding from a few
 * addresses then cannot keep a customer from a fresh address out, and a single flooder cannot churn
 * its own connections. (An attacker with more addresses than there are slots is out of scope:
 * docs/security.md.)
 */
class SlotTable {
  // Insertion order is age: the first slot of an address is its oldest connection.
  readonly #slots = new Set<Slot>();
  readonly #perIp = new Map<string, number>();

  constructor(readonly maxTotal: number, readonly maxPerIp: number) {}

  /** Connections (not handshakes) currently holding a slot. */
  openConnections(): number {
    let n = 0;
    for (const slot of this.#slots) if (slot.conn) n++;
    return n;
  }

  /** A slot for a connection from `ip`, or why there is none. */
  take(ip: string, evictable: (slot: Slot) => boolean, evict: (slot: Slot) => void): Slot | RejectReason {
    const mine = this.#perIp.get(ip) ?? 0;
    if (mine >= this.maxPerIp) return "per-ip";
    if (this.#slots.size >= this.maxTotal) {
      const victim = this.#victim(mine, evictable);
      if (!victim) return "total";
      victim.evicted = true;
      this.release(victim);
      evict(victim);
    }
    const slot: Slot = { ip, socket: undefined, conn: undefined, released: false, evicted: false };
    this.#slots.add(slot);
    this.#perIp.set(ip, mine + 1);
    return slot;
  }

  /** Gives a slot back; safe to call more than once. */
  release(slot: Slot): void {
    if (slot.released) return;
    slot.released = true;
    this.#slots.delete(slot);
    const n = (this.#perIp.get(slot.ip) ?? 1) - 1;
    if (n <= 0) this.#perIp.delete(slot.ip);
    else this.#perIp.set(slot.ip, n);
  }

  #victim(newcomerCount: number, evictable: (slot: Slot) => boolean): Slot | undefined {
    let best: Slot | undefined;
    let bestCount = newcomerCount + 1;
    for (const slot of this.#slots) {
      const count = this.#perIp.get(slot.ip) ?? 0;
      // Strictly more than the best so far: among equals the oldest (first seen) wins.
      if (count > bestCount && evictable(slot)) {
        best = slot;
        bestCount = count;
      }
    }
    return best;
  }
}

/**
 * Turns a bind failure into an error that says what to do: EACCES on a privileged port needs root or
 * CAP_NET_BIND_SERVICE (or an unprivileged port), EADDRINUSE means another process holds the port.
 * The wording is shared with the HTTP listener (`bind_errors.ts`); the original error is the `cause`.
 */
export function bindError(err: unknown, host: string, port: number): Error {
  return new Error(describeBindError(err, host, port), { cause: err });
}

function noop(): void {}
