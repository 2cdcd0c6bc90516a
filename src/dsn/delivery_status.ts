/**
 * The machine-readable part of a DSN: the body of `message/delivery-status` (RFC 3464 2) or, when
 * an address or the envelope id is not ASCII, of `message/global-delivery-status` (RFC 6533 4).
 *
 * @module
 */

import { xtextDecode } from "../smtp/params.ts";
import { type DateFormatOptions, formatRfc5322Date } from "../smtp/rfc5322_date.ts";
import { foldField, isAscii, safeText } from "./field_text.ts";
import { actionFor } from "./policy.ts";
import { remoteMtaName, replyWireLines } from "./remote.ts";
import { statusFor } from "./status.ts";
import type { DsnMessage, DsnRecipient } from "./types.ts";

/** Diagnostic type of our own (not SMTP) diagnostics; unregistered types start with "X-" (RFC 3464 2.3.6). */
export const LOCAL_DIAGNOSTIC_TYPE = "X-ODMR-Relay";

/** ENVID decoded from xtext (RFC 3461 4.4: the DSN carries it decoded, RFC 3464 2.2.1), or undefined. */
export function originalEnvelopeId(envid: string | null | undefined): string | undefined {
  if (envid === null || envid === undefined || envid === "") return undefined;
  // The intake refuses invalid xtext; should one still be stored, show it as it came rather than drop it.
  return xtextDecode(envid) ?? envid;
}

/**
 * The ORCPT as it appears in Original-Recipient (RFC 3464 2.3.1): its address type and the address.
 * `utf-8` addresses (RFC 6533 3) are shown with their `\x{HHHH}` escapes resolved, so `address` is
 * what a reader should see; it is ASCII only when the address is.
 */
export function originalRecipient(
  orcpt: string | null | undefined,
): { type: string; address: string } | undefined {
  if (orcpt === null || orcpt === undefined || orcpt === "") return undefined;
  const semicolon = orcpt.indexOf(";");
  const type = semicolon === -1 ? "rfc822" : orcpt.slice(0, semicolon);
  const address = semicolon === -1 ? orcpt : orcpt.slice(semicolon + 1);
  if (type.toLowerCase() !== "utf-8") return { type, address };
  // RFC 6533 3: EmbeddedUnicodeChar = "\x{" HEXPOINT "}".
  return {
    type,
    address: address.replace(/\\x\{([0-9A-Fa-f]{2,6})\}/g, (escape, hex: string) => {
      const point = parseInt(hex, 16);
      return point > 0x10ffff || (point >= 0xd800 && point <= 0xdfff) ? escape : String.fromCodePoint(point);
    }),
  };
}

/**
 * `type; address` for an address field: `rfc822` for an ASCII address, `utf-8` with the address in
 * UTF-8 for any other (RFC 6533 3, utf-8-addr-unitext; only in a global DSN).
 */
function addressField(type: string, address: string, utf8: boolean): string {
  if (!isAscii(address)) return `utf-8; ${safeText(address, utf8)}`;
  return `${safeText(type, false)}; ${safeText(address, false)}`;
}

/** What {@link deliveryStatusBody} needs. */
export interface DeliveryStatusInput {
  /** Our host name (Reporting-MTA). */
  reportingMta: string;
  message: DsnMessage;
  recipients: readonly DsnRecipient[];
  /** Write a global (UTF-8) report: RFC 6533. */
  utf8: boolean;
  /** Zone for every date. */
  dateOptions: DateFormatOptions;
}

/**
 * The per-message fields, then one block of per-recipient fields for each recipient, each block
 * preceded by an empty line (RFC 3464 2.1), every line ending in CRLF and folded to fit.
 */
export function deliveryStatusBody(input: DeliveryStatusInput): string {
  const { utf8 } = input;
  const date = (d: Date): string => formatRfc5322Date(d, input.dateOptions);
  // RFC 3464 2.2: per-message-fields, in the grammar's order.
  const fields: [string, string][] = [];
  const envid = originalEnvelopeId(input.message.envid);
  // RFC 3464 2.2.1 / RFC 3461 4.4: MUST be present, decoded, when ENVID was given, and absent otherwise.
  if (envid !== undefined) fields.push(["Original-Envelope-Id", safeText(envid, utf8)]);
  // RFC 3464 2.2.2: Reporting-MTA: mta-name-type ; mta-name.
  fields.push(["Reporting-MTA", `dns; ${safeText(input.reportingMta, false)}`]);
  // RFC 3464 2.2.5.
  fields.push(["Arrival-Date", date(input.message.arrivalDate)]);
  let body = fields.map(([name, value]) => foldField(name, value)).join("");

  for (const r of input.recipients) {
    // RFC 3464 2.3: per-recipient-fields, in the grammar's order.
    const block: [string, string][] = [];
    const orcpt = originalRecipient(r.orcpt);
    // RFC 3464 2.3.1 / RFC 3461 4.2: present exactly when ORCPT was given.
    if (orcpt !== undefined) {
      block.push(["Original-Recipient", addressField(orcpt.type, orcpt.address, utf8)]);
    }
    // RFC 3464 2.3.2: the address as the relay accepted it.
    block.push(["Final-Recipient", addressField("rfc822", r.address, utf8)]);
    block.push(["Action", actionFor(r.cause)]); // RFC 3464 2.3.3
    block.push(["Status", statusFor(r)]); // RFC 3464 2.3.4
    const remote = "remoteMta" in r ? remoteMtaName(r.remoteMta) : undefined;
    if (remote !== undefined) block.push(["Remote-MTA", `dns; ${remote}`]); // RFC 3464 2.3.5
    const diagnostic = diagnosticCode(r, utf8);
    if (diagnostic !== undefined) block.push(["Diagnostic-Code", diagnostic]); // RFC 3464 2.3.6
    if (r.lastAttempt !== undefined) block.push(["Last-Attempt-Date", date(r.lastAttempt)]); // RFC 3464 2.3.7
    // RFC 3464 2.3.9: only in delayed reports, when the relay gives up.
    if (r.cause === "delayed") block.push(["Will-Retry-Until", date(r.willRetryUntil)]);
    body += "\r\n" + block.map(([name, value]) => foldField(name, value)).join("");
  }
  return body;
}

/**
 * Diagnostic-Code (RFC 3464 2.3.6): the customer's reply verbatim as `smtp; 550-5.1.1 ... 550 5.1.1
 * ...`, a multi-line reply's lines joined by spaces (what Postfix and mox write) and folded; our own
 * reason for local refusals and operator bounces; nothing when there is neither.
 */
function diagnosticCode(r: DsnRecipient, utf8: boolean): string | undefined {
  const reply = r.cause === "customer-rejected" || r.cause === "relayed"
    ? r.reply
    : r.cause === "expired" || r.cause === "delayed"
    ? r.lastReply
    : undefined;
  if (reply !== undefined) return `smtp; ${replyWireLines(reply).map((l) => safeText(l, utf8)).join(" ")}`;
  if (r.cause === "local-refusal") return `${LOCAL_DIAGNOSTIC_TYPE}; ${safeText(r.text, utf8)}`;
  if (r.cause === "operator-bounce") {
    const reason = r.reason === undefined || r.reason === "" ? "" : `: ${safeText(r.reason, utf8)}`;
    return `${LOCAL_DIAGNOSTIC_TYPE}; Returned by the relay operator${reason}`;
  }
  return undefined;
}
