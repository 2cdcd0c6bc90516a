/**
 * A small MD5 (RFC 1321) whose chaining state can be exported and loaded again.
 *
 * Node's `crypto` cannot resume a hash from a saved state, but the Dovecot `{CRAM-MD5}` credential
 * (RFC 2195 section "Stored secrets") stores exactly that: the HMAC-MD5 inner and outer MD5 states after
 * one 64-byte block each. Verifying a client's digest therefore needs an MD5 we can seed.
 *
 * MD5 is broken for collision resistance; it is here only because RFC 2195 requires it. Do not use it for
 * anything else.
 *
 * @module
 */

/** Size in bytes of one MD5 compression block. */
export const MD5_BLOCK_BYTES = 64;

/** Size in bytes of an MD5 digest. */
export const MD5_DIGEST_BYTES = 16;

/** The MD5 chaining variables A, B, C, D (each an unsigned 32-bit integer). */
export type Md5State = readonly [number, number, number, number];

/** Initial chaining values (RFC 1321 3.3). */
export const MD5_INITIAL_STATE: Md5State = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

// Per-round shift amounts (RFC 1321 3.4), four per round, repeated.
// deno-fmt-ignore
const S: readonly number[] = [
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
  5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
  6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

// T[i] = floor(2^32 * abs(sin(i + 1))) (RFC 1321 3.4), tabulated so the result never depends on an engine's
// Math.sin rounding.
// deno-fmt-ignore
const T: readonly number[] = [
  0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee,
  0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
  0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
  0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
  0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa,
  0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
  0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
  0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
  0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
  0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
  0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05,
  0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
  0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039,
  0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
  0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
  0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/**
 * Compress one 64-byte block starting at `offset` of `block` into `state` (modified in place).
 * RFC 1321 3.4: four rounds of sixteen operations on the block read as little-endian words.
 */
function compress(state: Uint32Array, block: Uint8Array, offset: number): void {
  const x = new Uint32Array(16);
  for (let i = 0; i < 16; i++) {
    const o = offset + i * 4;
    // Little-endian word order (RFC 1321 2, "low-order byte first").
    x[i] = (block[o]! | (block[o + 1]! << 8) | (block[o + 2]! << 16) | (block[o + 3]! << 24)) >>> 0;
  }
  let a = state[0]!;
  let b = state[1]!;
  let c = state[2]!;
  let d = state[3]!;
  for (let i = 0; i < 64; i++) {
    let f: number;
    let g: number;
    if (i < 16) {
      f = (b & c) | (~b & d); // F(X,Y,Z)
      g = i;
    } else if (i < 32) {
      f = (b & d) | (c & ~d); // G(X,Y,Z)
      g = (5 * i + 1) & 15;
    } else if (i < 48) {
      f = b ^ c ^ d; // H(X,Y,Z)
      g = (3 * i + 5) & 15;
    } else {
      f = c ^ (b | ~d); // I(X,Y,Z)
      g = (7 * i) & 15;
    }
    const sum = (a + f + T[i]! + x[g]!) >>> 0;
    const s = S[i]!;
    const rotated = ((sum << s) | (sum >>> (32 - s))) >>> 0;
    a = d;
    d = c;
    c = b;
    b = (b + rotated) >>> 0;
  }
  state[0] = (state[0]! + a) >>> 0;
  state[1] = (state[1]! + b) >>> 0;
  state[2] = (state[2]! + c) >>> 0;
  state[3] = (state[3]! + d) >>> 0;
}

/**
 * Incremental MD5 hasher with exportable state.
 *
 * @example
 * ```ts
 * const h = new Md5();
 * h.update(new Uint8Array(64)); // exactly one block
 * const saved = h.exportState(); // [A, B, C, D]
 * const resumed = Md5.fromState(saved, 64);
 * ```
 */
export class Md5 {
  #state: Uint32Array;
  #buffer = new Uint8Array(MD5_BLOCK_BYTES);
  #buffered = 0;
  // Total bytes processed, kept as a JS number: exact up to 2^53 bytes, far beyond any SASL input.
  #length: number;
  #finished = false;

  /** Start a fresh hash from the RFC 1321 initial state. */
  constructor() {
    this.#state = Uint32Array.from(MD5_INITIAL_STATE);
    this.#length = 0;
  }

  /**
   * Resume from a chaining state reached after `bytesProcessed` bytes (must be a multiple of 64, since
   * only whole blocks are ever folded into the state).
   */
  static fromState(state: Md5State, bytesProcessed: number): Md5 {
    if (
      !Number.isSafeInteger(bytesProcessed) || bytesProcessed < 0 || bytesProcessed % MD5_BLOCK_BYTES !== 0
    ) {
      throw new RangeError("MD5 resume length must be a non-negative multiple of 64");
    }
    const h = new Md5();
    for (let i = 0; i < 4; i++) h.#state[i] = state[i]! >>> 0;
    h.#length = bytesProcessed;
    return h;
  }

  /** Feed more bytes. Returns `this` for chaining. */
  update(data: Uint8Array): this {
    if (this.#finished) throw new Error("MD5 hasher already finalised");
    let i = 0;
    this.#length += data.length;
    if (this.#buffered > 0) {
      const take = Math.min(MD5_BLOCK_BYTES - this.#buffered, data.length);
      this.#buffer.set(data.subarray(0, take), this.#buffered);
      this.#buffered += take;
      i = take;
      if (this.#buffered < MD5_BLOCK_BYTES) return this;
      compress(this.#state, this.#buffer, 0);
      this.#buffered = 0;
    }
    for (; i + MD5_BLOCK_BYTES <= data.length; i += MD5_BLOCK_BYTES) compress(this.#state, data, i);
    if (i < data.length) {
      this.#buffer.set(data.subarray(i), 0);
      this.#buffered = data.length - i;
    }
    return this;
  }

  /**
   * The chaining state A, B, C, D. Only defined on a block boundary (no partial block buffered), because a
   * buffered tail is not part of the state and would be lost.
   */
  exportState(): Md5State {
    if (this.#finished) throw new Error("MD5 hasher already finalised");
    if (this.#buffered !== 0) throw new Error("MD5 state can only be exported on a 64-byte block boundary");
    return [this.#state[0]!, this.#state[1]!, this.#state[2]!, this.#state[3]!];
  }

  /** Finish (RFC 1321 3.1 padding, 3.2 length) and return the 16-byte digest. The hasher is then spent. */
  digest(): Uint8Array {
    if (this.#finished) throw new Error("MD5 hasher already finalised");
    const bitLength = this.#length * 8;
    // Pad with 0x80 then zeros to 56 mod 64, then the 64-bit little-endian bit length.
    const padLength = this.#buffered < 56 ? 56 - this.#buffered : 120 - this.#buffered;
    const tail = new Uint8Array(padLength + 8);
    tail[0] = 0x80;
    const lo = bitLength >>> 0;
    const hi = Math.floor(bitLength / 0x100000000) >>> 0;
    for (let i = 0; i < 4; i++) {
      tail[padLength + i] = (lo >>> (8 * i)) & 0xff;
      tail[padLength + 4 + i] = (hi >>> (8 * i)) & 0xff;
    }
    // update() would also count the padding into #length; that no longer matters once we finish.
    this.update(tail);
    this.#finished = true;
    return stateToBytes(this.#state);
  }
}

/** Serialise A, B, C, D as sixteen bytes, each word little-endian (RFC 1321 3.5 output order). */
export function stateToBytes(state: Md5State | Uint32Array): Uint8Array {
  const out = new Uint8Array(16);
  for (let w = 0; w < 4; w++) {
    const v = state[w]!;
    for (let i = 0; i < 4; i++) out[w * 4 + i] = (v >>> (8 * i)) & 0xff;
  }
  return out;
}

/** Parse sixteen bytes (four little-endian words) back into A, B, C, D. */
export function bytesToState(bytes: Uint8Array, offset = 0): Md5State {
  if (bytes.length < offset + 16) throw new RangeError("MD5 state needs 16 bytes");
  const w = (i: number): number =>
    (bytes[offset + i]! | (bytes[offset + i + 1]! << 8) | (bytes[offset + i + 2]! << 16) |
      (bytes[offset + i + 3]! << 24)) >>> 0;
  return [w(0), w(4), w(8), w(12)];
}

/** One-shot MD5 of `data`. */
export function md5(data: Uint8Array): Uint8Array {
  return new Md5().update(data).digest();
}
