/**
 * What the SMTP client is handed and what it hands back, in its own terms: the client knows nothing
 * of the queue. src/client/deliver_session.ts, where the queue meets the client, maps queue rows to
 * these and the outcomes back to what the queue records; src/outbound/ builds them for its own mail.
 *
 * @module
 */

/** A message to send, with the recipients to send it to. */
export interface DeliverableMessage {
  /** The caller's id for the message (logs, outcomes); the client does not interpret it. */
  id: number;
  /** Reverse-path without angle brackets; "" is the null sender. */
  mailFrom: string;
  /** Size in octets, for SIZE= (RFC 1870). */
  size: number;
  /** BODY= as received (RFC 6152), or null. */
  bodyType: string | null;
  /** The message needs SMTPUTF8 (RFC 6531). */
  smtputf8: boolean;
  /** The content holds octets > 127 (needs 8BITMIME). */
  eightBit: boolean;
  /** RFC 3461 ENVID (xtext) and RET, or null. */
  envid: string | null;
  ret: string | null;
  /** When the message arrived (ms since the epoch). */
  receivedAt: number;
  recipients: OutgoingRecipient[];
}

/** One recipient of a message to send. */
export interface OutgoingRecipient {
  /** The caller's id for the recipient; outcomes carry it back. */
  id: number;
  address: string;
  /** RFC 3461 NOTIFY (comma list) and ORCPT (`type;decoded`), or null. */
  notify: string | null;
  orcpt: string | null;
}

/** What happened to one recipient. */
export interface RecipientOutcome {
  /** The recipient's id as handed in. */
  id: number;
  /**
   * delivered: accepted for delivery; relayed: delivered, and a NOTIFY=SUCCESS DSN is the relay's to
   * write; deferred: try again later (4xx, lost connection); failed: refused for good.
   */
  result: "delivered" | "relayed" | "deferred" | "failed";
  code: number | null;
  text: string | null;
  /** For failed: the relay refused it itself (never sent), rather than the receiving server. */
  local?: boolean;
  /** The receiving server that answered (its greeting name), for a DSN's Remote-MTA. */
  remoteMta?: string | null;
}
