/**
 * The reading half every {@linkcode Connection} shares: received bytes go into a pure
 * {@linkcode LineBuffer}; `readLine`, `readChunk` and `waitForInput` wait for them with a deadline, one
 * reader at a time; end of input, failure and close wake the reader. A transport (socket or in-memory
 * pipe) subclasses it, feeds `received()`, and implements writing, TLS and closing.
 *
 * @module
 */

import type * as tls from "node:tls";
import type { Connection } from "./connection.ts";
import {
  DEFAULT_MAX_BUFFERED_BYTES,
  DEFAULT_MAX_LINE_LENGTH,
  DEFAULT_READ_TIMEOUT_MS,
  type LineConnectionOptions,
  type ReadChunkOptions,
  type ReadLineOptions,
  type WriteOptions,
} from "./connection_options.ts";
import { ConnectionClosedError, ReadTimeoutError } from "./errors.ts";
import { DEFAULT_FLOOD_LIMIT, LineBuffer } from "./line_buffer.ts";
import {
  errorMessage,
  type StartTlsClientOptions,
  type StartTlsServerOptions,
  type TlsInfo,
  type TlsUpgradeResult,
} from "./tls_upgrade.ts";

const decoder = new TextDecoder("utf-8");

/** Who the two ends are, as the transport reports them. */
export interface PeerInfo {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}

/** The shared reader; see the module documentation. */
export abstract class BufferedConnection implements Connection {
  bytesIn = 0;
  bytesOut = 0;
  readonly closed: Promise<void>;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;

  /** Unread input: pure code, src/net/line_buffer.ts. */
  protected readonly input: LineBuffer;
  /** Set while a transport swaps itself (STARTTLS); a read then is a bug. */
  protected upgrading = false;

  #eof = false;
  #isClosed = false;
  #error: unknown = undefined;
  #pausedByUs = false;
  #reading = false;
  #wake: (() => void) | undefined;
  #resolveClosed!: () => void;

  readonly #maxLineLength: number;
  readonly #maxBuffered: number;
  readonly #readTimeoutMs: number;

