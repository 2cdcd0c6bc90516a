/**
 * Shared setup for the outbound tests: short timeouts, a DSN-like message, a capturing logger.
 *
 * @module
 */

import { Logger } from "../../src/log/logger.ts";
import type { OutboundTimeouts, SendOutboundOptions } from "../../src/outbound/send.ts";

/** Short timeouts (ms) so broken peers fail fast; no test asserts on exact timing. */
export const TEST_TIMEOUTS: OutboundTimeouts = {
  greetingMs: 2000,
  commandMs: 2000,
  dataInitMs: 2000,
  dataBlockMs: 2000,
  dataTermMs: 2000,
  connectMs: 2000,
  tlsHandshakeMs: 2000,
  attemptMs: 20_000,
};

/** A small bounce-like message with a line that needs dot-stuffing. */
export const DSN_TEXT = [
  "From: Mail Delivery System <MAILER-DAEMON@relay.test>",
  "To: sender@origin.test",
  "Subject: Undelivered Mail Returned to Sender",
  "Auto-Submitted: auto-replied",
  "",
  "Your message could not be delivered.",
  ".a line that starts with a dot",
  "",
].join("\r\n");

/** The message fields of {@linkcode sendOutbound} for `text` (one chunk per call). */
export function messageOf(
  text: string,
  recipients: string[],
): Pick<SendOutboundOptions, "mailFrom" | "recipients" | "size" | "body"> {
  const bytes = new TextEncoder().encode(text);
  return { mailFrom: "", recipients, size: bytes.length, body: () => [bytes] };
}

/** A logger at `level` whose lines are kept in `lines`. */
export function capturingLogger(
  level: "trace" | "debug" | "info" = "info",
): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger({ level, sink: (line) => lines.push(line) }), lines };
}
