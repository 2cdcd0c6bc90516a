/**
 * CRAM-MD5 (RFC 2195) with Dovecot-compatible stored contexts instead of plaintext secrets.
 *
 * The digest is HMAC-MD5(secret, challenge) (RFC 2104). HMAC's first step is hashing one 64-byte block of
 * `K XOR ipad` (inner) and one of `K XOR opad` (outer); RFC 2195 allows storing those two intermediate MD5
 * states rather than the secret. Dovecot's `{CRAM-MD5}` scheme writes them as 64 hex digits, outer first,
 * each of A, B, C, D as a little-endian uint32 (docs/protocol.md#cram-md5-secret-storage).
 *
 * The stored value is still password-equivalent for CRAM-MD5 (RFC 2195 section "Security
 * Considerations"): protect it like a secret.
 *
 * @module
 */

import { timingSafeEqual } from "node:crypto";
import { decodeBase64Strict } from "./base64.ts";
import { bytesToState, Md5, md5, MD5_BLOCK_BYTES, type Md5State, stateToBytes } from "./md5.ts";

/** Scheme prefix of a stored CRAM-MD5 credential, as Dovecot writes it. */
export const CRAM_MD5_PREFIX = "{CRAM-MD5}";

/** The precomputed HMAC-MD5 contexts behind a `{CRAM-MD5}` credential. */
export interface CramMd5Contexts {
  /** MD5 state after one block of `K XOR 0x5c...`. */
  readonly outer: Md5State;
  /** MD5 state after one block of `K XOR 0x36...`. */
  readonly inner: Md5State;
}

/** Result of {@link parseCramMd5Response}. */
export type CramMd5Response =
  | { readonly ok: true; readonly username: string; readonly digest: string }
  | {
    readonly ok: false;
    /**
     * `bad-base64`: the line is not strict base64 (answer `501 5.5.2`, RFC 4954 4).
     * `malformed`: decodes but is not `username SP 32-hex` (answer `535 5.7.8`, same as a wrong secret, so
     * a prober learns nothing).
     */
    readonly reason: "bad-base64" | "malformed";
  };

const HEX_RE = /^[0-9a-fA-F]+$/;
// C0 controls and DEL: NUL is what RFC-wise matters (Dovecot rejects it), the rest would let a username
// inject CR/LF into logs or status output.
// deno-lint-ignore no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/;
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function toBytes(s: string | Uint8Array): Uint8Array {
  return typeof s === "string" ? new TextEncoder().encode(s) : s;
}

function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Compute the inner and outer HMAC-MD5 contexts for a secret (RFC 2104 section 2). */
export function cramMd5Contexts(password: string | Uint8Array): CramMd5Contexts {
  let key = toBytes(password);
  // RFC 2104 2: keys longer than the block size are hashed first; shorter ones are zero-padded (below).
  if (key.length > MD5_BLOCK_BYTES) key = md5(key);
  const ipad = new Uint8Array(MD5_BLOCK_BYTES).fill(0x36);
  const opad = new Uint8Array(MD5_BLOCK_BYTES).fill(0x5c);
  for (let i = 0; i < key.length; i++) {
    ipad[i] = ipad[i]! ^ key[i]!;
    opad[i] = opad[i]! ^ key[i]!;
  }
  return {
    inner: new Md5().update(ipad).exportState(),
    outer: new Md5().update(opad).exportState(),
  };
}

/**
 * Derive the stored credential for a secret: `{CRAM-MD5}` + 64 lower-case hex digits (outer A,B,C,D then
 * inner A,B,C,D, each uint32 little-endian), interchangeable with `doveadm pw -s CRAM-MD5`.
 */
export function cramMd5Secret(password: string | Uint8Array): string {
  const { outer, inner } = cramMd5Contexts(password);
  return CRAM_MD5_PREFIX + toHex(stateToBytes(outer)) + toHex(stateToBytes(inner));
}

/**
 * Parse a stored credential. Accepts the `{CRAM-MD5}` prefix, Dovecot's older alias `{HMAC-MD5}`, or bare
 * hex; the hex may be either case. Returns `null` if it is not 64 hex digits.
 */
export function parseCramMd5Secret(stored: string): CramMd5Contexts | null {
  let hex = stored.trim();
  const upper = hex.slice(0, CRAM_MD5_PREFIX.length).toUpperCase();
  if (upper === "{CRAM-MD5}" || upper === "{HMAC-MD5}") hex = hex.slice(CRAM_MD5_PREFIX.length);
  if (hex.length !== 64 || !HEX_RE.test(hex)) return null;
  const bytes = fromHex(hex);
  return { outer: bytesToState(bytes, 0), inner: bytesToState(bytes, 16) };
}

