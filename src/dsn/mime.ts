/**
 * MIME pieces of a DSN: the multipart boundary and quoted-printable encoding.
 *
 * @module
 */

/** RFC 2046 5.1.1: boundary := 0*69<bchars> bcharsnospace. */
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;
const NOT_BCHAR = /[^0-9A-Za-z'()+_,\-./:=?]/g;

/**
 * A boundary derived from `seed` (the DSN's Message-ID, so golden output is stable), or `requested`
 * when given, that occurs in none of `parts`: RFC 2046 5.1.1 requires that the boundary delimiter not
 * appear inside the encapsulated content, and the returned message is the sender's (or an attacker's)
 * text. When the content does contain it, `_1`, `_2`, ... is appended until it does not.
 * @throws {RangeError} when `requested` is not a valid boundary.
 */
export function chooseBoundary(seed: string, parts: readonly Uint8Array[], requested?: string): string {
  if (requested !== undefined && !BOUNDARY.test(requested)) {
    throw new RangeError("The requested MIME boundary is not valid (RFC 2046 5.1.1)");
  }
  // "=_" cannot occur in quoted-printable text (RFC 2045 6.7: "=" is followed by hex or a line break).
  const base = (requested ?? `=_dsn_${seed.replace(NOT_BCHAR, ".")}`).slice(0, 64);
  for (let n = 0;; n++) {
    const candidate = n === 0 ? base : `${base}_${n}`;
    const delimiter = new TextEncoder().encode(`--${candidate}`);
    if (!parts.some((part) => contains(part, delimiter))) return candidate;
  }
}

/** True when `needle` occurs in `haystack`. */
function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  const first = needle[0];
  for (let i = haystack.indexOf(first as number); i !== -1; i = haystack.indexOf(first as number, i + 1)) {
    if (i + needle.length > haystack.length) return false;
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return true;
  }
  return false;
}

const HEX = "0123456789ABCDEF";

/**
 * Quoted-printable encoding (RFC 2045 6.7) of CRLF-structured data: CRLF stays a hard line break;
 * every other CR or LF, `=`, control and 8-bit octet becomes `=HH`; a space or tab before a line end
 * is encoded (rule 3); encoded lines are at most 76 characters, using soft line breaks (rule 5). The
 * result is 7-bit ASCII with short lines, and decodes to exactly `bytes`.
 */
export function quotedPrintable(bytes: Uint8Array): string {
  const lines: string[] = [];
  let line = "";
  const emit = (token: string): void => {
    // Leave room for the "=" of a soft line break.
    if (line.length + token.length > 75) {
      lines.push(`${line}=`);
      line = "";
    }
    line += token;
  };
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i] as number;
    if (byte === 0x0d && bytes[i + 1] === 0x0a) {
      lines.push(line);
      line = "";
      i++;
      continue;
    }
    const atLineEnd = i + 1 === bytes.length || (bytes[i + 1] === 0x0d && bytes[i + 2] === 0x0a);
    const literal = (byte >= 0x21 && byte <= 0x7e && byte !== 0x3d) ||
      ((byte === 0x20 || byte === 0x09) && !atLineEnd);
    emit(literal ? String.fromCharCode(byte) : `=${HEX[byte >> 4]}${HEX[byte & 15]}`);
  }
  // Data not ending in CRLF ends in a soft line break, so decoding adds no line break.
  if (line !== "") lines.push(`${line}=`);
  return lines.map((l) => `${l}\r\n`).join("");
}
