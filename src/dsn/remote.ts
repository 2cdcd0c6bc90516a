/**
 * What the recipient's server said and who it was: the reply as it stood on the wire, and the
 * Remote-MTA name.
 *
 * @module
 */

import { sanitizeHeloName } from "../smtp/received.ts";
import { LEADING_CODE } from "./status.ts";
import type { DsnReply } from "./types.ts";

/**
 * The reply's lines as they were on the wire: `550-5.1.1 text` for all but the last line and
 * `550 5.1.1 text` for the last (RFC 5321 4.2), the enhanced code repeated on every line (RFC 2034 3).
 * Not yet sanitised.
 */
export function replyWireLines(reply: DsnReply): string[] {
  const lines = reply.lines.length === 0 ? [""] : reply.lines;
  const code = String(reply.code);
  return lines.map((text, i) => {
    const separator = i === lines.length - 1 ? " " : "-";
    const rest = [reply.enhanced, text].filter((p) => p !== undefined && p !== "").join(" ");
    // RFC 5321 4.2: the text (and the space before it) may be missing.
    if (rest === "") return separator === "-" ? `${code}-` : code;
    return `${code}${separator}${rest}`;
  });
}

/**
 * The name for `Remote-MTA: dns; <name>` (RFC 3464 2.3.5): a valid domain or address literal, or
 * `undefined` so that no field is written rather than an unparsable one.
 */
export function remoteMtaName(name: string | undefined): string | undefined {
  if (name === undefined) return undefined;
  const helo = sanitizeHeloName(name);
  return helo.valid ? helo.text : undefined;
}

/**
 * Rebuilds a reply from what the queue records on a recipient: `last_code` and `last_text` as written by
 * `recordReply` in src/client/outcome.ts (`550 5.1.1 first line\nsecond line`).
 */
export function replyFromRecorded(code: number, text: string): DsnReply {
  const prefix = String(code);
  let rest = text === prefix ? "" : text.startsWith(`${prefix} `) ? text.slice(prefix.length + 1) : text;
  const leading = LEADING_CODE.exec(rest)?.[1];
  // RFC 2034 3: an enhanced code counts only when its class is the reply's.
  const enhanced = leading !== undefined && leading[0] === prefix[0] ? leading : undefined;
  if (enhanced !== undefined) rest = rest.slice(enhanced.length + 1);
  // One line per reply line (recordReply in src/client/outcome.ts); older rows joined with " / ".
  const lines = rest.includes("\n") ? rest.split("\n") : rest.split(" / ");
  return enhanced === undefined ? { code, lines } : { code, enhanced, lines };
}
