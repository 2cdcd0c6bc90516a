/**
 * From the customer's replies to one outcome per recipient (docs/protocol.md#reply-mapping):
 *
 * - 2xx to RCPT and 2xx to the final dot: delivered.
 * - 5xx to MAIL, RCPT, DATA or the final dot: failed (it waits for its DSN).
 * - Anything else (4xx, a bogus 1xx/3xx, no reply because the session ended): deferred, stays queued.
 *   A recipient without a definitive answer is never lost (at-least-once; RFC 5321 6.1).
 *
 * Also how a reply is written down on a recipient row: {@linkcode describeReply} (one line, for logs and
 * short texts) and {@linkcode recordReply} (line by line, quoted in the DSN).
 *
 * @module
 */

import type { DeliverableMessage, RecipientOutcome } from "./types.ts";
import { Code451LocalError, Code552ExceededStorage } from "../smtp/codes.ts";
import type { ParsedReply } from "../smtp/reply.ts";
import type { DeliveryAbort } from "./errors.ts";

/** Longest reply text kept on a recipient row. */
const MAX_RECORDED_TEXT = 500;
/** Longest reply recorded whole for a DSN (a reply is at most 100 lines of 512 octets here). */
const MAX_RECORDED_REPLY = 8000;
/**
 * RFC 5321 4.5.3.1.8: a server must take at least 100 recipients in a transaction, so a 552 after that
 * many is "too many recipients" (4.5.3.1.10), not "too big".
 */
const MIN_RECIPIENTS_A_SERVER_TAKES = 100;

/** One recipient of a message handed to the client. */
export type Recipient = DeliverableMessage["recipients"][number];

/** Records the outcome of one recipient. */
export type SetOutcome = (
  r: Recipient,
  result: RecipientOutcome["result"],
  code: number | null,
  text: string,
  /** The relay refused it itself (the DSN says so, rather than quoting the customer). */
  local?: boolean,
) => void;

/** What happened to one message. */
export interface MessageResult {
  /** One outcome per recipient that was handed in, in the same order. */
  outcomes: RecipientOutcome[];
  /** Recipients delivered (2xx to RCPT and to the final dot). */
  delivered: number;
  /** Recipients that stay queued. */
  deferred: number;
  /** Recipients failed (5xx, or refused locally). */
  failed: number;
  /** Set when the session cannot continue; every unconfirmed recipient was deferred with its text. */
  abort: DeliveryAbort | null;
}

/** The outcomes of one message as they come in, and the {@linkcode MessageResult} they add up to. */
export class MessageOutcomes {
  readonly #outcomes = new Map<number, RecipientOutcome>();

  /** Records (or replaces) a recipient's outcome; the text is clipped far beyond any real reply. */
  readonly set: SetOutcome = (r, result, code, text, local) => {
    this.#outcomes.set(r.id, {
      id: r.id,
      result,
      code,
      text: clip(text, MAX_RECORDED_REPLY),
      ...(local ? { local } : {}),
    });
  };

  /**
   * One outcome per recipient of `message`, in its order. A recipient without one stays queued: deferred
   * with the abort's code and text, or `451 4.4.2 Not attempted`.
   */
  result(message: DeliverableMessage, abort: DeliveryAbort | null): MessageResult {
    let delivered = 0;
    let deferred = 0;
    let failed = 0;
    const outcomes = message.recipients.map((r) => {
      // Every recipient without a definitive answer stays queued (at-least-once).
      const o = this.#outcomes.get(r.id) ??
        {
          id: r.id,
          result: "deferred" as const,
          code: abort?.code ?? Code451LocalError,
          text: clip(abort?.text ?? "4.4.2 Not attempted"),
        };
      // "relayed" is a delivery too (src/client/types.ts).
      if (o.result === "delivered" || o.result === "relayed") delivered++;
      else if (o.result === "deferred") deferred++;
      else failed++;
      return o;
    });
    return { outcomes, delivered, deferred, failed, abort };
  }
}

/**
 * Maps a reply to an outcome by its class: 5xx failed, 2xx delivered when `positiveMeansDelivered` (the
 * reply to the final dot), anything else deferred.
 */
export function outcomeOfReply(
  r: Recipient,
  reply: ParsedReply,
  set: SetOutcome,
  positiveMeansDelivered = false,
): void {
  const cls = Math.floor(reply.code / 100);
  if (cls === 2 && positiveMeansDelivered) set(r, "delivered", reply.code, recordReply(reply));
  else if (cls === 5) set(r, "failed", reply.code, recordReply(reply));
  else set(r, "deferred", reply.code, recordReply(reply));
}

/**
 * RCPT 552 is temporary ("too many recipients", RFC 5321 4.5.3.1.10) when at least 100 were already
 * accepted or the enhanced code is 5.5.3; otherwise permanent (RFC 1870 too big)
 * (docs/protocol.md#reply-mapping).
 */
export function isTemporary552(reply: ParsedReply, acceptedSoFar: number): boolean {
  return reply.code === Code552ExceededStorage &&
    (acceptedSoFar >= MIN_RECIPIENTS_A_SERVER_TAKES || reply.enhanced === "5.5.3");
}

/** The reply as recorded on a recipient: `5.1.1 User unknown` (enhanced code, then text lines). */
export function describeReply(reply: ParsedReply): string {
  const text = reply.lines.filter((l) => l !== "").join(" / ");
  const parts = [String(reply.code), reply.enhanced, text].filter((p) => p !== undefined && p !== "");
  return clip(parts.join(" "));
}

/**
 * The reply as recorded on a recipient for its DSN: code and enhanced code, then each line's text, one
 * per line (`550 5.1.1 first\nsecond`), so the DSN can quote it as the customer sent it (RFC 3464
 * 2.3.6). Clipped only far beyond any real reply.
 */
export function recordReply(reply: ParsedReply): string {
  const head = [String(reply.code), reply.enhanced].filter((p) => p !== undefined).join(" ");
  return clip(`${head} ${reply.lines.join("\n")}`.trimEnd(), MAX_RECORDED_REPLY);
}

/** `text`, cut to `max` characters with `...` at the end. */
function clip(text: string, max = MAX_RECORDED_TEXT): string {
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}
