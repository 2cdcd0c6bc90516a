/**
 * Smuggling-safe streaming decoder for the DATA phase (server side).
 *
 * Policy (docs/protocol.md#bare-line-endings, #line-limits; RFC 5321 2.3.8, 4.1.1.4, 4.5.2):
 * - End of data is recognised ONLY on the raw octets CR LF "." CR LF, checked before any
 *   normalisation. The start of the data counts as following a CRLF, so an immediate ".\r\n" is an
 *   empty message. `\n.\r\n`, `\n.\n`, `\r\n.\n` and `\r.\r\n` are NOT end of data.
 * - A bare LF or bare CR anywhere (i.e. an LF not preceded by CR, or a CR not followed by LF) is
 *   REJECTED: the reader keeps consuming until the genuine CRLF.CRLF, flags it, and the caller answers
 *   `550 5.6.0` (see {@link dataRejection}). The bytes after a fake terminator are body, never commands.
 *   Bare CR / LF are passed through unchanged in the decoded output, which is discarded anyway.
 * - Dot-unstuffing (RFC 5321 4.5.2): a line starting with "." loses that first "."; the terminator
 *   line "." alone ends the data.
 * - Size (RFC 1870 3): decoded octets, i.e. everything after the 354 including CRLFs, excluding the
 *   final ".\r\n" and the stuffing dots. Past `maxSize` the reader stops emitting body but keeps
 *   scanning for the end so the client can be answered `552` in sync.
 * - Line length (RFC 5321 4.5.3.1.6): decoded octets of a line including its CRLF, stuffing dot not
 *   counted; over `maxLineLength` is flagged.
 * - NUL and 8-bit octets are flagged (RFC 6152 forbids NUL even with 8BITMIME).
 * - A hard cap on raw octets: past it the reader reports "abort" and the caller sends 421 and closes.
 *
 * Memory: at most two held octets between calls (a pending CR, or a line-start "." and CR); each call
 * returns at most `chunk.length + 1` decoded octets, written into ONE output buffer that the reader
 * reuses (grown to the largest chunk seen), so streaming a large message allocates nothing per chunk
 * Nothing accumulates.
 *
 * Lifetime: `body` from {@link DataReader.push} is a view of that reused buffer and is valid only until
 * the next `push` on the same reader; consume it (write it to the spool, scan it) or copy it first.
 * `leftover` is a view of the chunk passed in, so it lives as long as that chunk does.
 *
 * @module
 */

import {
  C550BareLineEndingInData,
  C552TooBig,
  C554DataLineTooLong,
  C554EightBitWithout8BitMime,
  C554NulInData,
  type Reply,
} from "./reply_codes.ts";

/** Limits for {@link DataReader}. */
export interface DataReaderOptions {
  /** Largest accepted message in RFC 1870 octets; beyond it body output stops. */
  maxSize: number;
  /** Longest line including CRLF; default 1000 (RFC 5321 4.5.3.1.6). */
  maxLineLength?: number;
  /** Raw octets after which the reader aborts; default `2 * maxSize + 1 MiB`. */
  hardByteCap?: number;
}

/** What happened during one {@link DataReader.push}. */
export type DataReaderStatus = "more" | "done" | "abort";

/** Result of one {@link DataReader.push}. */
export interface DataReaderResult {
  /** "more": feed the next chunk; "done": CRLF.CRLF seen; "abort": hard cap passed, send 421 and close. */
  status: DataReaderStatus;
  /**
   * Decoded body octets from this chunk (possibly empty; empty once the size cap is passed). A view of
   * the reader's reused output buffer: valid only until the next {@link DataReader.push}.
   */
  body: Uint8Array;
  /**
   * On "done": the octets after the terminator, i.e. the next pipelined command(s); a view of the pushed
   * chunk (no copy). Else empty.
   */
  leftover: Uint8Array;
}

/** Counters and flags gathered while reading. */
export interface DataStats {
  /** RFC 1870 size: decoded octets, excluding stuffing dots and the terminator. */
  size: number;
  /** Raw octets consumed, including stuffing dots and the terminator. */
  rawBytes: number;
  /** An LF not preceded by CR was seen. */
  bareLf: boolean;
  /** A CR not followed by LF was seen. */
  bareCr: boolean;
  /** A NUL octet was seen. */
  nul: boolean;
  /** An octet >= 0x80 was seen. */
  eightBit: boolean;
  /** Longest decoded line including its CRLF. */
  longestLine: number;
  /** Some line was longer than `maxLineLength`. */
  lineTooLong: boolean;
  /** `size` went past `maxSize`. */
  sizeExceeded: boolean;
}

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const EMPTY = new Uint8Array(0);

