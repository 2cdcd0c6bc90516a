/**
 * Text that goes into DSN header fields and the human-readable part: sanitising what peers and
 * senders supplied, folding fields, and wrapping prose. Nothing written through here can end a line
 * or exceed 998 octets (RFC 5322 2.1.1).
 *
 * @module
 */

import { MAX_HEADER_LINE_LENGTH } from "../smtp/received.ts";

/** RFC 5322 2.1.1: lines SHOULD be at most 78 characters; we fold fields and wrap prose there. */
export const SOFT_LINE_LENGTH = 78;

const encoder = new TextEncoder();

/** Length of `text` in UTF-8 octets (the unit of the RFC 5322 line limits). */
export function octets(text: string): number {
  return encoder.encode(text).length;
}

/** True when every character is US-ASCII. */
export function isAscii(text: string): boolean {
  // deno-lint-ignore no-control-regex
  return /^[\x00-\x7f]*$/.test(text);
}

/**
 * Makes peer- or sender-supplied text safe for one header or text line: every control character (CR,
 * LF, TAB, NUL, ...) becomes `?`, and so does every non-ASCII character unless `utf8` (RFC 6532 /
 * RFC 6533 content may carry UTF-8; RFC 3464 content may not).
 */
export function safeText(text: string, utf8: boolean): string {
  // Matching control characters is the point here.
  // deno-lint-ignore no-control-regex
  return text.replace(utf8 ? /[\x00-\x1f\x7f]/g : /[^\x20-\x7e]/g, "?");
}

/**
 * Formats `Name: value` folded for the wire, each line ending in CRLF. Folding only inserts CRLF before
 * existing spaces (RFC 5322 2.2.3), so unfolding gives back exactly `Name: value`. Lines are kept to 78
 * octets where a space allows it; a run without spaces longer than 998 octets (which sanitised DSN
 * values never contain: replies are at most 512 octets, paths 256) is cut hard as a last resort.
 * `value` must already be sanitised (see {@link safeText}).
 */
export function foldField(name: string, value: string): string {
  // Each piece is a word with the spaces before it; a fold goes before a piece's spaces.
  const pieces = `${name}: ${value.replace(/ +$/, "")}`.match(/ *[^ ]+/g) ?? [`${name}:`];
  const lines: string[] = [];
  let line = "";
  for (const piece of pieces) {
    if (line !== "" && octets(line + piece) > SOFT_LINE_LENGTH) {
      lines.push(line);
      line = piece;
    } else {
      line += piece;
    }
  }
  lines.push(line);
  return lines.flatMap(hardCut).map((l) => `${l}\r\n`).join("");
}

/** Cuts a line longer than 998 octets into pieces that fit; continuation pieces start with a space. */
function hardCut(line: string): string[] {
  const [first = "", ...rest] = cutToOctets(line, MAX_HEADER_LINE_LENGTH);
  if (rest.length === 0) return [first];
  return [first, ...cutToOctets(rest.join(""), MAX_HEADER_LINE_LENGTH - 1).map((piece) => ` ${piece}`)];
}

/** Splits `text` into pieces of at most `max` UTF-8 octets, never inside a code point. */
function cutToOctets(text: string, max: number): string[] {
  const pieces: string[] = [];
  let piece = "";
  let size = 0;
  for (const char of text) {
    const n = octets(char);
    if (size + n > max) {
      pieces.push(piece);
      piece = "";
      size = 0;
    }
    piece += char;
    size += n;
  }
  if (piece !== "" || pieces.length === 0) pieces.push(piece);
  return pieces;
}

/**
 * Wraps a paragraph of prose to lines of at most 78 octets (a longer word stands alone on its line; a
 * word over 998 octets is cut), each line starting with `indent`. `text` must already be sanitised.
 */
export function wrapText(text: string, indent = ""): string[] {
  const max = MAX_HEADER_LINE_LENGTH - octets(indent);
  const words = text.split(" ").filter((w) => w !== "").flatMap((w) => cutToOctets(w, max));
  const lines: string[] = [];
  let line = "";
  for (const word of words) {
    if (line !== "" && octets(`${indent}${line} ${word}`) > SOFT_LINE_LENGTH) {
      lines.push(`${indent}${line}`);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(`${indent}${line}`);
  return lines;
}
