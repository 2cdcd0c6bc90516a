/**
 * Composes a Delivery Status Notification (RFC 3464) as an RFC 6522 `multipart/report` message. Pure:
 * no I/O and no clock; the caller passes the time, the Message-ID and the original's chunks.
 *
 * How the queue and outbound side use it:
 * 1. When recipients of a message reach a reportable state at one moment (failed at the end of an ATRN
 *    session, expired, bounced by the operator, a delay-warning step passed, relayed to a customer
 *    without DSN support), keep those for which {@link needsDsn} (policy.ts) is true. None left: no DSN.
 * 2. Call {@link composeDsn} once for the message with those recipients, the message row, the body
 *    chunks in order, `date` from the injected clock, and a unique `messageId`.
 * 3. Queue `bytes` for outbound delivery with `MAIL FROM:<>` (RFC 5321 6.1, RFC 3461 6.1), `RCPT TO:`
 *    `rcptTo`, `BODY=8BITMIME` when `eightBit`, `SMTPUTF8` when `smtputf8`, and no DSN parameters
 *    other than `NOTIFY=NEVER`. Commit that together with the deletion of the reported recipients.
 *
 * MIME layout and the choices made:
 * - Part 1, `text/plain`: plain words per recipient; `charset=us-ascii` (7bit), or `utf-8` (8bit) when
 *   an address, reply or reason in it is not ASCII.
 * - Part 2, `message/delivery-status` (7bit); `message/global-delivery-status` (8bit, RFC 6533 4) when
 *   any address or the envelope id in it is not ASCII, such addresses with address type `utf-8`. The
 *   `report-type` parameter names part 2's subtype (RFC 6522 3).
 * - Part 3, the returned content (RFC 3461 4.3: RET applies to failure reports; anything else, or no
 *   RET, returns the header section):
 *   - header section: `text/rfc822-headers` (RFC 6522 4) as it stands when it is ASCII with valid
 *     lines; `message/global-headers` (RFC 6533 4, 8bit) for the UTF-8 header section of an SMTPUTF8
 *     message; otherwise `text/rfc822-headers` quoted-printable, which carries long lines, bare CR/LF
 *     and stray 8-bit octets unchanged (RFC 2045 6.7);
 *   - full message (RET=FULL, a failure, at most `maxFullBytes`): `message/rfc822`, or `message/global`
 *     (RFC 6532 3.7) for an SMTPUTF8 message with 8-bit content; a message that is not valid 7bit/8bit
 *     data as it stands, or too large, falls back to its header section with a note in part 1.
 * - Every line ends in CRLF and is at most 998 octets (RFC 5322 2.1.1); peer-supplied text is
 *   sanitised so it cannot end a line or a part, and the boundary occurs nowhere in the content.
 *
 * @module
 */

import { type DateFormatOptions, formatRfc5322Date } from "../smtp/rfc5322_date.ts";
import { deliveryStatusBody, originalEnvelopeId, originalRecipient } from "./delivery_status.ts";
import { explanationText } from "./explanation.ts";
import { foldField, isAscii, safeText } from "./field_text.ts";
import { chooseBoundary, quotedPrintable } from "./mime.ts";
import { concat } from "../queue/spool.ts";
import { readOriginal, type ReturnedContent } from "./original.ts";
import { actionFor } from "./policy.ts";
import type { DsnMessage, DsnRecipient } from "./types.ts";

/** Default cap on a message returned in full (Postfix returns 50 kB by default, `bounce_size_limit`). */
export const DEFAULT_MAX_FULL_BYTES = 1024 * 1024;
/** Default cap on a returned header section. */
export const DEFAULT_MAX_HEADER_BYTES = 64 * 1024;