// Position relative to the raw stream. "Held" octets are not emitted yet because the next octet
// decides what they mean.
const LINE_START = 0; // after CRLF, or at the very start
const MID_LINE = 1;
const CR_HELD = 2; // a CR that may start CRLF
const DOT_HELD = 3; // "." at line start: stuffing, or the start of the terminator
const DOT_CR_HELD = 4; // ".\r" at line start: the terminator if LF follows
const DONE = 5;
const ABORTED = 6;

/** Streaming DATA decoder; see the module documentation for the exact policy. */
export class DataReader {
  readonly #maxSize: number;
  readonly #maxLineLength: number;
  readonly #hardByteCap: number;
  #state = LINE_START;
  #lineLength = 0;
  /** Reused output buffer; `body` results are views of it. */
  #out: Uint8Array = EMPTY;
  #outLength = 0;
  #stats: DataStats = {
    size: 0,
    rawBytes: 0,
    bareLf: false,
    bareCr: false,
    nul: false,
    eightBit: false,
    longestLine: 0,
    lineTooLong: false,
    sizeExceeded: false,
  };

  /** Creates a reader for one message. */
  constructor(options: DataReaderOptions) {
    this.#maxSize = options.maxSize;
    this.#maxLineLength = options.maxLineLength ?? 1000;
    this.#hardByteCap = options.hardByteCap ?? 2 * options.maxSize + 1024 * 1024;
  }

  /** A snapshot of the counters and flags so far. */
  get stats(): DataStats {
    return { ...this.#stats };
  }

  /** True once the terminator was seen or the reader aborted. */
  get finished(): boolean {
    return this.#state === DONE || this.#state === ABORTED;
  }

  /**
   * Feeds raw octets as they came off the socket, split anywhere. After "done", further calls return
   * the whole chunk as leftover; after "abort", they return "abort" again. The returned `body` is valid
   * only until the next call (see the module documentation); `chunk` itself is only read, never kept.
   */
  push(chunk: Uint8Array): DataReaderResult {
    if (this.#state === DONE) return { status: "done", body: EMPTY, leftover: chunk };
    if (this.#state === ABORTED) return { status: "abort", body: EMPTY, leftover: EMPTY };
    // At most one held octet from before plus every octet of this chunk can come out.
    if (this.#out.length < chunk.length + 1) this.#out = new Uint8Array(Math.max(chunk.length + 1, 4096));
    this.#outLength = 0;
    const stats = this.#stats;
    for (let i = 0; i < chunk.length; i++) {
      if (stats.rawBytes >= this.#hardByteCap) {
        this.#state = ABORTED;
        return { status: "abort", body: this.#takeOutput(), leftover: EMPTY };
      }
      // Fast path (same result as the state machine below): inside a line, copy the run of octets up
      // to the next CR or LF in one go. Line starts, CR/LF and the terminator still go byte by byte.
      if (this.#state === MID_LINE) {
        const end = this.#emitRun(chunk, i);
        if (end > i) {
          i = end - 1;
          continue;
        }
      }
      stats.rawBytes++;
      const byte = chunk[i] as number;
      if (byte === 0) stats.nul = true;
      else if (byte >= 0x80) stats.eightBit = true;

      switch (this.#state) {
        case LINE_START:
          if (byte === DOT) this.#state = DOT_HELD;
          else if (byte === CR) this.#state = CR_HELD;
          else this.#midLine(byte);
          break;
        case MID_LINE:
          if (byte === CR) this.#state = CR_HELD;
          else this.#midLine(byte);
          break;
        case CR_HELD:
          if (byte === LF) {
            this.#emit(CR);
            this.#emit(LF);
            this.#lineLength = 0;
            this.#state = LINE_START;
          } else {
            // RFC 5321 2.3.8: a CR not followed by LF is not a line ending.
            stats.bareCr = true;
            this.#emit(CR);
            if (byte === CR) this.#state = CR_HELD;
            else this.#midLine(byte);
          }
          break;
        case DOT_HELD:
          // RFC 5321 4.5.2: a line starting with "." that is not the terminator loses that ".".
          if (byte === CR) this.#state = DOT_CR_HELD;
          else this.#midLine(byte);
          break;
        case DOT_CR_HELD:
          if (byte === LF) {
            // RFC 5321 4.1.1.4: CRLF "." CRLF, with the first CRLF the end of the previous line.
            this.#state = DONE;
            return { status: "done", body: this.#takeOutput(), leftover: chunk.subarray(i + 1) };
          }
          // ".\r" then something else: the dot was stuffing and the CR is bare (`\r\n.\rX`).
          stats.bareCr = true;
          this.#emit(CR);
          if (byte === CR) this.#state = CR_HELD;
          else this.#midLine(byte);
          break;
      }
    }
    return { status: "more", body: this.#takeOutput(), leftover: EMPTY };
  }

  /**
   * Bulk path from `from` (state MID_LINE): emits plain octets and ordinary line breaks (CRLF followed
   * by an octet that is not ".", CR or LF) exactly as the byte-by-byte state machine would, and stops
   * at anything that needs it: a CR or LF in any other position, or the end of the chunk. Returns the
   * index where the state machine takes over (the state is still MID_LINE there).
   */
  #emitRun(chunk: Uint8Array, from: number): number {
    const stats = this.#stats;
    const limit = Math.min(chunk.length, from + Math.max(0, this.#hardByteCap - stats.rawBytes - 1));
    let nul = stats.nul;
    let eightBit = stats.eightBit;
    let lineLength = this.#lineLength;
    let longest = stats.longestLine;
    let k = from;
    while (k < limit) {
      const b = chunk[k] as number;
      if (b === CR) {
        const next = chunk[k + 2];
        if (k + 2 < limit && chunk[k + 1] === LF && next !== DOT && next !== CR && next !== LF) {
          lineLength += 2; // the CRLF ends this line (RFC 5321 2.3.8)
          if (lineLength > longest) longest = lineLength;
          lineLength = 0;
          k += 2;
          continue;
        }
        break;
      }
      if (b === LF) break;
      if (b === 0) nul = true;
      else if (b >= 0x80) eightBit = true;
      lineLength++;
      if (lineLength > longest) longest = lineLength;
      k++;
    }
    const count = k - from;
    if (count === 0) return from;
    stats.rawBytes += count;
    stats.nul = nul;
    stats.eightBit = eightBit;
    this.#lineLength = lineLength;
    stats.longestLine = longest;
    if (longest > this.#maxLineLength) stats.lineTooLong = true;
    // Octets up to maxSize are kept; past it only counted (the message will be refused with 552).
    const room = stats.sizeExceeded ? 0 : Math.max(0, Math.min(count, this.#maxSize - stats.size));
    if (room > 0) {
      this.#out.set(chunk.subarray(from, from + room), this.#outLength);
      this.#outLength += room;
    }
    stats.size += count;
    if (stats.size > this.#maxSize) stats.sizeExceeded = true;
    return k;
  }

  /** Handles an octet that is neither a held CR nor a line-start dot; LF here is always bare. */
  #midLine(byte: number): void {
    // RFC 5321 2.3.8 (docs/protocol.md#bare-line-endings): an LF without CR is not a line ending, so "."
    // after it is plain text.
    if (byte === LF) this.#stats.bareLf = true;
    this.#emit(byte);
    this.#state = MID_LINE;
  }

  #emit(byte: number): void {
    const stats = this.#stats;
    stats.size++;
    this.#lineLength++;
    if (this.#lineLength > stats.longestLine) {
      stats.longestLine = this.#lineLength;
      if (this.#lineLength > this.#maxLineLength) stats.lineTooLong = true;
    }
    if (stats.size > this.#maxSize) stats.sizeExceeded = true;
    if (!stats.sizeExceeded) this.#out[this.#outLength++] = byte;
  }

  #takeOutput(): Uint8Array {
    const body = this.#outLength === 0 ? EMPTY : this.#out.subarray(0, this.#outLength);
    this.#outLength = 0;
    return body;
  }
}

/** Options for {@link dataRejection}. */
export interface DataRejectionOptions {
  /** Refuse 8-bit octets (the MAIL did not say BODY=8BITMIME; RFC 5321 2.4 allows refusing). */
  rejectEightBit?: boolean;
}

/**
 * Maps the reader's findings to the reply for the final dot, or `null` when nothing is wrong.
 * Bare line endings come first because they are the smuggling signal (docs/protocol.md#bare-line-endings).
 */
export function dataRejection(stats: DataStats, options: DataRejectionOptions = {}): Reply | null {
  if (stats.bareLf || stats.bareCr) return C550BareLineEndingInData;
  if (stats.nul) return C554NulInData;
  if (stats.sizeExceeded) return C552TooBig;
  if (stats.lineTooLong) return C554DataLineTooLong;
  if (options.rejectEightBit && stats.eightBit) return C554EightBitWithout8BitMime;
  return null;
}