  protected constructor(peer: PeerInfo, options: LineConnectionOptions) {
    this.remoteAddress = peer.remoteAddress;
    this.remotePort = peer.remotePort;
    this.localAddress = peer.localAddress;
    this.localPort = peer.localPort;
    this.#maxLineLength = options.maxLineLength ?? DEFAULT_MAX_LINE_LENGTH;
    this.input = new LineBuffer({ floodLimit: options.floodLimit ?? DEFAULT_FLOOD_LIMIT });
    this.#maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.#readTimeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
    this.closed = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  abstract get isTls(): boolean;
  abstract tlsInfo(): TlsInfo | null;
  abstract write(data: string | Uint8Array, options?: WriteOptions): Promise<void>;
  abstract writeNoWait(data: string | Uint8Array): boolean;
  abstract startTlsServer(
    secureContext: tls.SecureContext,
    options?: StartTlsServerOptions,
  ): Promise<TlsUpgradeResult>;
  abstract startTlsClient(options?: StartTlsClientOptions): Promise<TlsUpgradeResult>;
  abstract close(graceMs?: number): Promise<void>;
  abstract destroy(): void;

  /** Stops the transport delivering input (the buffer is full). */
  protected abstract pauseInput(): void;
  /** Lets the transport deliver input again (a reader is waiting). */
  protected abstract resumeInput(): void;

  /** Whether the connection has closed (or `destroy()` was called). */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Whether the peer has ended its input (or the connection failed or closed). */
  protected get inputEnded(): boolean {
    return this.#eof;
  }

  /** Whether a read is waiting (STARTTLS must not start under it). */
  protected get isReading(): boolean {
    return this.#reading;
  }

  hasBufferedInput(): boolean {
    return this.input.hasInput();
  }

  bufferedByteCount(): number {
    return this.input.byteCount;
  }

  /**
   * Resolves `true` as soon as any byte is buffered (immediately if some already is), `false` on timeout
   * or if the peer closed without sending. Used for the pre-greeting early-talker check
   * (docs/protocol.md#synchronization).
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
   * - `BareLineEndingError` on a bare LF or CR (bytes up to it consumed; policy: 500 and close);
   * - `LineTooLongError` when the line exceeds `maxLength` octets including CRLF; the whole line
   *   has been discarded, the connection can continue;
   * - `LineFloodError` when no CRLF comes within the flood limit (send 421 and close);
   * - {@linkcode ReadTimeoutError} when the line did not complete in `timeoutMs`;
   * - {@linkcode ConnectionClosedError} when the peer closed first.
   */
  async readLine(options: ReadLineOptions = {}): Promise<string> {
    return decoder.decode(await this.readLineBytes(options));
  }

  /** Like {@linkcode readLine} but returns the raw octets of the line (without CRLF). */
  readLineBytes(options: ReadLineOptions = {}): Promise<Uint8Array> {
    const maxLength = options.maxLength ?? this.#maxLineLength;
    return this.#read(options.timeoutMs ?? this.#readTimeoutMs, () => this.input.readLine(maxLength));
  }

  /**
   * Returns the next buffered bytes (at least one, at most `maxBytes`; not necessarily everything that is
   * buffered), waiting for data if none are buffered. Used to stream DATA through a separate decoder; give
   * bytes after the end-of-data back with {@linkcode unread}.
   * Throws {@linkcode ReadTimeoutError} or {@linkcode ConnectionClosedError}.
   *
   * Lifetime: the result belongs to the caller and stays valid for as long as it is kept (nothing here
   * writes to it again). To avoid a copy per chunk while streaming a large message it is usually the
   * transport's own chunk, or a `subarray` of it, so its `.buffer` may be larger than the result.
   */
  readChunk(options: ReadChunkOptions = {}): Promise<Uint8Array> {
    const maxBytes = options.maxBytes ?? Infinity;
    return this.#read(options.timeoutMs ?? this.#readTimeoutMs, () => this.input.readChunk(maxBytes));
  }

  /**
   * Pushes bytes back to the FRONT of the buffer, to be read before anything else (for example the
   * pipelined command after an end-of-data marker, RFC 2920 3.1).
   */
  unread(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.input.unread(bytes);
    this.#notify();
  }

  /** A chunk from the transport: queued as it is (each one is a fresh buffer), not copied. */
  protected received(chunk: Uint8Array): void {
    const n = chunk.length;
    if (n === 0) return;
    this.bytesIn += n;
    this.input.push(chunk);
    if (this.input.byteCount >= this.#maxBuffered && !this.#pausedByUs) {
      this.#pausedByUs = true;
      this.pauseInput();
    }
    this.#notify();
  }

  /** The peer ended its input (FIN). */
  protected endOfInput(): void {
    this.#eof = true;
    this.#notify();
  }

  /** The transport failed; the first error is kept as the cause of what readers see. */
  protected failed(err: unknown): void {
    if (this.#error === undefined) this.#error = err;
    this.#eof = true;
    this.#notify();
  }

  /** The transport has closed: readers wake, `closed` resolves. Idempotent. */
  protected markClosed(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#eof = true;
    this.#notify();
    this.#resolveClosed();
  }

  /** The error a write on a closed connection rejects with. */
  protected closedError(): ConnectionClosedError {
    return new ConnectionClosedError("Connection is closed", { cause: this.#error });
  }

  /** The input pause was lifted by the transport itself (a new socket after STARTTLS). */
  protected inputResumed(): void {
    this.#pausedByUs = false;
  }

  async #read<T>(timeoutMs: number, attempt: () => T | undefined): Promise<T> {
    if (this.#reading) throw new Error("Concurrent reads on one connection are not allowed");
    if (this.upgrading) throw new Error("Cannot read while TLS is starting");
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
          this.resumeInput();
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
}
