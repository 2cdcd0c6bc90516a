/**
 * Password hashing for PLAIN and LOGIN (scrypt, RFC 7914) and random customer secrets.
 *
 * Stored form: `$scrypt$N=16384,r=8,p=1$<salt>$<hash>` with salt and hash in unpadded standard base64.
 * The parameters travel with the hash, so the default cost can be raised later without invalidating
 * existing accounts ({@link needsRehash} tells the caller when to upgrade after a successful login).
 *
 * @module
 */

import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";

/** scrypt cost parameters. */
export interface ScryptParams {
  /** CPU/memory cost; a power of two greater than 1. */
  readonly N: number;
  /** Block size. */
  readonly r: number;
  /** Parallelisation. */
  readonly p: number;
}

/** Options for {@link hashPassword}. */
export interface HashPasswordOptions {
  /** Cost parameters; defaults to {@link DEFAULT_SCRYPT_PARAMS}. Tests pass a cheap cost. */
  readonly params?: ScryptParams;
  /** Salt length in bytes (default 16). */
  readonly saltBytes?: number;
  /** Derived key length in bytes (default 32). */
  readonly keyBytes?: number;
}

/**
 * Default cost: N=2^14, r=8, p=1 needs 16 MiB and tens of milliseconds per attempt; moderate because
 * every AUTH PLAIN/LOGIN pays it and the auth throttle already limits guessing rate.
 */
export const DEFAULT_SCRYPT_PARAMS: ScryptParams = { N: 16384, r: 8, p: 1 };

// Bounds applied to parameters read from storage, so a corrupted or hostile row cannot make verification
// allocate gigabytes or spin for minutes.
const MAX_N = 1 << 20;
const MAX_R = 32;
const MAX_P = 16;
const MAX_MEM = 256 * 1024 * 1024;
const MIN_KEY = 16;
const MAX_KEY = 64;

const B64_RE = /^[A-Za-z0-9+/]+$/;
const STORED_RE = /^\$scrypt\$N=(\d{1,8}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

function checkParams(params: ScryptParams): boolean {
  const { N, r, p } = params;
  return Number.isSafeInteger(N) && N > 1 && N <= MAX_N && (N & (N - 1)) === 0 &&
    Number.isSafeInteger(r) && r >= 1 && r <= MAX_R && Number.isSafeInteger(p) && p >= 1 && p <= MAX_P &&
    128 * N * r <= MAX_MEM;
}

function derive(
  password: Uint8Array,
  salt: Uint8Array,
  keyBytes: number,
  params: ScryptParams,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // maxmem must exceed 128*N*r (the V array); node's 32 MiB default would refuse N=2^15,r=8.
    const maxmem = 128 * params.N * params.r + 1024 * 1024 * 2;
    scrypt(password, salt, keyBytes, { N: params.N, r: params.r, p: params.p, maxmem }, (err, key) => {
      if (err) reject(err);
      else resolve(key);
    });
  });
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64").replace(/=+$/, "");
}

function toBytes(s: string | Uint8Array): Uint8Array {
  return typeof s === "string" ? new TextEncoder().encode(s) : s;
}

/** Hash a password for storage. Strings are hashed as UTF-8. */
export async function hashPassword(
  password: string | Uint8Array,
  options: HashPasswordOptions = {},
): Promise<string> {
  const params = options.params ?? DEFAULT_SCRYPT_PARAMS;
  const saltBytes = options.saltBytes ?? 16;
  const keyBytes = options.keyBytes ?? 32;
  if (!checkParams(params)) throw new RangeError("scrypt parameters are out of range");
  if (saltBytes < 8 || saltBytes > 64) throw new RangeError("Salt length must be 8..64 bytes");
  if (keyBytes < MIN_KEY || keyBytes > MAX_KEY) throw new RangeError("Key length must be 16..64 bytes");
  const salt = randomBytes(saltBytes);
  const key = await derive(toBytes(password), salt, keyBytes, params);
  return `$scrypt$N=${params.N},r=${params.r},p=${params.p}$${b64(salt)}$${b64(key)}`;
}

/** Parsed stored hash, or `null` when it is not a well-formed `$scrypt$` string within bounds. */
export function parsePasswordHash(
  stored: string,
): { params: ScryptParams; salt: Uint8Array; key: Uint8Array } | null {
  const m = STORED_RE.exec(stored);
  if (m === null) return null;
  const params: ScryptParams = { N: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (!checkParams(params)) return null;
  const saltText = m[4]!;
  const keyText = m[5]!;
  if (!B64_RE.test(saltText) || !B64_RE.test(keyText)) return null;
  const salt = Buffer.from(saltText, "base64");
  const key = Buffer.from(keyText, "base64");
  if (salt.length < 8 || key.length < MIN_KEY || key.length > MAX_KEY) return null;
  return { params, salt, key };
}

/**
 * Check `password` against a stored `$scrypt$` hash. The final comparison is constant time; a malformed
 * stored hash yields `false` (log it: it means a broken account row, not a wrong password).
 */
export async function verifyPassword(stored: string, password: string | Uint8Array): Promise<boolean> {
  const parsed = parsePasswordHash(stored);
  if (parsed === null) return false;
  const key = await derive(toBytes(password), parsed.salt, parsed.key.length, parsed.params);
  return timingSafeEqual(key, parsed.key);
}

/** True when a stored hash uses different parameters than `params`, so it should be rehashed. */
export function needsRehash(stored: string, params: ScryptParams = DEFAULT_SCRYPT_PARAMS): boolean {
  const parsed = parsePasswordHash(stored);
  if (parsed === null) return true;
  return parsed.params.N !== params.N || parsed.params.r !== params.r || parsed.params.p !== params.p;
}

/**
 * Hash to verify against when the username does not exist, so an unknown user costs the same scrypt work
 * as a wrong password (docs/protocol.md#auth-replies: same 535 for both, and no timing hint either).
 */
export async function makeDummyHash(options: HashPasswordOptions = {}): Promise<string> {
  return await hashPassword(generateSecret(), options);
}

// Lower-case letters and digits minus the look-alikes 0/o and 1/l: exactly 32 symbols, so `byte & 31` is
// uniform and needs no rejection sampling. One case only, so nobody has to guess capitals.
const SECRET_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789";

/** Length of {@link generateSecret} output: 26 symbols * 5 bits = 130 bits of entropy. */
export const SECRET_LENGTH = 26;

/**
 * A random shared secret for a customer (docs/protocol.md#secrets: random >= 128-bit secrets make an offline
 * dictionary attack on a sniffed CRAM-MD5 exchange pointless). 26 characters from a 32-symbol lower-case
 * alphabet without `0 o 1 l`, so it can be read aloud or pasted into a fetchmailrc `password "..."` with no
 * quoting trouble.
 */
export function generateSecret(): string {
  const bytes = new Uint8Array(SECRET_LENGTH);
  crypto.getRandomValues(bytes);
  let out = "";
  for (const b of bytes) out += SECRET_ALPHABET[b & 31]!;
  return out;
}
