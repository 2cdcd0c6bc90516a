/**
 * The rows of the relay's own postmaster mailbox: recipients under the reserved domain key ""
 * (src/queue/postmaster.ts says what the mailbox is for). Prepared statements: the byte count is read
 * at every RCPT and every enqueue that includes the mailbox (its quota), and the message count on
 * every /status. Each is an index range over the mailbox's rows only. Callers own the transactions.
 *
 * @module
 */
import type { OpenDatabase } from "./db.ts";

/** The domain key of the relay's own postmaster mailbox: empty, which no hosted domain can be. */
export const POSTMASTER_MAILBOX = "";

/** A mailbox message that may be forwarded to an outside postmasterAddress. */
export interface PostmasterRow {
  /** The recipient row. */
  id: number;
  messageId: number;
  mailFrom: string;
  size: number;
  eightBit: boolean;
  smtputf8: boolean;
}

/** Statements of the postmaster mailbox. */
export class PostmasterStore {
  readonly #stmts;

  constructor(open: OpenDatabase) {
    const raw = open.raw;
    this.#stmts = {
      bytes: raw.prepare(
        "SELECT COALESCE(SUM(message_size), 0) AS n FROM recipients WHERE domain = '' AND status = 'queued'",
      ),
      count: raw.prepare(
        "SELECT COUNT(DISTINCT message_id) AS n FROM recipients WHERE domain = '' AND status = 'queued'",
      ),
      waiting: raw.prepare(
        "SELECT r.id AS id, r.message_id AS messageId, m.mail_from AS mailFrom, m.size AS size, " +
          "m.eight_bit AS eightBit, m.smtputf8 AS smtputf8 FROM recipients r JOIN messages m ON m.id = r.message_id " +
          "WHERE r.domain = '' AND r.status = 'queued' ORDER BY r.id LIMIT ?",
      ),
      deleteRecipient: raw.prepare("DELETE FROM recipients WHERE id = ?"),
      deleteMessageIfDone: raw.prepare(
        "DELETE FROM messages WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM recipients WHERE message_id = ?1)",
      ),
    };
  }

  /** Bytes waiting in the mailbox. */
  mailboxBytes(): number {
    return (this.#stmts.bytes.get() as { n: number }).n;
  }

  /** Messages waiting in the mailbox. */
  mailboxCount(): number {
    return (this.#stmts.count.get() as { n: number }).n;
  }

  /** The oldest `limit` mailbox recipients with their message's envelope facts. */
  waiting(limit: number): PostmasterRow[] {
    const rows = this.#stmts.waiting.all(
      limit,
    ) as unknown as (Omit<PostmasterRow, "eightBit" | "smtputf8"> & { eightBit: number; smtputf8: number })[];
    return rows.map((r) => ({ ...r, eightBit: Boolean(r.eightBit), smtputf8: Boolean(r.smtputf8) }));
  }

  /** Removes a forwarded recipient, and its message (body included) when no recipient is left. */
  removeForwarded(recipientId: number, messageId: number): void {
    this.#stmts.deleteRecipient.run(recipientId);
    this.#stmts.deleteMessageIfDone.run(messageId);
  }
}