/** Input for {@link composeDsn}. */
export interface DsnInput {
  /** Our host name: `Reporting-MTA: dns; <name>` and `From: MAILER-DAEMON@<name>`. */
  reportingMta: string;
  /** Unique id for the Message-ID field, without angle brackets; `@reportingMta` is added if no "@". */
  messageId: string;
  /** Now: the Date field, and how long the message was kept. */
  date: Date;
  /** Zone of every date written, minutes east of UTC; default the local zone (rfc5322_date.ts). */
  utcOffsetMinutes?: number;
  /** MIME boundary (golden tests); default derived from `messageId`; lengthened if the content holds it. */
  boundary?: string;
  /** The original message. */
  message: DsnMessage;
  /** The recipients this DSN reports (one DSN per message and moment), at least one. */
  recipients: readonly DsnRecipient[];
  /** The original message as stored (CRLF lines, not dot-stuffed), in chunks, in order; read once. */
  content: Iterable<Uint8Array>;
  /** Largest message returned in full for RET=FULL; default {@link DEFAULT_MAX_FULL_BYTES}. */
  maxFullBytes?: number;
  /** Largest returned header section; default {@link DEFAULT_MAX_HEADER_BYTES}. */
  maxHeaderBytes?: number;
  /** RET=FULL returns an 8-bit original as headers only, so the DSN is 7-bit (no 8BITMIME needed). */
  fullOnlyIfSevenBit?: boolean;
}

/** A composed DSN and how to send it. */
export interface ComposedDsn {
  /** The whole message: header section, empty line, body; CRLF line endings. */
  bytes: Uint8Array;
  /** Envelope recipient: the original sender (send from `<>`). */
  rcptTo: string;
  /** The Message-ID field's value, with angle brackets. */
  messageId: string;
  /** The Subject field's value. */
  subject: string;
  /** The multipart boundary used. */
  boundary: string;
  /** The header section holds UTF-8 (the sender's address): send with SMTPUTF8 (RFC 6531 3.4). */
  smtputf8: boolean;
  /** The body holds 8-bit octets: send with BODY=8BITMIME (RFC 6152). */
  eightBit: boolean;
  /** Part 2 is `message/global-delivery-status` (RFC 6533). */
  global: boolean;
  /** What part 3 holds. */
  returned: ReturnedContent["kind"];
}

/** One body part: its header fields (already formatted) and body octets. */
interface Part {
  headers: string;
  body: Uint8Array;
  eightBit: boolean;
}

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Composes the DSN for one message and the recipients it reports.
 * @throws {RangeError} for the null sender (never report on a report: use `needsDsn` first), no
 *   recipients, an unusable `messageId`, or an invalid `boundary`.
 */
export function composeDsn(input: DsnInput): ComposedDsn {
  const { message, recipients } = input;
  if (message.sender === "") throw new RangeError("A DSN is never sent for the null sender <>");
  if (recipients.length === 0) throw new RangeError("A DSN needs at least one recipient");
  if (!/^[\x21-\x3b\x3d\x3f-\x7e]+$/.test(input.messageId)) {
    throw new RangeError("The DSN Message-ID must be printable ASCII without spaces or angle brackets");
  }
  const dateOptions: DateFormatOptions = input.utcOffsetMinutes === undefined
    ? {}
    : { utcOffsetMinutes: input.utcOffsetMinutes };
  const maxFullBytes = input.maxFullBytes ?? DEFAULT_MAX_FULL_BYTES;
  const anyFailed = recipients.some((r) => actionFor(r.cause) === "failed");

  // RFC 3461 4.3: RET=FULL asks for the whole message in failure reports only.
  const returned = readOriginal(input.content, {
    full: anyFailed && message.ret?.toUpperCase() === "FULL",
    maxFullBytes,
    maxHeaderBytes: input.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES,
    fullOnlyIfSevenBit: input.fullOnlyIfSevenBit ?? false,
  });

  // RFC 6533 4: a global report when something it must show is not ASCII.
  const global = [
    originalEnvelopeId(message.envid) ?? "",
    ...recipients.flatMap((r) => [r.address, originalRecipient(r.orcpt)?.address ?? ""]),
  ].some((text) => !isAscii(text));
  const text = explanationText({
    reportingMta: input.reportingMta,
    message,
    recipients,
    date: input.date,
    dateOptions,
    returned,
    maxFullBytes,
  });
  const status = deliveryStatusBody({
    reportingMta: input.reportingMta,
    message,
    recipients,
    utf8: global,
    dateOptions,
  });
  const parts: Part[] = [
    textPart(`text/plain; charset=${isAscii(text) ? "us-ascii" : "utf-8"}`, "Notification", text),
    textPart(
      global ? "message/global-delivery-status" : "message/delivery-status",
      "Delivery report",
      status,
    ),
    returnedPart(returned, message.smtputf8 === true),
  ];

  const id = input.messageId.includes("@") ? input.messageId : `${input.messageId}@${input.reportingMta}`;
  const messageId = `<${id}>`;
  const boundary = chooseBoundary(id, parts.map((p) => p.body), input.boundary);
  const subject = subjectFor(recipients);
  const rcptTo = message.sender;
  const smtputf8 = !isAscii(rcptTo);
  const host = safeText(input.reportingMta, false);
  const header = [
    foldField("From", `Mail Delivery System <MAILER-DAEMON@${host}>`),
    foldField("To", `<${safeText(rcptTo, smtputf8)}>`),
    foldField("Subject", subject),
    foldField("Date", formatRfc5322Date(input.date, dateOptions)),
    foldField("Message-ID", messageId),
    // RFC 3834 5: an automatic response to a message.
    foldField("Auto-Submitted", "auto-replied"),
    foldField("MIME-Version", "1.0"),
    // RFC 6522 3: report-type is the subtype of the second part; boundary is required.
    foldField(
      "Content-Type",
      `multipart/report; report-type=${
        global ? "global-delivery-status" : "delivery-status"
      }; boundary="${boundary}"`,
    ),
  ].join("");

  const pieces: Uint8Array[] = [
    encoder.encode(`${header}\r\nThis is a MIME-formatted delivery status notification.\r\n`),
  ];
  for (const part of parts) {
    // RFC 2046 5.1.1: the CRLF before a delimiter belongs to it, so a body ending in CRLF keeps it.
    pieces.push(encoder.encode(`\r\n--${boundary}\r\n${part.headers}\r\n`), part.body);
    if (!endsWithCrlf(part.body)) pieces.push(encoder.encode("\r\n"));
  }
  pieces.push(encoder.encode(`\r\n--${boundary}--\r\n`));

  return {
    bytes: concat(pieces),
    rcptTo,
    messageId,
    subject,
    boundary,
    smtputf8,
    eightBit: parts.some((p) => p.eightBit),
    global,
    returned: returned.kind,
  };
}

