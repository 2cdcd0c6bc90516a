/**
 * What the DSN composer is told: the message, and per recipient why it is reported.
 *
 * @module
 */

/** RFC 3464 2.3.3 actions this relay reports (it never expands, and "delivered" is the customer's job). */
export type DsnAction = "failed" | "delayed" | "relayed";

/**
 * A reply from the recipient's server, in the shape `ReplyParser` returns (src/smtp/reply.ts): the
 * code, the RFC 2034 enhanced code when the first line carried one, and each line's text without them.
 */
export interface DsnReply {
  /** Three-digit reply code. */
  code: number;
  /** Enhanced status code (RFC 3463), repeated on every line on the wire (RFC 2034 3). */
  enhanced?: string;
  /** Text of each line. */
  lines: readonly string[];
}

/** Fields every reported recipient has. */
interface RecipientBase {
  /** Forward-path as accepted, without angle brackets (Final-Recipient, RFC 3464 2.3.2). */
  address: string;
  /**
   * ORCPT as the queue stores it: `addr-type;address`, xtext already decoded (RFC 3461 4.2); `utf-8`
   * addresses keep their RFC 6533 `\x{HHHH}` escapes. `null`/absent when the client sent no ORCPT.
   */
  orcpt?: string | null;
  /** When delivery to this recipient was last attempted (Last-Attempt-Date, RFC 3464 2.3.7). */
  lastAttempt?: Date;
}

/** The customer's server refused the recipient or the message with a 5xx after the turn. */
export interface CustomerRejected extends RecipientBase {
  cause: "customer-rejected";
  /** The refusal, reported verbatim (Diagnostic-Code). */
  reply: DsnReply;
  /** The customer's host name or address literal (Remote-MTA; its greeting or EHLO name). */
  remoteMta?: string;
}

/** The relay refused to send it on (8-bit to a peer without 8BITMIME, too big, SMTPUTF8 needed, ...). */
export interface LocalRefusal extends RecipientBase {
  cause: "local-refusal";
  /** Why, for the sender; may start with the enhanced code, e.g. `5.6.3 Message has 8-bit content`. */
  text: string;
  /** Enhanced code; default: the code `text` starts with, else `5.0.0`. */
  status?: string;
}

/** Queue lifetime passed without the customer collecting the mail. */
export interface Expired extends RecipientBase {
  cause: "expired";
  /** When the recipient's domain last collected mail (ATRN); `null`: never; absent: unknown. */
  lastCollected?: Date | null;
  /** The last temporary refusal from the customer, if delivery was attempted. */
  lastReply?: DsnReply;
  /** Host that gave `lastReply`. */
  remoteMta?: string;
}

/** An operator returned the message (`queue bounce`). */
export interface OperatorBounce extends RecipientBase {
  cause: "operator-bounce";
  /** The operator's reason, shown to the sender. */
  reason?: string;
}

/** Still queued after a warning step: a delay warning. */
export interface Delayed extends RecipientBase {
  cause: "delayed";
  /** When the relay gives up (Will-Retry-Until, RFC 3464 2.3.9): the message's expiry. */
  willRetryUntil: Date;
  /** When the recipient's domain last collected mail (ATRN); `null`: never; absent: unknown. */
  lastCollected?: Date | null;
  /** The last temporary refusal from the customer, if delivery was attempted. */
  lastReply?: DsnReply;
  /** Host that gave `lastReply`. */
  remoteMta?: string;
}

/** Handed to a customer server without DSN support, and the sender asked for NOTIFY=SUCCESS. */
export interface Relayed extends RecipientBase {
  cause: "relayed";
  /** The customer's acceptance, e.g. `250 2.0.0 Ok`. */
  reply?: DsnReply;
  /** The customer's host name or address literal. */
  remoteMta?: string;
}

/** One recipient to report, by cause. */
export type DsnRecipient = CustomerRejected | LocalRefusal | Expired | OperatorBounce | Delayed | Relayed;

/** Why a recipient is reported. */
export type DsnCause = DsnRecipient["cause"];

/** The original message, as the queue stores it. */
export interface DsnMessage {
  /** Reverse-path without angle brackets (the DSN goes there); never `""`: see `needsDsn`. */
  sender: string;
  /** When the relay accepted it (Arrival-Date, RFC 3464 2.2.5). */
  arrivalDate: Date;
  /** ENVID exactly as received, still xtext (RFC 3461 4.4); decoded for Original-Envelope-Id. */
  envid?: string | null;
  /** RET as received (RFC 3461 4.3); anything but `FULL` returns the header section. */
  ret?: string | null;
  /** The message was received with SMTPUTF8 (RFC 6531), so its header section may hold UTF-8. */
  smtputf8?: boolean;
  /** Our queue id, quoted in the text so a sender can give it to support. */
  queueId?: string | number;
}
