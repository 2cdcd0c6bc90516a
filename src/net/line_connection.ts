/**
 * A CRLF line reader and writer over one TCP socket, owning the socket's read buffer for the connection's
 * whole life: across STARTTLS (RFC 3207) and across the ODMR role reversal (RFC 2645 4), where the relay
 * becomes the SMTP client on the SAME socket and the SAME buffer (the customer's 220 may already be here).
 *
 * Only `node:net` / `node:tls` and web standards are used, so the same code runs on Deno, Bun and Node.
 * This file is the socket side: events, pausing, writes and closing. Reading with deadlines is the shared
 * `BufferedConnection` (src/net/buffered_connection.ts) over the pure `LineBuffer`; the TLS handshake
 * is in src/net/tls_upgrade.ts, the limits and option types in src/net/connection_options.ts.
 *
 * @module
 */

import type * as net from "node:net";
import * as tls from "node:tls";
import { isIP } from "node:net";
import { ConnectionClosedError, TlsHandshakeError } from "./errors.ts";
import {
  DEFAULT_CLOSE_GRACE_MS,
  DEFAULT_WRITE_TIMEOUT_MS,
  type LineConnectionOptions,
  type WriteOptions,
} from "./connection_options.ts";
import { BufferedConnection } from "./buffered_connection.ts";
import { writeToSocket } from "./socket_write.ts";
import {
  clientWrap,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  errorMessage,
  noop,
  readTlsInfo,
  serverWrap,
  type StartTlsClientOptions,
  type StartTlsServerOptions,
  tlsHandshake,
  type TlsInfo,
  type TlsUpgradeResult,
  type TlsWrap,
} from "./tls_upgrade.ts";

export {
  BareLineEndingError,
  ConnectionClosedError,
  LineFloodError,
  LineTooLongError,
  NetError,
  ReadTimeoutError,
  TlsHandshakeError,
  WriteTimeoutError,
} from "./errors.ts";

// The limits, defaults and option types, so callers keep importing them from here.
export * from "./connection_options.ts";
export { DEFAULT_FLOOD_LIMIT } from "./line_buffer.ts";
export type { Connection } from "./connection.ts";
export {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  type StartTlsClientOptions,
  type StartTlsServerOptions,
  type TlsInfo,
  type TlsUpgradeResult,
} from "./tls_upgrade.ts";

type AnySocket = net.Socket | tls.TLSSocket;

const encoder = new TextEncoder();

/**
 * A line-oriented connection over a `net.Socket` or `tls.TLSSocket`: the reading is the shared
 * {@linkcode BufferedConnection}; this class adds the socket's events, pausing, writes, STARTTLS and closing.
 */
export class LineConnection extends BufferedConnection {
  #sock: AnySocket;
  #plain: net.Socket;
  #isTls: boolean;
  #tlsInfo: TlsInfo | null = null;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #writeTimeoutMs: number;
  readonly #closeGraceMs: number;

  readonly #onData = (chunk: Uint8Array): void => this.received(chunk);
  readonly #onEnd = (): void => this.endOfInput();
  readonly #onClose = (): void => this.#closedNow();
  readonly #onError = (err: unknown): void => this.failed(err);

  /**
   * Wraps a connected socket and starts buffering its input at once (so early talkers are seen).
   * `setNoDelay(true)` is applied: SMTP replies are small and latency-bound (docs/design.md#delivery).
   */
  constructor(socket: AnySocket, options: LineConnectionOptions = {}) {
    super({
      remoteAddress: normalizeAddress(socket.remoteAddress ?? ""),
      remotePort: socket.remotePort ?? 0,
      localAddress: normalizeAddress(socket.localAddress ?? ""),
      localPort: socket.localPort ?? 0,
    }, options);
    this.#sock = socket;
    this.#plain = socket;
    this.#isTls = socket instanceof tls.TLSSocket || (socket as { encrypted?: boolean }).encrypted === true;
    this.#writeTimeoutMs = options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
    this.#closeGraceMs = options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
    socket.on("error", noop); // belt and braces: an error must never be uncaught
    try {
      socket.setNoDelay(true);
    } catch {
      // some runtimes throw on a socket that is already closed
    }
    if (socket.destroyed) this.#closedNow();
    else this.#attach(socket);
  }