/** Subject by the most serious action reported. */
function subjectFor(recipients: readonly DsnRecipient[]): string {
  const actions = new Set(recipients.map((r) => actionFor(r.cause)));
  if (actions.has("failed")) return "Undelivered mail returned to sender";
  if (actions.has("delayed")) return "Delayed mail (still being retried)";
  return "Mail handed to the recipient's server";
}

/** A body part with its Content-Type, Content-Description and Content-Transfer-Encoding fields. */
function makePart(contentType: string, description: string, encoding: string, body: Uint8Array): Part {
  return {
    headers: foldField("Content-Type", contentType) + foldField("Content-Description", description) +
      foldField("Content-Transfer-Encoding", encoding),
    body,
    eightBit: encoding === "8bit",
  };
}

/** A part whose body we wrote ourselves: 7bit when ASCII, else 8bit. */
function textPart(contentType: string, description: string, text: string): Part {
  return makePart(contentType, description, isAscii(text) ? "7bit" : "8bit", encoder.encode(text));
}

/** Part 3: the returned header section or message (see the module notes for the type choice). */
function returnedPart(returned: ReturnedContent, smtputf8: boolean): Part {
  const { bytes, eightBit, needsEncoding } = returned;
  if (returned.kind === "full") {
    // RFC 6532 3.7: an SMTPUTF8 message (UTF-8 header fields possible) travels as message/global.
    // RFC 2046 5.2.1: message/rfc822 is 7bit or 8bit, never encoded (readOriginal checked it may be).
    const type = smtputf8 && eightBit ? "message/global" : "message/rfc822";
    return makePart(type, "Undelivered message", eightBit ? "8bit" : "7bit", bytes);
  }
  if (!needsEncoding && !eightBit) return makePart("text/rfc822-headers", "Message headers", "7bit", bytes);
  // RFC 6533 4: the UTF-8 header section of an SMTPUTF8 message is message/global-headers.
  if (!needsEncoding && smtputf8 && isUtf8(bytes)) {
    return makePart("message/global-headers", "Message headers", "8bit", bytes);
  }
  // Anything else (long lines, bare CR/LF, stray 8-bit octets) is carried intact, 7-bit (RFC 2045 6.7).
  const encoded = encoder.encode(quotedPrintable(bytes));
  return makePart("text/rfc822-headers", "Message headers", "quoted-printable", encoded);
}

function isUtf8(bytes: Uint8Array): boolean {
  try {
    strictUtf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

function endsWithCrlf(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[bytes.length - 2] === 0x0d && bytes[bytes.length - 1] === 0x0a;
}
