/**
 * A CRLF line reader and writer over one TCP socket, owning the socket's read buffer for the connection's
 * whole life: across STARTTLS (RFC 3207) and across the ODMR role reversal (RFC 2645 4), where the relay
 * becomes the SMTP client on the SAME socket and the SAME buffer (the customer's 220 may already be here).
 *
 * Only `node:net` / `node:tls` and web standards are used, so the same code runs on Deno, Bun and Node.
 *
 * @module
 */

import type * as net from "node:net";
import * as tls from "node:tls";
import { isIP } from "node:net";
import {
  BareLineEndingError,
  ConnectionClosedError,
  LineFloodError,
  LineTooLongError,
  ReadTimeoutError,
  TlsHandshakeError,
  WriteTimeoutError,
} from "./errors.ts";

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

const CR = 0x0d;
const LF = 0x0a;

/** RFC 5321 4.5.3.1.4: a command line is at most 512 octets including the CRLF. */
export const DEFAULT_MAX_LINE_LENGTH = 512;
/** Hard cap on a line with no CRLF before the connection is given up (PROTOCOL.md 7, input 4). */
export const DEFAULT_FLOOD_LIMIT = 64 * 1024;
/** Default cap on buffered input before the socket is paused (flood limit plus one long AUTH line). */
export const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 + 16 * 1024;
/** RFC 5321 4.5.3.2.7: the server waits at least 5 minutes for the next command. */
export const DEFAULT_READ_TIMEOUT_MS = 5 * 60 * 1000;
/** RFC 5321 4.5.3.2.5: 3 minutes for each data block write to complete. */
export const DEFAULT_WRITE_TIMEOUT_MS = 3 * 60 * 1000;
/** Default time allowed for a TLS handshake. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30 * 1000;
/** Default time between `end()` and `destroy()` in {@linkcode LineConnection.close}. */
export const DEFAULT_CLOSE_GRACE_MS = 2000;

/** Limits and defaults of one {@linkcode LineConnection}. All fields are optional. */
export interface LineConnectionOptions {
  /** Default `maxLength` for {@linkcode LineConnection.readLine}, octets including CRLF. Default 512. */
  maxLineLength?: number;
  /** A line with no CRLF within this many octets raises {@linkcode LineFloodError}. Default 64 KiB. */
  floodLimit?: number;
  /** The socket is paused while at least this many bytes are buffered. Default 80 KiB. */
  maxBufferedBytes?: number;
  /** Default read timeout in milliseconds. Default 5 minutes (RFC 5321 4.5.3.2.7). */
  readTimeoutMs?: number;
  /** Default write timeout in milliseconds. Default 3 minutes (RFC 5321 4.5.3.2.5). */
  writeTimeoutMs?: number;
  /** Time between `end()` and `destroy()` in `close()`, in milliseconds. Default 2000. */
  closeGraceMs?: number;
}

/** Options of {@linkcode LineConnection.readLine}. */
export interface ReadLineOptions {
  /** Maximum line length in octets INCLUDING the CRLF, as RFC 5321 4.5.3.1 counts (512, 1000, 12288). */
  maxLength?: number;
  /** Read timeout in milliseconds (whole line); `Infinity` disables it. */
  timeoutMs?: number;
}

/** Options of {@linkcode LineConnection.readChunk}. */
export interface ReadChunkOptions {
  /** Read timeout in milliseconds; `Infinity` disables it. */
  timeoutMs?: number;
  /** Return at most this many bytes (the rest stays buffered). Default: everything buffered. */
  maxBytes?: number;
}

/** Options of {@linkcode LineConnection.write}. */
export interface WriteOptions {
  /** Write timeout in milliseconds; on expiry the connection is destroyed. */
  timeoutMs?: number;
}

/** Options of {@linkcode LineConnection.startTlsServer}. */
export interface StartTlsServerOptions {
  /**
   * The `220 Ready to start TLS` reply (with CRLF). Strongly recommended: it is written AFTER the plaintext
   * reader is detached and the socket paused, so the ClientHello can never land in the plaintext buffer.
   * If omitted, the caller must have written it already (and a fast client's ClientHello may race it).
   */
  readyReply?: string;
  /** Handshake timeout in milliseconds. Default 30 s. */
  handshakeTimeoutMs?: number;
}

