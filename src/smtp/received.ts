/**
 * The Received trace header we prepend on intake (RFC 5321 4.4; docs/protocol.md#received-header), and a
 * streaming counter of existing Received fields for loop detection (RFC 5321 6.3).
 *
 * @module
 */

import {
  addressLiteralFor,
  isAddressLiteral,
  isIpv4Address,
  isIpv6Address,
  isValidDomain,
} from "./domain.ts";
import { formatRfc5322Date } from "./rfc5322_date.ts";

/** RFC 5322 2.1.1: a header line is at most 998 octets before CRLF. */
export const MAX_HEADER_LINE_LENGTH = 998;
/** Longest EHLO name we copy into a header (RFC 5321 4.5.3.1.2 domain limit). */
export const MAX_HELO_NAME_LENGTH = 255;

/** What the session used, for the `with` clause. */
export interface ProtocolFlags {
  /** EHLO (true) or HELO (false). */
  ehlo: boolean;
  /** TLS was active. */
  tls: boolean;
  /** The client authenticated. */
  auth: boolean;
  /** The transaction used SMTPUTF8. */
  utf8: boolean;
}

/**
 * The `with` keyword: `SMTP` after HELO, else `ESMTP` / `UTF8SMTP` plus `S` for TLS and `A` for AUTH
 * (RFC 3848, RFC 4954 7, RFC 6531 3.7.3).
 */
export function receivedProtocol(flags: ProtocolFlags): string {
  if (!flags.ehlo) return "SMTP";
  return `${flags.utf8 ? "UTF8SMTP" : "ESMTP"}${flags.tls ? "S" : ""}${flags.auth ? "A" : ""}`;
}

/** Input for {@link buildReceivedHeader}. */
export interface ReceivedOptions {
  /** The EHLO/HELO argument exactly as the client sent it (sanitised here). */
  heloName: string;
  /** Peer IP address from the socket. */
  remoteIp: string;
  /** Verified reverse-DNS name of the peer, if any. */
  remoteHost?: string;
  /** Our host name. */
  byHost: string;
  /** Optional comment after our host name, e.g. the software name. */
  software?: string;
  /** The `with` keyword; see {@link receivedProtocol}. */
  protocol: string;
  /** Our queue id for the message. */
  id: string;
  /** Accepted recipient addresses (without angle brackets); `for` is written only for exactly one. */
  recipients: readonly string[];
  /** Time of receipt. */
  date: Date;
  /** Zone for the date; default local (see rfc5322_date.ts). */
  utcOffsetMinutes?: number;
}

/** Replaces anything outside printable ASCII (no space) with "?" so nothing can break the header. */
function printable(text: string): string {
  return text.replace(/[^\x21-\x7e]/g, "?");
}

/** Escapes text for a RFC 5322 3.2.2 comment: `(`, `)` and `\` become quoted-pairs. */
function commentText(text: string): string {
  return text.replace(/[()\\]/g, "\\$&");
}

/** Sanitised EHLO name: printable ASCII, length-capped, and whether it may stand outside a comment. */
export function sanitizeHeloName(name: string): { text: string; valid: boolean } {
  const text = printable(name).slice(0, MAX_HELO_NAME_LENGTH);
  return { text, valid: text === name && (isValidDomain(text) || isAddressLiteral(text)) };
}

/**
 * Builds `Received: from ... by ... with ... id ... [for <addr>]; date` ending in CRLF, folded with
 * CRLF + TAB so no line exceeds 998 octets (RFC 5322 2.1.1, 2.2.3).
 *
 * From-domain follows RFC 5321 4.4 Extended-Domain: the EHLO name when it is a valid domain or address
 * literal, with the TCP information in a comment; otherwise the peer's address literal, and the
 * EHLO name goes into the comment, escaped (docs/protocol.md#injection: no header injection via EHLO).
 */