function digestFromContexts(ctx: CramMd5Contexts, challenge: string): Uint8Array {
  // Resume each MD5 with the one 64-byte pad block already counted, so the final length field is right
  // ((64 + len) * 8 bits inner, (64 + 16) * 8 bits outer).
  const innerDigest = Md5.fromState(ctx.inner, MD5_BLOCK_BYTES).update(new TextEncoder().encode(challenge))
    .digest();
  return Md5.fromState(ctx.outer, MD5_BLOCK_BYTES).update(innerDigest).digest();
}

/**
 * The CRAM-MD5 digest (32 lower-case hex digits, RFC 2195 2) that a client holding the secret behind
 * `storedSecret` would send for `challenge`. Throws `TypeError` if `storedSecret` is malformed.
 */
export function cramMd5Digest(storedSecret: string, challenge: string): string {
  const ctx = parseCramMd5Secret(storedSecret);
  if (ctx === null) throw new TypeError("Stored CRAM-MD5 secret is malformed");
  return toHex(digestFromContexts(ctx, challenge));
}

/**
 * Make a fresh challenge `<digits.unixtime@hostname>` (RFC 2195 2: msg-id shaped, unique per attempt; the
 * same shape as Dovecot: 16 random decimal digits, a dot, unix time, `@`, the host name).
 *
 * The random part comes from `crypto.getRandomValues`, so a challenge cannot be predicted and a recorded
 * response cannot be replayed. `nowMs` is injectable for tests.
 */
export function makeChallenge(hostname: string, nowMs: number = Date.now()): string {
  // The challenge is sent base64'd but must still be a plausible msg-id: no brackets, spaces or controls.
  if (hostname.length === 0 || hostname.length > 255 || !/^[A-Za-z0-9.\-_[\]:]+$/.test(hostname)) {
    throw new TypeError("Challenge host name must be a non-empty domain or address literal");
  }
  let digits = "";
  while (digits.length < 16) {
    const buf = new Uint8Array(32);
    crypto.getRandomValues(buf);
    for (const b of buf) {
      // Reject 250..255 so each digit is uniform (250 is the largest multiple of 10 below 256).
      if (b < 250 && digits.length < 16) digits += String(b % 10);
    }
  }
  return `<${digits}.${Math.floor(nowMs / 1000)}@${hostname}>`;
}

/**
 * Parse the client's base64 answer to the challenge: `username SP digest` (RFC 2195 2).
 *
 * Splits at the LAST space because usernames may contain spaces (as Dovecot does). Rejects NUL and other
 * control characters, invalid UTF-8, an empty username, and a digest that is not exactly 32 hex digits;
 * upper-case hex is accepted and lower-cased.
 */
export function parseCramMd5Response(base64Line: string): CramMd5Response {
  const bytes = decodeBase64Strict(base64Line);
  if (bytes === null) return { ok: false, reason: "bad-base64" };
  let text: string;
  try {
    text = utf8Strict.decode(bytes);
  } catch {
    return { ok: false, reason: "malformed" };
  }
  if (CONTROL_RE.test(text)) return { ok: false, reason: "malformed" };
  const space = text.lastIndexOf(" ");
  if (space <= 0) return { ok: false, reason: "malformed" };
  const username = text.slice(0, space);
  const digest = text.slice(space + 1);
  if (digest.length !== 32 || !HEX_RE.test(digest)) return { ok: false, reason: "malformed" };
  return { ok: true, username, digest: digest.toLowerCase() };
}

/**
 * Check a client's digest against the stored credential in constant time (with respect to the digest
 * contents). Returns `false` for a malformed stored secret or a digest that is not 32 hex digits; the
 * caller should answer `535 5.7.8` in every failure case, including unknown users.
 */
export function verifyCramMd5(storedSecret: string, challenge: string, digestHex: string): boolean {
  const ctx = parseCramMd5Secret(storedSecret);
  if (ctx === null) return false;
  const expected = digestFromContexts(ctx, challenge);
  const wellFormed = digestHex.length === 32 && HEX_RE.test(digestHex);
  // Compare against something of the right length even when malformed, so the work done does not depend
  // on which check failed.
  const given = wellFormed ? fromHex(digestHex) : new Uint8Array(16);
  return timingSafeEqual(expected, given) && wellFormed;
}
