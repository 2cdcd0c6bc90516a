/**
 * What the client refuses to offer a customer at all, decided before MAIL from the customer's EHLO
 * keywords: a message over its SIZE, 8-bit content without 8BITMIME, a message that needs SMTPUTF8
 * without it. Such recipients are FAILED here (the DSN says the relay refused them itself), never sent.
 *
 * No conversion: 8-bit content is not rewritten as 7-bit MIME (that would change MIME structure and
 * break DKIM signatures; RFC 6152 3 leaves failing as the alternative, docs/protocol.md#no-downgrade),
 * and a relay must not downgrade a message that needs SMTPUTF8 (RFC 6531 3.2).
 *
 * @module
 */

import type { DeliverableMessage } from "./types.ts";
import { type Capabilities, sizeLimitOf } from "../smtp/ehlo.ts";
import { isAscii } from "./commands.ts";
import type { Recipient } from "./outcome.ts";

/** A recipient refused locally, with the text recorded on it (starts with its enhanced code). */
export interface LocalRefusal {
  /** The recipient. */
  recipient: Recipient;
  /** `5.3.4 ...`, `5.6.3 ...` or `5.6.7 ...`. */
  text: string;
}

/** The recipients to offer, and those refused without asking the customer. */
export interface LocalVerdict {
  /** Recipients to send, in order. */
  todo: Recipient[];
  /** Recipients refused locally. */
  refused: LocalRefusal[];
}

/** Splits `message`'s recipients into those the customer can be offered and those it cannot take. */
export function refuseLocally(message: DeliverableMessage, caps: Capabilities): LocalVerdict {
  const all = (text: string): LocalVerdict => ({
    todo: [],
    refused: message.recipients.map((recipient) => ({ recipient, text })),
  });
  const limit = sizeLimitOf(caps);
  if (limit !== undefined && limit > 0 && message.size > limit) {
    // RFC 1870 6.1: a client must not send a message larger than the advertised SIZE; 5.3.4 too big.
    return all(`5.3.4 Message size ${message.size} exceeds the receiving server's limit ${limit}`);
  }
  if (message.eightBit && !caps.has("8BITMIME")) {
    // RFC 6152 3: no conversion to 7-bit MIME here, the message is failed (5.6.3).
    return all("5.6.3 Message has 8-bit content and the receiving server lacks 8BITMIME");
  }
  if (caps.has("SMTPUTF8")) return { todo: [...message.recipients], refused: [] };
  // RFC 6531 3.2: without SMTPUTF8 a message that needs it must not be sent (and a relay does not downgrade).
  const needsUtf8 = !isAscii(message.mailFrom) || (message.smtputf8 && message.eightBit);
  const verdict: LocalVerdict = { todo: [], refused: [] };
  for (const r of message.recipients) {
    if (needsUtf8 || !isAscii(r.address)) {
      verdict.refused.push({
        recipient: r,
        text: "5.6.7 Message needs SMTPUTF8 and the receiving server does not offer it",
      });
    } else {
      verdict.todo.push(r);
    }
  }
  return verdict;
}
