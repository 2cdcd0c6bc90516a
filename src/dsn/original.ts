/**
 * The returned content of a DSN (its third part, RFC 6522 3): the original's header
 * section, or the whole message when RET=FULL asks for it and it fits a cap (RFC 3461 4.3).
 *
 * The original comes as an iterable of byte chunks (the queue stores large bodies as 256 KiB chunks);
 * it is read once, in order. Only the header section is kept for a headers-only return, and reading
 * stops as soon as the header section has ended, so a large body is never held or even read. Chunks
 * may be views of reused buffers: what is kept is copied.
 *
 * @module
 */

import { concat } from "../queue/spool.ts";

const LF = 0x0a;
const CR = 0x0d;

/** Limits for {@link readOriginal}. */
export interface ReadOriginalOptions {
  /** Return the whole message (RET=FULL on a failure DSN). */
  full: boolean;
  /** Most octets returned in full; a larger message falls back to its header section. */
  maxFullBytes: number;
  /** Most octets of header section returned; a longer one is cut at a line end. */
  maxHeaderBytes: number;
  /**
   * Return the whole message only when it is 7-bit, so the DSN needs no 8BITMIME from the server that
   * takes it (a message/rfc822 part cannot be re-encoded, RFC 2046 5.2.1). Default false.
   */
  fullOnlyIfSevenBit?: boolean;
}

/** What goes into the third part. */
export interface ReturnedContent {
  /** `full`: the whole message; `headers`: its header section. */
  kind: "full" | "headers";
  /**
   * The octets. A header section runs through the CRLF of its last field, without the empty line
   * that ends it; a message without an empty line is all header section.
   */
  bytes: Uint8Array;
  /** Some octet is above 127. */
  eightBit: boolean;
  /**
   * The octets are not valid 7bit/8bit MIME data as they stand (RFC 2045 2.7, 2.8): a line over 998
   * octets, a CR or LF outside CRLF, or a NUL.
   */
  needsEncoding: boolean;
  /** The header section was longer than `maxHeaderBytes` and was cut at a line end. */
  truncated: boolean;
  /** Why the whole message was asked for but only the header section is returned. */
  fallback?: "too-large" | "unsafe";
}

/** Finds the empty line that ends the header section (RFC 5322 2.1), fed in chunks of any split. */
class HeaderEndFinder {
  /** Offset of the empty line, once seen. */
  end: number | undefined;
  #offset = 0;
  #lineStart = true;
  /** Offset of a CR seen at the start of a line, while we wait to see whether LF follows. */
  #crAt = -1;

  push(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length && this.end === undefined; i++) {
      const byte = chunk[i];
      if (this.#crAt !== -1) {
        if (byte === LF) this.end = this.#crAt;
        this.#crAt = -1;
        this.#lineStart = false;
        continue;
      }
      if (byte === LF) {
        // A lone LF at a line start is taken as an empty line too, leniently (as received.ts does).
        if (this.#lineStart) this.end = this.#offset + i;
        this.#lineStart = true;
      } else if (byte === CR && this.#lineStart) {
        this.#crAt = this.#offset + i;
      } else {
        this.#lineStart = false;
      }
    }
    this.#offset += chunk.length;
  }
}

/**
 * Reads the original message and returns what the DSN should carry of it. With `full`, the whole
 * message is collected up to `maxFullBytes`; beyond that, or when it is not valid MIME data as it
 * stands (a message/rfc822 part may not be transfer-encoded, RFC 2046 5.2.1), its header section is
 * returned instead and `fallback` says why.
 */
export function readOriginal(chunks: Iterable<Uint8Array>, options: ReadOriginalOptions): ReturnedContent {
  const finder = new HeaderEndFinder();
  const head: Uint8Array[] = [];
  let headBytes = 0;
  let whole: Uint8Array[] | null = options.full ? [] : null;
  let total = 0;
  let fallback: ReturnedContent["fallback"];
  for (const chunk of chunks) {
    if (finder.end === undefined) {
      finder.push(chunk);
      // Keep one chunk past the cap at most: enough to know the section was cut.
      if (headBytes <= options.maxHeaderBytes) {
        head.push(chunk.slice());
        headBytes += chunk.length;
      }
    }
    total += chunk.length;
    if (whole !== null) {
      if (total > options.maxFullBytes) {
        whole = null;
        fallback = "too-large";
      } else {
        whole.push(chunk.slice());
      }
    }
    // Headers only, and the header section is complete (or already over its cap): the rest is not needed.
    if (whole === null && (finder.end !== undefined || headBytes > options.maxHeaderBytes)) break;
  }

  if (whole !== null) {
    const bytes = concat(whole);
    const scan = scanMimeData(bytes);
    const sevenBitNeeded = options.fullOnlyIfSevenBit === true && scan.eightBit;
    if (!scan.needsEncoding && !sevenBitNeeded) return { kind: "full", bytes, ...scan, truncated: false };
    fallback = "unsafe";
  }

  const sectionLength = finder.end ?? total;
  let bytes = concat(head).subarray(0, sectionLength);
  const truncated = sectionLength > options.maxHeaderBytes;
  if (truncated) bytes = bytes.subarray(0, bytes.lastIndexOf(LF, options.maxHeaderBytes - 1) + 1);
  return { kind: "headers", bytes, ...scanMimeData(bytes), truncated, ...(fallback ? { fallback } : {}) };
}

/** Whether `bytes` hold 8-bit octets, and whether they break the RFC 2045 2.7/2.8 line rules. */
export function scanMimeData(bytes: Uint8Array): { eightBit: boolean; needsEncoding: boolean } {
  let eightBit = false;
  let needsEncoding = false;
  let lineLength = 0;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i] as number;
    if (byte === CR && bytes[i + 1] === LF) {
      i++;
      lineLength = 0;
      continue;
    }
    // RFC 2045 2.7/2.8: CR and LF only as CRLF, no NUL, lines at most 998 octets before CRLF.
    if (byte === CR || byte === LF || byte === 0 || ++lineLength > 998) needsEncoding = true;
    if (byte > 127) eightBit = true;
  }
  return { eightBit, needsEncoding };
}
