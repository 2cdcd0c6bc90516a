/**
 * A CRLF line reader and writer over one TCP socket, owning the socket's read buffer for the connection's
 * whole life: across STARTTLS (RFC 3207) and across the ODMR role reversal (RFC 2645 4), where the relay
 * becomes the SMTP client on the SAME socket and the SAME buffer (the customer's 220 may already be here).
 *
 * Only `node:net` / `node:tls` and web standards are used, so the same code runs on Deno, Bun and Node.
 * This file is the socket side: events, pausing, timeouts, writes and closing. The bytes themselves are
 * kept and cut into lines by the pure {@linkcode LineBuffer} (src/net/line_buffer.ts); the TLS handshake
 * is in src/net/tls_upgrade.ts, the limits and option types in src/net/connection_options.ts.
 *
 * @module
 */

import type * as net from "node:net";
import * as tls from "node:tls";
import { isIP } from "node:net";
import { ConnectionClosedError, ReadTimeoutError, TlsHandshakeError } from "./errors.ts";
import {
  DEFAULT_CLOSE_GRACE_MS,
  DEFAULT_MAX_BUFFERED_BYTES,
  DEFAULT_MAX_LINE_LENGTH,
  DEFAULT_READ_TIMEOUT_MS,
  DEFAULT_WRITE_TIMEOUT_MS,
  type LineConnectionOptions,
  type ReadChunkOptions,
  type ReadLineOptions,
  type WriteOptions,
} from "./connection_options.ts";
import { DEFAULT_FLOOD_LIMIT, LineBuffer } from "./line_buffer.ts";
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
export {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  type StartTlsClientOptions,
  type StartTlsServerOptions,
  type TlsInfo,
  type TlsUpgradeResult,
} from "./tls_upgrade.ts";

type AnySocket = net.Socket | tls.TLSSocket;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8");

/**
 * A line-oriented connection over a `net.Socket` or `tls.TLSSocket`.
 *
 * Reads (`readLine`, `readLineBytes`, `readChunk`, `waitForInput`) must not overlap: one reader at a time.
 * Socket errors never escape as uncaught exceptions; they surface as {@linkcode ConnectionClosedError}
 * on the next read or write.
 */
export class LineConnection {
  /** Bytes received from the peer (after TLS decryption), counted as they are buffered. */
  bytesIn = 0;
  /** Bytes handed to the socket for writing (before TLS encryption). */
  bytesOut = 0;
  /** Resolves once the underlying socket has closed (never rejects). */
  readonly closed: Promise<void>;
  /** Remote IP address as reported when the connection was created (`""` if unknown). */
  readonly remoteAddress: string;
  /** Remote port (0 if unknown). */
  readonly remotePort: number;
  /** Local port (0 if unknown). */
  readonly localPort: number;
  /** Local IP address (`""` if unknown). */
  readonly localAddress: string;

  #sock: AnySocket;
  #plain: net.Socket;
  #isTls: boolean;
  #tlsInfo: TlsInfo | null = null;

  /** Unread input (line scanning, chunks for DATA, unread): pure code, src/net/line_buffer.ts. */
  readonly #input: LineBuffer;

  #eof = false;
  #isClosed = false;
  #error: unknown = undefined;
  #pausedByUs = false;
  #upgrading = false;
  #reading = false;
  #wake: (() => void) | undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #resolveClosed!: () => void;

  #maxLineLength: number;
  #maxBuffered: number;
  #readTimeoutMs: number;
  #writeTimeoutMs: number;
  #closeGraceMs: number;

