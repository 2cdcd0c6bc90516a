/**
 * The read buffer of a line-oriented connection, as pure code over byte arrays: no socket, no timer.
 * {@linkcode LineBuffer} holds the bytes received and not yet read, cuts CRLF lines out of them with the
 * SMTP rules (only CRLF ends a line, RFC 5321 2.3.8; a line has a maximum length, 4.5.3.1), hands out raw
 * chunks for DATA, and takes bytes back. `LineConnection` (src/net/line_connection.ts) feeds it from
 * the socket; test/net/line_buffer_test.ts drives it with byte arrays.
 *
 * {@linkcode LineSplitter} is the writing side's counterpart: it cuts canonical CRLF content into whole
 * lines so each can go out on its own (src/client/body_writer.ts).
 *
 * @module
 */

import { BareLineEndingError, LineFloodError, LineTooLongError } from "./errors.ts";

const CR = 0x0d;
const LF = 0x0a;

/** Hard cap on a line with no CRLF before the connection is given up (docs/protocol.md#line-limits). */
export const DEFAULT_FLOOD_LIMIT = 64 * 1024;

/** Options of {@linkcode LineBuffer}. */
export interface LineBufferOptions {
  /** A line with no CRLF within this many octets raises {@linkcode LineFloodError}. Default 64 KiB. */
  floodLimit?: number;
}

/**
 * Unread input of one connection.
 *
 * Unread bytes are `#buf[#start..#end)`, and they come BEFORE everything in `#queue`. Chunks pushed in
 * are queued as they are (no copy) and only copied into `#buf` when a line is read; `readChunk` hands
 * queued chunks out directly, so streaming DATA copies nothing.
 */
export class LineBuffer {
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
  readonly #floodLimit: number;

  /** An empty buffer. */
  constructor(options: LineBufferOptions = {}) {
    this.#floodLimit = options.floodLimit ?? DEFAULT_FLOOD_LIMIT;
  }

  /** Number of unread bytes. */
  get byteCount(): number {
    return this.#end - this.#start + this.#queueBytes;
  }

  /** Whether any unread byte is buffered. */
  hasInput(): boolean {
    return this.#end > this.#start || this.#queueBytes > 0;
  }

  /**
   * Appends received bytes. The chunk is kept as it is, not copied: the caller must not write to it again
   * (a socket's `'data'` event hands each chunk out afresh).
   */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#queue.push(chunk);
    this.#queueBytes += chunk.length;
  }

  /**
   * The next complete line WITHOUT its CRLF (a copy), or `undefined` when more bytes are needed. Throws
   * {@linkcode BareLineEndingError} on a bare LF or CR (bytes up to it consumed);
   * {@linkcode LineTooLongError} when the line exceeds `maxLength` octets including CRLF (the whole line
   * is consumed, reading can go on); {@linkcode LineFloodError} when no CRLF came within the flood limit.
   * An over-long line is dropped as it arrives, never buffered whole.
   */
  readLine(maxLength: number): Uint8Array | undefined {
    this.#fill();
    return this.#scanLine(maxLength);
  }

  /**
   * The next unread bytes (at least one, at most `maxBytes`), or `undefined` when none are buffered.
   * Usually a queued chunk itself, or a `subarray` of it, rather than a fresh copy: its `.buffer` may be
   * larger than the result, and nothing here writes to it again.
   */
  readChunk(maxBytes = Infinity): Uint8Array | undefined {
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
  }

  /**
   * Pushes bytes back to the FRONT of the buffer, to be read before anything else (for example the
   * pipelined command after an end-of-data marker, RFC 2920 3.1). A line being scanned starts afresh.
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
    this.#resetLineState();
  }

  /** Drops every unread byte (before a TLS handshake, CVE-2011-0411) and returns how many there were. */
  clear(): number {
    const dropped = this.byteCount;
    this.#start = this.#end = 0;
    this.#queue = [];
    this.#queueBytes = 0;
    this.#resetLineState();
    return dropped;
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
      // The line cannot fit: drop what we have instead of buffering it (docs/protocol.md#line-limits).
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
}

/** Splits canonical CRLF content into whole lines (LF included), carrying a partial line over. */
export class LineSplitter {
  #carry: Uint8Array | null = null;

  /** The complete lines in `carry + data`; a trailing partial line is kept for the next call. */
  push(data: Uint8Array): Uint8Array[] {
    let buf = data;
    if (this.#carry !== null) {
      buf = new Uint8Array(this.#carry.length + data.length);
      buf.set(this.#carry);
      buf.set(data, this.#carry.length);
      this.#carry = null;
    }
    const out: Uint8Array[] = [];
    let start = 0;
    for (let lf = buf.indexOf(LF); lf !== -1; lf = buf.indexOf(LF, start)) {
      out.push(buf.subarray(start, lf + 1));
      start = lf + 1;
    }
    if (start < buf.length) this.#carry = buf.slice(start);
    return out;
  }

  /** The partial line left over (none for canonical content), or `null`. */
  rest(): Uint8Array | null {
    const rest = this.#carry;
    this.#carry = null;
    return rest;
  }
}