export function buildReceivedHeader(options: ReceivedOptions): string {
  const helo = sanitizeHeloName(options.heloName);
  const ipValid = isIpv4Address(options.remoteIp) || isIpv6Address(options.remoteIp);
  const literal = ipValid ? addressLiteralFor(options.remoteIp) : "unknown";
  const host = options.remoteHost !== undefined && isValidDomain(options.remoteHost)
    ? options.remoteHost
    : undefined;
  const tcpInfo = host === undefined ? literal : `${host} ${literal}`;

  let from = `from ${helo.text} (${tcpInfo})`;
  if (!helo.valid) {
    const comment = [helo.text === "" ? "" : `helo=${commentText(helo.text)}`, host ?? ""]
      .filter((part) => part !== "").join(" ");
    from = comment === "" ? `from ${literal}` : `from ${literal} (${comment})`;
  }

  const software = options.software === undefined ? "" : ` (${commentText(printable(options.software))})`;
  const by = `by ${printable(options.byHost)}${software}`;
  // RFC 5321 4.4: protocol and id are atoms.
  const withId = `with ${printable(options.protocol)} id ${printable(options.id)}`;
  const date = formatRfc5322Date(
    options.date,
    options.utcOffsetMinutes === undefined ? {} : { utcOffsetMinutes: options.utcOffsetMinutes },
  );

  const lines = [`Received: ${from}`, `\t${by} ${withId}`];
  const only = options.recipients.length === 1 ? options.recipients[0] : undefined;
  if (only !== undefined) {
    // RFC 5321 7.2: naming several recipients would leak Bcc, so "for" only with exactly one.
    // Controls and brackets cannot come from a parsed path, but the header must not depend on that.
    // deno-lint-ignore no-control-regex
    lines.push(`\tfor <${only.replace(/[\x00-\x1f\x7f<>]/g, "?")}>; ${date}`);
  } else {
    lines[1] += `; ${date}`;
  }
  return lines.flatMap(foldHeaderLine).join("\r\n") + "\r\n";
}

const encoder = new TextEncoder();

/**
 * Splits a header line longer than 998 octets (RFC 5322 2.1.1) into lines joined by CRLF + TAB, at a
 * space where possible (the space is replaced by the fold); returns the pieces without CRLF.
 */
export function foldHeaderLine(line: string): string[] {
  const out: string[] = [];
  let rest = line;
  while (encoder.encode(rest).length > MAX_HEADER_LINE_LENGTH) {
    let cut = MAX_HEADER_LINE_LENGTH;
    // Measure in octets: back off until the prefix fits.
    while (encoder.encode(rest.slice(0, cut)).length > MAX_HEADER_LINE_LENGTH) cut--;
    const space = rest.lastIndexOf(" ", cut);
    // Fold at whitespace when possible (RFC 5322 2.2.3); else cut hard, which only a bug could cause.
    const at = space > 1 ? space : cut;
    out.push(rest.slice(0, at));
    rest = `\t${rest.slice(space > 1 ? at + 1 : at)}`;
  }
  out.push(rest);
  return out;
}

const NAME = "received";
const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;

const LINE_START = 0;
const CR_AT_LINE_START = 1;
const MATCHING_NAME = 2;
const AFTER_NAME = 3;
const SKIP_LINE = 4;
const HEADER_ENDED = 5;

/**
 * Counts `Received:` fields in the header section of a message fed in chunks of any split, for loop
 * detection (RFC 5321 6.3; reply 554 5.4.6 over a threshold). Field names match case-insensitively at
 * the start of a line, optional WSP before the colon (RFC 5322 4.5 obsolete syntax). Counting stops at
 * the first empty line. Holds no data between calls.
 */
export class ReceivedHeaderCounter {
  #state = LINE_START;
  #matched = 0;
  #count = 0;

  /** Number of Received fields seen so far. */
  get count(): number {
    return this.#count;
  }

  /** True once the empty line ending the header section was seen. */
  get headerEnded(): boolean {
    return this.#state === HEADER_ENDED;
  }

  /** Feeds decoded message octets. */
  push(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length && this.#state !== HEADER_ENDED; i++) {
      const byte = chunk[i] as number;
      if (byte === LF) {
        // An empty line (CRLF, or a lone LF, leniently) ends the header section (RFC 5322 2.1).
        this.#state = this.#state === LINE_START || this.#state === CR_AT_LINE_START
          ? HEADER_ENDED
          : LINE_START;
        continue;
      }
      switch (this.#state) {
        case LINE_START:
          if (byte === CR) {
            this.#state = CR_AT_LINE_START;
          } else if ((byte | 0x20) === NAME.charCodeAt(0)) {
            this.#state = MATCHING_NAME;
            this.#matched = 1;
          } else {
            this.#state = SKIP_LINE;
          }
          break;
        case CR_AT_LINE_START:
          this.#state = SKIP_LINE;
          break;
        case MATCHING_NAME:
          if ((byte | 0x20) === NAME.charCodeAt(this.#matched)) {
            this.#matched++;
            if (this.#matched === NAME.length) this.#state = AFTER_NAME;
          } else {
            this.#state = SKIP_LINE;
          }
          break;
        case AFTER_NAME:
          if (byte === COLON) {
            this.#count++;
            this.#state = SKIP_LINE;
          } else if (byte !== 0x20 && byte !== 0x09) {
            this.#state = SKIP_LINE;
          }
          break;
      }
    }
  }
}

/** Counts Received fields in a whole message held in memory. */
export function countReceivedHeaders(message: Uint8Array): number {
  const counter = new ReceivedHeaderCounter();
  counter.push(message);
  return counter.count;
}