/** Options of {@linkcode LineConnection.startTlsClient}. */
export interface StartTlsClientOptions {
  /** Server name for SNI and certificate verification (SNI is not sent for IP addresses, RFC 6066 3). */
  servername?: string;
  /** Reject a certificate that does not verify. Opportunistic STARTTLS to MTAs usually passes `false`. */
  rejectUnauthorized?: boolean;
  /** Extra trust anchors in PEM. */
  ca?: string | string[];
  /** Handshake timeout in milliseconds. Default 30 s. */
  handshakeTimeoutMs?: number;
}

/** What a STARTTLS upgrade did. */
export interface TlsUpgradeResult {
  /**
   * Plaintext bytes that were buffered after the STARTTLS command (server) or the 220 reply (client) and
   * were thrown away unread (CVE-2011-0411, RFC 3207 4.2). Non-zero means the peer pipelined across TLS.
   */
  discardedBytes: number;
}

/** The negotiated TLS parameters, for logs and the Received header (RFC 3848 ESMTPS). */
export interface TlsInfo {
  /** Protocol version such as `"TLSv1.3"`, or `null` when the runtime does not report it. */
  protocol: string | null;
  /** Cipher suite name, or `null` when the runtime does not report it. */
  cipher: string | null;
  /** Whether the peer certificate verified (client side; `false` on the server side). */
  authorized: boolean;
}

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

  /**
   * Line buffer: unread bytes are `#buf[#start..#end)`, and they come BEFORE everything in `#queue`.
   * Chunks from the socket are queued as they arrive (no copy) and only copied in here when a line is
   * read; `readChunk` hands queued chunks out directly, so streaming DATA copies nothing.
   */
  #buf = new Uint8Array(4096);
  #start = 0;
  #end = 0;
  /** Chunks received but not yet copied into `#buf`, in order; the runtime allocates each one afresh. */
  #queue: Uint8Array[] = [];
  #queueBytes = 0;
  /** Bytes after #start already scanned for a line end (none found). */
  #scanned = 0;
  /** Inside an over-long line: its bytes are dropped until the next CRLF. */
  #discarding = false;
  #discardedCount = 0;

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
  #floodLimit: number;
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
   * `setNoDelay(true)` is applied: SMTP replies are small and latency-bound (DESIGN 6).
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
    this.#floodLimit = options.floodLimit ?? DEFAULT_FLOOD_LIMIT;
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
      (plain) => new tls.TLSSocket(plain, { isServer: true, secureContext }),
      "secure",
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
    return this.#end > this.#start || this.#queueBytes > 0;
  }

  /** Number of unread bytes in the buffer. */
  bufferedByteCount(): number {
    return this.#end - this.#start + this.#queueBytes;
  }

  /**
   * Waits up to `ms` for input. Resolves `true` as soon as any byte is buffered (immediately if some
   * already is), `false` on timeout or if the peer closed without sending. Used for the pre-greeting
   * early-talker check (PROTOCOL.md 7, input 6).
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
    return this.#read(options.timeoutMs ?? this.#readTimeoutMs, () => {
      this.#fill();
      return this.#scanLine(maxLength);
    });
  }

  /**
   * Returns the next buffered bytes (at least one, at most `maxBytes`; not necessarily everything that is
   * buffered), waiting for data if none are buffered. Used to stream DATA through a separate decoder; give
   * bytes after the end-of-data back with {@linkcode unread}.
   * Throws {@linkcode ReadTimeoutError} or {@linkcode ConnectionClosedError}.
   *
   * Lifetime: the result belongs to the caller and stays valid for as long as it is kept (nothing in
   * this class writes to it again). To avoid a copy per chunk while streaming a large message (issue 3),
   * it is usually the runtime's own `'data'` chunk, or a `subarray` of it, rather than a fresh copy; so
   * its `.buffer` may be larger than the result (and holding a small piece keeps that chunk alive).
   */
  readChunk(options: ReadChunkOptions = {}): Promise<Uint8Array> {
    const maxBytes = options.maxBytes ?? Infinity;
    return this.#read(options.timeoutMs ?? this.#readTimeoutMs, () => {
      if (maxBytes <= 0) return undefined;
      if (this.#end > this.#start) {
        // Bytes already copied into the line buffer (after readLine, or unread): a copy of those.
        const n = Math.min(this.#end - this.#start, maxBytes);
        const out = this.#buf.slice(this.#start, this.#start + n);
        this.#consume(n);
        return out;
      }
      const head = this.#queue[0];
      if (head === undefined) return undefined;
      if (head.length <= maxBytes) {
        this.#queue.shift();
        this.#queueBytes -= head.length;
        return head;
      }
      this.#queue[0] = head.subarray(maxBytes);
      this.#queueBytes -= maxBytes;
      return head.subarray(0, maxBytes);
    });
  }

  /**
   * Pushes bytes back to the FRONT of the buffer, to be read before anything else (for example the
   * pipelined command after an end-of-data marker, RFC 2920 3.1).
   */
  unread(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.#start === this.#end && bytes.length <= this.#buf.length) {
      // Empty line buffer (its bytes all read; queued chunks come after it): put them at its end.
      this.#start = this.#buf.length - bytes.length;
      this.#end = this.#buf.length;
      this.#buf.set(bytes, this.#start);
    } else if (this.#start >= bytes.length) {
      this.#start -= bytes.length;
      this.#buf.set(bytes, this.#start);
    } else {
      const rest = this.#buf.subarray(this.#start, this.#end);
      const next = new Uint8Array(Math.max(this.#buf.length, (bytes.length + rest.length) * 2));
      next.set(bytes, 0);
      next.set(rest, bytes.length);
      this.#buf = next;
      this.#start = 0;
      this.#end = bytes.length + rest.length;
    }
    this.#scanned = 0;
    this.#discarding = false;
    this.#discardedCount = 0;
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
    const sock = this.#sock;
    this.bytesOut += bytes.length;
    let ok: boolean;
    try {
      ok = sock.write(bytes);
    } catch (err) {
      return Promise.reject(new ConnectionClosedError("Write failed", { cause: err }));
    }
    if (ok) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = (err?: Error): void => {
        clearTimeout(timer);
        sock.off("drain", onDrain);
        sock.off("close", onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = (): void => done();
      const onClose = (): void => done(new ConnectionClosedError("Connection closed while writing"));
      sock.on("drain", onDrain);
      sock.on("close", onClose);
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          this.destroy();
          done(new WriteTimeoutError(timeoutMs));
        }, timeoutMs);
      }
    });
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
   * Server side of STARTTLS (RFC 3207 4), the pattern measured to work on Deno, Bun and Node (DESIGN 2):
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
      (plain) => new tls.TLSSocket(plain, { isServer: true, secureContext }),
      "secure",
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
    const servername = options.servername;
    return this.#upgrade(
      (plain) => {
        const opts: tls.ConnectionOptions = {
          socket: plain,
          rejectUnauthorized: options.rejectUnauthorized ?? true,
          minVersion: "TLSv1.2",
        };
        if (servername !== undefined) {
          opts.host = servername;
          if (isIP(servername) === 0) opts.servername = servername;
        }
        if (options.ca !== undefined) opts.ca = options.ca;
        return tls.connect(opts);
      },
      "secureConnect",
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
    wrap: (plain: net.Socket) => tls.TLSSocket,
    secureEvent: "secure" | "secureConnect",
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
    const discardedBytes = this.#end - this.#start + this.#queueBytes;
    this.#start = this.#end = 0;
    this.#queue = [];
    this.#queueBytes = 0;
    this.#scanned = 0;
    this.#discarding = false;
    this.#discardedCount = 0;

    let tlsSock: tls.TLSSocket | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const cleanup: Array<() => void> = [];
    try {
      if (readyReply !== undefined) {
        const bytes = encoder.encode(readyReply);
        this.bytesOut += bytes.length;
        await new Promise<void>((resolve, reject) => {
          const onClose = (): void => reject(new ConnectionClosedError("Connection closed before TLS"));
          plain.once("close", onClose);
          cleanup.push(() => plain.off("close", onClose));
          plain.write(
            bytes,
            (err) => (err ? reject(new ConnectionClosedError("Write failed", { cause: err })) : resolve()),
          );
        });
      }
      const sock = wrap(plain);
      tlsSock = sock;
      sock.on("error", noop);
      await new Promise<void>((resolve, reject) => {
        const onSecure = (): void => resolve();
        const onError = (err: unknown): void =>
          reject(new TlsHandshakeError(`TLS handshake failed: ${errorMessage(err)}`, { cause: err }));
        const onClose = (): void => reject(new TlsHandshakeError("Connection closed during TLS handshake"));
        sock.once(secureEvent, onSecure);
        sock.once("error", onError);
        sock.once("close", onClose);
        cleanup.push(() => {
          sock.off(secureEvent, onSecure);
          sock.off("error", onError);
          sock.off("close", onClose);
        });
        if (Number.isFinite(timeoutMs)) {
          timer = setTimeout(
            () => reject(new TlsHandshakeError(`TLS handshake timed out after ${timeoutMs} ms`)),
            timeoutMs,
          );
        }
      });
    } catch (err) {
      clearTimeout(timer);
      for (const f of cleanup) f();
      this.#upgrading = false;
      this.#sock = tlsSock ?? plain;
      this.#eof = true;
      this.#error = err;
      this.destroy();
      throw err instanceof TlsHandshakeError || err instanceof ConnectionClosedError
        ? err
        : new TlsHandshakeError(`TLS handshake failed: ${errorMessage(err)}`, { cause: err });
    }
    clearTimeout(timer);
    for (const f of cleanup) f();
    const sock = tlsSock;
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
    this.#queue.push(chunk);
    this.#queueBytes += n;
    if (this.#end - this.#start + this.#queueBytes >= this.#maxBuffered && !this.#pausedByUs) {
      this.#pausedByUs = true;
      this.#sock.pause();
    }
    this.#notify();
  }

  /** Copies every queued chunk into the line buffer (line reads scan `#buf` only). */
  #fill(): void {
    if (this.#queueBytes === 0) return;
    for (const chunk of this.#queue) this.#copyIn(chunk);
    this.#queue = [];
    this.#queueBytes = 0;
  }

  #copyIn(chunk: Uint8Array): void {
    const n = chunk.length;
    if (this.#end + n > this.#buf.length) {
      const live = this.#end - this.#start;
      if (live + n <= this.#buf.length && this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
      } else {
        let size = this.#buf.length;
        while (size < live + n) size *= 2;
        const next = new Uint8Array(size);
        next.set(this.#buf.subarray(this.#start, this.#end), 0);
        this.#buf = next;
      }
      this.#start = 0;
      this.#end = live;
    }
    this.#buf.set(chunk, this.#end);
    this.#end += n;
  }

  #consume(n: number): void {
    this.#start += n;
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  #resetLineState(): void {
    this.#scanned = 0;
    this.#discarding = false;
    this.#discardedCount = 0;
  }

  /** One attempt at a line; `undefined` means "need more bytes". */
  #scanLine(maxLength: number): Uint8Array | undefined {
    const buf = this.#buf;
    const start = this.#start;
    const end = this.#end;
    let i = start + this.#scanned;
    while (i < end) {
      const c = buf[i];
      if (c === LF) {
        // RFC 5321 2.3.8: a bare LF is not a line end (and must not be accepted as one: smuggling).
        this.#consume(i + 1 - start);
        this.#resetLineState();
        throw new BareLineEndingError("LF");
      }
      if (c === CR) {
        if (i + 1 >= end) break; // the LF may still come
        if (buf[i + 1] !== LF) {
          this.#consume(i + 1 - start);
          this.#resetLineState();
          throw new BareLineEndingError("CR");
        }
        const total = i + 2 - start;
        if (this.#discarding) {
          const length = this.#discardedCount + total;
          this.#consume(total);
          this.#resetLineState();
          throw new LineTooLongError(length, maxLength);
        }
        if (total > maxLength) {
          this.#consume(total);
          this.#resetLineState();
          throw new LineTooLongError(total, maxLength);
        }
        const line = buf.slice(start, i);
        this.#consume(total);
        this.#scanned = 0;
        return line;
      }
      i++;
    }
    const pending = i - start; // scanned octets without a line end (a trailing CR is excluded)
    if (this.#discarding || pending + 2 > maxLength) {
      // The line cannot fit: drop what we have instead of buffering it (PROTOCOL.md 7, input 4).
      this.#discarding = true;
      this.#discardedCount += pending;
      this.#consume(pending);
      this.#scanned = 0;
      if (this.#discardedCount > this.#floodLimit) {
        this.#resetLineState();
        throw new LineFloodError(this.#floodLimit);
      }
    } else {
      this.#scanned = pending;
    }
    return undefined;
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

function readTlsInfo(sock: tls.TLSSocket): TlsInfo {
  let protocol: string | null = null;
  let cipher: string | null = null;
  try {
    protocol = sock.getProtocol?.() ?? null;
  } catch {
    // not implemented by this runtime
  }
  try {
    cipher = sock.getCipher?.()?.name ?? null;
  } catch {
    // not implemented by this runtime
  }
  return { protocol, cipher, authorized: sock.authorized === true };
}

/** Strips the IPv4-mapped IPv6 prefix so per-IP limits and logs see `192.0.2.1`, not `::ffff:192.0.2.1`. */
export function normalizeAddress(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function noop(): void {}
