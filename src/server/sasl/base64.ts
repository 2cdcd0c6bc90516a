/**
 * Strict base64 (RFC 4648 section 4) for SASL exchanges.
 *
 * RFC 4954 section 4: a server must reject a client response containing characters outside the base64
 * alphabet, or `=` anywhere but at the end, and answer `501 5.5.2`. Lenient decoders (atob, Buffer) skip or
 * accept such input, so this one is written out.
 *
 * @module
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Char code → 6-bit value, or -1 for anything outside the alphabet (including "=", handled separately).
const DECODE: Int8Array = (() => {
  const table = new Int8Array(128).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) table[ALPHABET.charCodeAt(i)] = i;
  return table;
})();

/** Encode bytes (or a string, as UTF-8) as padded base64 with no line breaks. */
export function encodeBase64(data: Uint8Array | string): string {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  let out = "";
  let i = 0;
  for (; i + 3 <= bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += ALPHABET[(n >>> 18) & 63]! + ALPHABET[(n >>> 12) & 63]! + ALPHABET[(n >>> 6) & 63]! +
      ALPHABET[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += ALPHABET[(n >>> 18) & 63]! + ALPHABET[(n >>> 12) & 63]! + "==";
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += ALPHABET[(n >>> 18) & 63]! + ALPHABET[(n >>> 12) & 63]! + ALPHABET[(n >>> 6) & 63]! + "=";
  }
  return out;
}

/**
 * Decode strict, padded base64. Returns `null` (caller answers `501 5.5.2`) when the input:
 * - contains any character outside `A-Z a-z 0-9 + /` other than trailing `=` (no whitespace, no CR/LF,
 *   no URL-safe `-` `_`);
 * - has `=` anywhere but the last one or two positions, or more than two of them;
 * - has a length that is not a multiple of 4 (RFC 4648 3.2: padding is required unless the spec referring
 *   to it says otherwise, and RFC 4954 does not);
 * - has non-zero bits in the final character's unused low bits (RFC 4648 3.5 allows rejecting these; they
 *   would let two different strings decode to the same bytes).
 *
 * The empty string decodes to zero bytes; whether an empty response is acceptable is the caller's call
 * (RFC 4954 uses a lone `=` for an empty initial response).
 */
export function decodeBase64Strict(text: string): Uint8Array | null {
  if (text.length % 4 !== 0) return null;
  if (text.length === 0) return new Uint8Array(0);
  let pad = 0;
  if (text.endsWith("==")) pad = 2;
  else if (text.endsWith("=")) pad = 1;
  const dataChars = text.length - pad;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < dataChars; i++) {
    const code = text.charCodeAt(i);
    // An "=" before the padding region, or any non-alphabet character, makes the whole line invalid.
    const v = code < 128 ? DECODE[code]! : -1;
    if (v < 0) return null;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >>> bits) & 0xff;
      acc &= (1 << bits) - 1;
    }
  }
  // Leftover bits (2 with "==", 4 with "=") must be zero for a canonical encoding.
  if (acc !== 0) return null;
  return out;
}
