/**
 * Small assertions shared by the SMTP unit tests.
 *
 * @module
 */

import assert from "node:assert/strict";
import { SmtpError } from "../../src/smtp/reply_codes.ts";

/** Asserts that `fn` throws an SmtpError whose reply has `code` and (when given) `enhanced`. */
export function assertSmtpError(fn: () => unknown, code: number, enhanced?: string): SmtpError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof SmtpError, `expected SmtpError ${code}, got ${String(caught)}`);
  assert.equal(caught.reply.code, code, `reply code (log reason: ${caught.logReason})`);
  if (enhanced !== undefined) assert.equal(caught.reply.enhanced, enhanced);
  return caught;
}

/** Octets from a string of code points 0-255 (one octet per character). */
export function bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0xff) throw new Error("bytes() takes code points 0-255 only");
    out[i] = code;
  }
  return out;
}

/** The inverse of {@link bytes}, for readable assertion messages. */
export function text(data: Uint8Array): string {
  let out = "";
  for (const byte of data) out += String.fromCharCode(byte);
  return out;
}

/** Joins chunks. */
export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Cuts `data` at the given ascending offsets. */
export function splitAt(data: Uint8Array, offsets: readonly number[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const offset of offsets) {
    chunks.push(data.subarray(start, offset));
    start = offset;
  }
  chunks.push(data.subarray(start));
  return chunks;
}

/** Deterministic PRNG (mulberry32) so random tests are reproducible. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