  readonly #onData = (chunk: Uint8Array): void => this.#append(chunk);
  readonly #onEnd = (): void => {
    this.#eof = true;
    this.#notify();
  };
  readonly #onClose = (): void => this.#markClosed();
  readonly #onError = (err: unknown): void => {
    if (this.#error === undefined) this.#error = err;
    this.#eof = true;
    this.#notify();
  };

  /**
   * Wraps a connected socket and starts buffering its input at once (so early talkers are seen).
   * `setNoDelay(true)` is applied: SMTP replies are small and latency-bound (docs/design.md#delivery).
   */
  constructor(socket: AnySocket, options: LineConnectionOptions = {}) {
    this.#sock = socket;
    this.#plain = socket;
    this.#isTls = socket instanceof tls.TLSSocket || (socket as { encrypted?: boolean }).encrypted === true;
    this.remoteAddress = normalizeAddress(socket.remoteAddress ?? "");
    this.remotePort = socket.remotePort ?? 0;
    this.localPort = socket.localPort ?? 0;
    this.localAddress = normalizeAddress(socket.localAddress ?? "");
    this.#maxLineLength = options.maxLineLength ?? DEFAULT_MAX_LINE_LENGTH;
    this.#input = new LineBuffer({ floodLimit: options.floodLimit ?? DEFAULT_FLOOD_LIMIT });
    this.#maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.#readTimeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
    this.#writeTimeoutMs = options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
    this.#closeGraceMs = options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
    this.closed = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
    socket.on("error", noop); // belt and braces: an error must never be uncaught
    try {
      socket.setNoDelay(true);
    } catch {
      // some runtimes throw on a socket that is already closed
    }
    if (socket.destroyed) {
      this.#eof = true;
      this.#markClosed();
    } else {
      this.#attach(socket);
    }
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

  /** Whether the socket has closed (or `destroy()` was called). */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** The negotiated TLS parameters, or `null` on a plaintext connection. */
  tlsInfo(): TlsInfo | null {
    return this.#tlsInfo;
  }

  /** Whether unread input is buffered (early talker, unauthorised pipelining, bytes after ATRN). */
  hasBufferedInput(): boolean {
    return this.#input.hasInput();
  }

  /** Number of unread bytes in the buffer. */
  bufferedByteCount(): number {
    return this.#input.byteCount;
  }

  /**
   * Waits up to `ms` for input. Resolves `true` as soon as any byte is buffered (immediately if some
   * already is), `false` on timeout or if the peer closed without sending. Used for the pre-greeting
   * early-talker check (docs/protocol.md#synchronization).
   */
  async waitForInput(ms: number): Promise<boolean> {
    try {
      return await this.#read(ms, () => (this.hasBufferedInput() ? true : undefined));
    } catch (err) {
      if (err instanceof ReadTimeoutError || err instanceof ConnectionClosedError) return false;
      throw err;
    }
  }

  /**
   * Reads the next line and returns it WITHOUT its CRLF, decoded as UTF-8 (invalid sequences become
   * U+FFFD; use {@linkcode readLineBytes} to see raw octets).
   *
   * Only CRLF ends a line (RFC 5321 2.3.8). Throws:
   * - {@linkcode BareLineEndingError} on a bare LF or CR (bytes up to it consumed; policy: 500 and close);
   * - {@linkcode LineTooLongError} when the line exceeds `maxLength` octets including CRLF; the whole line
   *   has been discarded, the connection can continue;
   * - {@linkcode LineFloodError} when no CRLF comes within the flood limit (send 421 and close);
   * - {@linkcode ReadTimeoutError} when the line did not complete in `timeoutMs`;
   * - {@linkcode ConnectionClosedError} when the peer closed first.
   */
  async readLine(options: ReadLineOptions = {}): Promise<string> {
    return decoder.decode(await this.readLineBytes(options));
  }

  /** Like {@linkcode readLine} but returns the raw octets of the line (without CRLF). */
  readLineBytes(options: ReadLineOptions = {}): Promise<Uint8Array> {
    const maxLength = options.maxLength ?? this.#maxLineLength;
    return this.#read(options.timeoutMs ?? this.#readTimeoutMs, () => this.#input.readLine(maxLength));
  }

  /**
   * Returns the next buffered bytes (at least one, at most `maxBytes`; not necessarily everything that is
   * buffered), waiting for data if none are buffered. Used to stream DATA through a separate decoder; give
   * bytes after the end-of-data back with {@linkcode unread}.
   * Throws {@linkcode ReadTimeoutError} or {@linkcode ConnectionClosedError}.
   *
   * Lifetime: the result belongs to the caller and stays valid for as long as it is kept (nothing in
   * this class writes to it again). To avoid a copy per chunk while streaming a large message,
   * it is usually the runtime's own `'data'` chunk, or a `subarray` of it, rather than a fresh copy; so
   * its `.buffer` may be larger than the result (and holding a small piece keeps that chunk alive).
   */
  readChunk(options: ReadChunkOptions = {}): Promise<Uint8Array> {
    const maxBytes = options.maxBytes ?? Infinity;
    return this.#read(options.timeoutMs ?? this.#readTimeoutMs, () => this.#input.readChunk(maxBytes));
  }

  /**
   * Pushes bytes back to the FRONT of the buffer, to be read before anything else (for example the
   * pipelined command after an end-of-data marker, RFC 2920 3.1).
   */
  unread(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#input.unread(bytes);
    this.#notify();
  }

  /**
   * Writes `data` (strings as UTF-8). Resolves when the socket accepted it, or after `'drain'` when the
   * socket's buffer is full (backpressure). Throws {@linkcode ConnectionClosedError} if the connection is
   * closed, {@linkcode WriteTimeoutError} (after destroying the connection) on timeout.
   */
  write(data: string | Uint8Array, options: WriteOptions = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? this.#writeTimeoutMs;
    if (this.#isClosed || this.#sock.destroyed) {
      return Promise.reject(new ConnectionClosedError("Connection is closed", { cause: this.#error }));
    }
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    this.bytesOut += bytes.length;
    return writeToSocket(this.#sock, bytes, timeoutMs, () => this.destroy());
  }

  /**
   * Writes without waiting (for batching pipelined replies, RFC 2920 3.2); errors surface on the next
   * read or awaited write. Returns `false` when the socket is closed or its buffer is full.
   */
  writeNoWait(data: string | Uint8Array): boolean {
    if (this.#isClosed || this.#sock.destroyed) return false;
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
    if (this.#isClosed) return this.closed;
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
    clearTimeout(this.#closeTimer);
    this.#closeTimer = undefined;
    this.#eof = true;
    try {
      this.#sock.destroy();
      if (this.#plain !== this.#sock) this.#plain.destroy();
    } catch {
      // ignore
    }
    this.#markClosed();
  }

  // ---------------------------------------------------------------------------------------------------

  async #upgrade(
    side: TlsWrap,
    timeoutMs: number,
    readyReply: string | undefined,
  ): Promise<TlsUpgradeResult> {
    if (this.#isTls) throw new Error("Connection is already using TLS");
    if (this.#reading) throw new Error("Cannot start TLS while a read is pending");
    if (this.#isClosed || this.#eof) throw new ConnectionClosedError("Connection closed before TLS");
    const plain = this.#sock as net.Socket;
    this.#upgrading = true;
    plain.pause();
    this.#detach(plain);
    // CVE-2011-0411: everything received before the handshake is untrusted plaintext; drop it.
    const discardedBytes = this.#input.clear();
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
      this.#upgrading = false;
      this.#sock = tlsSock ?? plain;
      this.#eof = true;
      this.#error = err;
      this.destroy();
      throw err instanceof TlsHandshakeError || err instanceof ConnectionClosedError
        ? err
        : new TlsHandshakeError(`TLS handshake failed: ${errorMessage(err)}`, { cause: err });
    }
    const sock = tlsSock!;
    this.#sock = sock;
    this.#isTls = true;
    this.#tlsInfo = readTlsInfo(sock);
    this.#upgrading = false;
    this.#attach(sock);
    if (sock.destroyed) this.#markClosed();
    return { discardedBytes };
  }

  #attach(sock: AnySocket): void {
    sock.on("data", this.#onData);
    sock.on("end", this.#onEnd);
    sock.on("close", this.#onClose);
    sock.on("error", this.#onError);
    this.#pausedByUs = false;
    sock.resume();
  }

  #detach(sock: AnySocket): void {
    sock.off("data", this.#onData);
    sock.off("end", this.#onEnd);
    sock.off("close", this.#onClose);
    sock.off("error", this.#onError);
  }

  /** A `'data'` chunk: queued as it is (the runtime hands each event a fresh buffer), not copied. */
  #append(chunk: Uint8Array): void {
    const n = chunk.length;
    if (n === 0) return;
    this.bytesIn += n;
    this.#input.push(chunk);
    if (this.#input.byteCount >= this.#maxBuffered && !this.#pausedByUs) {
      this.#pausedByUs = true;
      this.#sock.pause();
    }
    this.#notify();
  }

  async #read<T>(timeoutMs: number, attempt: () => T | undefined): Promise<T> {
    if (this.#reading) throw new Error("Concurrent reads on one connection are not allowed");
    if (this.#upgrading) throw new Error("Cannot read while TLS is starting");
    this.#reading = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    try {
      for (;;) {
        const result = attempt();
        if (result !== undefined) return result;
        if (this.#eof || this.#isClosed) {
          throw new ConnectionClosedError(
            this.#error === undefined
              ? "Connection closed by peer"
              : `Connection failed: ${errorMessage(this.#error)}`,
            { cause: this.#error },
          );
        }
        if (timedOut) throw new ReadTimeoutError(timeoutMs);
        if (timer === undefined && Number.isFinite(timeoutMs)) {
          timer = setTimeout(() => {
            timedOut = true;
            this.#notify();
          }, timeoutMs);
        }
        if (this.#pausedByUs) {
          this.#pausedByUs = false;
          this.#sock.resume();
        }
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
      }
    } finally {
      clearTimeout(timer);
      this.#wake = undefined;
      this.#reading = false;
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #markClosed(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#eof = true;
    clearTimeout(this.#closeTimer);
    this.#closeTimer = undefined;
    this.#notify();
    this.#resolveClosed();
  }
}

/** Strips the IPv4-mapped IPv6 prefix so per-IP limits and logs see `192.0.2.1`, not `::ffff:192.0.2.1`. */
export function normalizeAddress(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