  /**
   * Accepts an implicit-TLS connection (port 2366 style, RFC 8314 3.3): pauses the fresh socket, wraps it
   * with `new tls.TLSSocket(socket, { isServer: true })` and waits for the handshake. On failure the socket
   * is destroyed and {@linkcode TlsHandshakeError} is thrown.
   */
  static async acceptTls(
    socket: net.Socket,
    secureContext: tls.SecureContext,
    options: LineConnectionOptions & { handshakeTimeoutMs?: number } = {},
  ): Promise<LineConnection> {
    socket.on("error", noop);
    socket.pause();
    const conn = new LineConnection(socket, options);
    // Nothing has been emitted yet (events fire on a later tick), so nothing is discarded here.
    await conn.#upgrade(
      serverWrap(secureContext),
      options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      undefined,
    );
    return conn;
  }

  /** Whether the connection is currently encrypted. */
  get isTls(): boolean {
    return this.#isTls;
  }

  /** The negotiated TLS parameters, or `null` on a plaintext connection. */
  tlsInfo(): TlsInfo | null {
    return this.#tlsInfo;
  }

  /**
   * Writes `data` (strings as UTF-8). Resolves when the socket accepted it, or after `'drain'` when the
   * socket's buffer is full (backpressure). Throws {@linkcode ConnectionClosedError} if the connection is
   * closed, {@linkcode WriteTimeoutError} (after destroying the connection) on timeout.
   */
  write(data: string | Uint8Array, options: WriteOptions = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? this.#writeTimeoutMs;
    if (this.isClosed || this.#sock.destroyed) return Promise.reject(this.closedError());
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    this.bytesOut += bytes.length;
    return writeToSocket(this.#sock, bytes, timeoutMs, () => this.destroy());
  }

  /**
   * Writes without waiting (for batching pipelined replies, RFC 2920 3.2); errors surface on the next
   * read or awaited write. Returns `false` when the socket is closed or its buffer is full.
   */
  writeNoWait(data: string | Uint8Array): boolean {
    if (this.isClosed || this.#sock.destroyed) return false;
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    this.bytesOut += bytes.length;
    try {
      return this.#sock.write(bytes);
    } catch {
      return false;
    }
  }

  /**
   * Server side of STARTTLS (RFC 3207 4), the pattern measured to work on Deno, Bun and Node (docs/design.md#runtimes):
   * detach the plaintext reader, `pause()`, DISCARD every byte buffered before the handshake
   * (CVE-2011-0411, RFC 3207 4.2), write `readyReply` if given, then
   * `new tls.TLSSocket(socket, { isServer: true, secureContext })`, wait for `'secure'`, reattach the
   * reader. Throws {@linkcode TlsHandshakeError} (connection destroyed) on failure or timeout.
   */
  startTlsServer(
    secureContext: tls.SecureContext,
    options: StartTlsServerOptions = {},
  ): Promise<TlsUpgradeResult> {
    return this.#upgrade(
      serverWrap(secureContext),
      options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      options.readyReply,
    );
  }

  /**
   * Client side of STARTTLS (RFC 3207 4), after reading the server's 220: discards any server bytes
   * buffered after it (CVE-2011-0411 applies to clients too), then `tls.connect({ socket, servername })`.
   * Throws {@linkcode TlsHandshakeError} (connection destroyed) on failure, timeout or a rejected cert.
   */
  startTlsClient(options: StartTlsClientOptions = {}): Promise<TlsUpgradeResult> {
    return this.#upgrade(
      clientWrap(options),
      options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      undefined,
    );
  }

  /**
   * Ends the connection politely: `end()` now, `destroy()` after the grace period if the socket has not
   * closed by then. Resolves when closed.
   */
  close(graceMs: number = this.#closeGraceMs): Promise<void> {
    if (this.isClosed) return this.closed;
    if (this.#closeTimer === undefined) {
      try {
        this.#sock.end();
      } catch {
        // ignore: destroy below
      }
      this.#closeTimer = setTimeout(() => this.destroy(), graceMs);
    }
    return this.closed;
  }

  /** Destroys the socket immediately (no FIN handshake); pending reads fail with ConnectionClosedError. */
  destroy(): void {
    try {
      this.#sock.destroy();
      if (this.#plain !== this.#sock) this.#plain.destroy();
    } catch {
      // ignore
    }
    this.#closedNow();
  }

  protected pauseInput(): void {
    this.#sock.pause();
  }

  protected resumeInput(): void {
    this.#sock.resume();
  }

  // ---------------------------------------------------------------------------------------------------

  #closedNow(): void {
    clearTimeout(this.#closeTimer);
    this.#closeTimer = undefined;
    this.markClosed();
  }

  async #upgrade(
    side: TlsWrap,
    timeoutMs: number,
    readyReply: string | undefined,
  ): Promise<TlsUpgradeResult> {
    if (this.#isTls) throw new Error("Connection is already using TLS");
    if (this.isReading) throw new Error("Cannot start TLS while a read is pending");
    if (this.isClosed || this.inputEnded) throw new ConnectionClosedError("Connection closed before TLS");
    const plain = this.#sock as net.Socket;
    this.upgrading = true;
    plain.pause();
    this.#detach(plain);
    // CVE-2011-0411: everything received before the handshake is untrusted plaintext; drop it.
    const discardedBytes = this.input.clear();
    let ready: Uint8Array | undefined;
    if (readyReply !== undefined) {
      ready = encoder.encode(readyReply);
      this.bytesOut += ready.length;
    }
    let tlsSock: tls.TLSSocket | undefined;
    try {
      await tlsHandshake(plain, side, timeoutMs, ready, (sock) => {
        tlsSock = sock;
      });
    } catch (err) {
      this.upgrading = false;
      this.#sock = tlsSock ?? plain;
      this.failed(err);
      this.destroy();
      throw err instanceof TlsHandshakeError || err instanceof ConnectionClosedError
        ? err
        : new TlsHandshakeError(`TLS handshake failed: ${errorMessage(err)}`, { cause: err });
    }
    const sock = tlsSock!;
    this.#sock = sock;
    this.#isTls = true;
    this.#tlsInfo = readTlsInfo(sock);
    this.upgrading = false;
    this.#attach(sock);
    if (sock.destroyed) this.#closedNow();
    return { discardedBytes };
  }

  #attach(sock: AnySocket): void {
    sock.on("data", this.#onData);
    sock.on("end", this.#onEnd);
    sock.on("close", this.#onClose);
    sock.on("error", this.#onError);
    this.inputResumed();
    sock.resume();
  }

  #detach(sock: AnySocket): void {
    sock.off("data", this.#onData);
    sock.off("end", this.#onEnd);
    sock.off("close", this.#onClose);
    sock.off("error", this.#onError);
  }
}

/** Strips the IPv4-mapped IPv6 prefix so per-IP limits and logs see `192.0.2.1`, not `::ffff:192.0.2.1`. */
export function normalizeAddress(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
