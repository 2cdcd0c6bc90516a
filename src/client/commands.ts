/**
 * The command lines the client composes from queue data: EHLO/HELO's argument, MAIL FROM and RCPT TO
 * with only the parameters the customer advertised. Pure functions of the message and the customer's
 * EHLO keywords.
 *
 * @module
 */

import type { DeliverableMessage } from "./types.ts";
import type { Capabilities } from "../smtp/ehlo.ts";
import { xtextEncode } from "../smtp/params.ts";
import type { Recipient } from "./outcome.ts";

/** MAIL FROM with only the parameters the customer advertised (RFC 5321 4.1.1.11, never AUTH=). */
export function mailCommand(message: DeliverableMessage, caps: Capabilities): string {
  let cmd = `MAIL FROM:<${clean(message.mailFrom)}>`;
  // RFC 1870 3: SIZE=<exact size in octets> only when SIZE was advertised.
  if (caps.has("SIZE")) cmd += ` SIZE=${message.size}`;
  if (caps.has("8BITMIME")) {
    // RFC 6152 3: BODY=8BITMIME when the content is 8-bit or was received that way.
    const declared = message.bodyType?.toUpperCase();
    if (message.eightBit || declared === "8BITMIME") cmd += " BODY=8BITMIME";
    else if (declared === "7BIT") cmd += " BODY=7BIT";
  }
  // RFC 6531 3.4: SMTPUTF8 only when advertised and the message was received with it.
  if (caps.has("SMTPUTF8") && (message.smtputf8 || !isAscii(message.mailFrom))) cmd += " SMTPUTF8";
  if (caps.has("DSN")) {
    // RFC 3461 4.3 / 4.4: pass RET and ENVID on exactly as received.
    const ret = message.ret?.toUpperCase();
    if (ret === "FULL" || ret === "HDRS") cmd += ` RET=${ret}`;
    if (message.envid !== null && message.envid !== "") {
      // Stored as received, still xtext-encoded (smtp/params.ts): pass it on unchanged (RFC 3461 4.4),
      // after checking it is plain xtext so nothing else can ride along.
      const envid = clean(message.envid);
      if (/^[\x21-\x2a\x2c-\x3c\x3e-\x7e]*(?:\+[0-9A-F]{2}[\x21-\x2a\x2c-\x3c\x3e-\x7e]*)*$/.test(envid)) {
        cmd += ` ENVID=${envid}`;
      }
    }
  }
  return cmd;
}

/** RCPT TO with NOTIFY/ORCPT only when DSN was advertised (RFC 3461 4.1, 4.2). */
export function rcptCommand(r: Recipient, caps: Capabilities): string {
  let cmd = `RCPT TO:<${clean(r.address)}>`;
  if (caps.has("DSN")) {
    const notify = r.notify?.toUpperCase();
    if (
      notify !== undefined &&
      /^(NEVER|(SUCCESS|FAILURE|DELAY)(,(SUCCESS|FAILURE|DELAY)){0,2})$/.test(notify)
    ) {
      cmd += ` NOTIFY=${notify}`;
    }
    if (r.orcpt !== null) {
      const semicolon = r.orcpt.indexOf(";");
      const type = r.orcpt.slice(0, semicolon);
      if (semicolon > 0 && /^[A-Za-z0-9][A-Za-z0-9-]*$/.test(type)) {
        cmd += ` ORCPT=${type};${xtextEncode(clean(r.orcpt.slice(semicolon + 1)))}`;
      }
    }
  }
  return cmd;
}

/**
 * Removes CR, LF and other control characters from a value that goes into a command (CRLF injection,
 * GHSA-vvjj-xcjg-gr5g; docs/protocol.md#client-commands). Queue data is already validated; this is
 * defence in depth.
 */
export function clean(value: string): string {
  // deno-lint-ignore no-control-regex
  return value.replace(/[\x00-\x1f\x7f]/g, "");
}

/** An EHLO/HELO argument: our name without spaces or controls, or an address literal (RFC 5321 4.1.3). */
export function sanitizeHelloName(name: string, localAddress: string): string {
  // deno-lint-ignore no-control-regex
  const cleaned = name.replace(/[\x00-\x20\x7f]/g, "");
  if (cleaned !== "") return cleaned;
  if (localAddress.includes(":")) return `[IPv6:${localAddress}]`;
  return localAddress === "" ? "[127.0.0.1]" : `[${localAddress}]`;
}

/** Whether `text` is all ASCII (so it needs no SMTPUTF8). */
export function isAscii(text: string): boolean {
  // deno-lint-ignore no-control-regex
  return /^[\x00-\x7f]*$/.test(text);
}
