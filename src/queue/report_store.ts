/**
 * The queue rows the reporting jobs read and write: recipients waiting for a DSN (status `failed` or
 * `relayed`), queued recipients old enough for a delay warning, domains whose customer should be told
 * that mail is waiting, and the small durable state of those scans. Prepared statements over the same
 * SQLite connection as the queue store; callers own the transactions (QueueStore.transaction).
 *
 * @module
 */
import type { OpenDatabase } from "./db.ts";

/** A recipient waiting for its DSN. */
export interface PendingRecipient {
  id: number;
  address: string;
  domain: string;
  status: "failed" | "relayed";
  notify: string | null;
  orcpt: string | null;
  lastCode: number | null;
  lastText: string | null;
  lastAttemptAt: number | null;
  failureKind: string | null;
  remoteMta: string | null;
}

/** The message facts a DSN quotes. */
export interface ReportedMessage {
  id: number;
  mailFrom: string;
  receivedAt: number;
  envid: string | null;
  ret: string | null;
  smtputf8: boolean;
}

/** A queued recipient old enough for a delay warning. */
export interface DelayedRecipient {
  id: number;
  messageId: number;
  address: string;
  domain: string;
  notify: string | null;
  orcpt: string | null;
  queuedAt: number;
  lastCode: number | null;
  lastText: string | null;
  lastAttemptAt: number | null;
  remoteMta: string | null;
}

/** What the reporting jobs need to know about a domain. */
export interface DomainFacts {
  name: string;
  retentionMs: number | null;
  lastAtrnAt: number | null;
  notifyAddress: string | null;
  notifyAfterMs: number | null;
  notifiedAt: number | null;
  queuedRecipients: number;
}

/** Statements of the reporting jobs. */
export class ReportStore {
  readonly #stmts;

  constructor(open: OpenDatabase) {
    const raw = open.raw;
    this.#stmts = {
      // The partial index recipients_dsn_pending holds exactly these rows.
      pendingMessages: raw.prepare(
        "SELECT DISTINCT message_id AS id FROM recipients WHERE status <> 'queued' ORDER BY message_id LIMIT ?",
      ),
      pendingCount: raw.prepare(
        "SELECT COUNT(*) AS recipients, COUNT(DISTINCT message_id) AS messages FROM recipients " +
          "WHERE status <> 'queued'",
      ),
      message: raw.prepare(
        "SELECT id, mail_from AS mailFrom, received_at AS receivedAt, envid, ret, smtputf8 FROM messages WHERE id = ?",
      ),
      pendingOf: raw.prepare(
        "SELECT id, address, domain, status, notify, orcpt, last_code AS lastCode, last_text AS lastText, " +
          "last_attempt_at AS lastAttemptAt, failure_kind AS failureKind, remote_mta AS remoteMta " +
          "FROM recipients WHERE message_id = ? AND status <> 'queued' ORDER BY id",
      ),
      deletePending: raw.prepare("DELETE FROM recipients WHERE message_id = ? AND status <> 'queued'"),
      deleteMessageIfDone: raw.prepare(
        "DELETE FROM messages WHERE id = ? AND NOT EXISTS (SELECT 1 FROM recipients WHERE message_id = ?)",
      ),
      delayed: raw.prepare(
        "SELECT DISTINCT message_id AS messageId FROM recipients " +
          "WHERE domain = ? AND status = 'queued' AND queued_at > ? AND queued_at <= ? AND delay_warnings < ? " +
          "ORDER BY message_id LIMIT ?",
      ),
      delayedOfMessage: raw.prepare(
        "SELECT id, message_id AS messageId, address, domain, notify, orcpt, queued_at AS queuedAt, " +
          "last_code AS lastCode, last_text AS lastText, last_attempt_at AS lastAttemptAt, remote_mta AS remoteMta " +
          "FROM recipients WHERE message_id = ? AND status = 'queued' AND queued_at <= ? AND delay_warnings < ? " +
          "ORDER BY id",
      ),
      markWarned: raw.prepare("UPDATE recipients SET delay_warnings = ? WHERE id = ? AND delay_warnings < ?"),
      domains: raw.prepare(
        "SELECT name, retention_ms AS retentionMs, last_atrn_at AS lastAtrnAt, notify_address AS notifyAddress, " +
          "notify_after_ms AS notifyAfterMs, notified_at AS notifiedAt, queued_recipients AS queuedRecipients " +
          "FROM domains WHERE queued_recipients > 0",
      ),
      domain: raw.prepare(
        "SELECT name, retention_ms AS retentionMs, last_atrn_at AS lastAtrnAt, notify_address AS notifyAddress, " +
          "notify_after_ms AS notifyAfterMs, notified_at AS notifiedAt, queued_recipients AS queuedRecipients " +
          "FROM domains WHERE name = ?",
      ),
      oldestQueued: raw.prepare(
        "SELECT MIN(queued_at) AS oldest, COUNT(DISTINCT message_id) AS n FROM recipients " +
          "WHERE domain = ? AND status = 'queued'",
      ),
      setNotified: raw.prepare("UPDATE domains SET notified_at = ? WHERE name = ?"),
      getState: raw.prepare("SELECT value FROM housekeeping_state WHERE key = ?"),
      setState: raw.prepare(
        "INSERT INTO housekeeping_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
      ),
    };
  }

  /** Ids of messages with recipients waiting for a DSN, oldest first. */
  pendingMessageIds(limit: number): number[] {
    return (this.#stmts.pendingMessages.all(limit) as unknown as { id: number }[]).map((r) => r.id);
  }

  /** Recipients and messages waiting for a DSN (for /status and /metrics). */
  pendingCounts(): { recipients: number; messages: number } {
    return this.#stmts.pendingCount.get() as { recipients: number; messages: number };
  }

  /** The message row, or null. */
  message(id: number): ReportedMessage | null {
    const row = this.#stmts.message.get(id) as unknown as
      | (Omit<ReportedMessage, "smtputf8"> & { smtputf8: number })
      | undefined;
    return row ? { ...row, smtputf8: Boolean(row.smtputf8) } : null;
  }

  /** The message's recipients waiting for a DSN. */
  pendingRecipients(messageId: number): PendingRecipient[] {
    return this.#stmts.pendingOf.all(messageId) as unknown as PendingRecipient[];
  }

  /** Removes the reported recipients, and the message (body included) when none is left. */
  finishReported(messageId: number): void {
    this.#stmts.deletePending.run(messageId);
    this.#stmts.deleteMessageIfDone.run(messageId, messageId);
  }

  /**
   * Messages with queued recipients of `domain` that arrived in (after, upTo] and were not yet warned at
   * a step of `stepMs` (their `delay_warnings`, the largest step age warned for, is below it).
   */
  delayedMessageIds(domain: string, after: number, upTo: number, stepMs: number, limit: number): number[] {
    const rows = this.#stmts.delayed.all(domain, after, upTo, stepMs, limit) as unknown as {
      messageId: number;
    }[];
    return rows.map((r) => r.messageId);
  }

  /** All of a message's queued recipients, in any domain, due for a warning at a step of `stepMs`. */
  delayedRecipients(messageId: number, upTo: number, stepMs: number): DelayedRecipient[] {
    return this.#stmts.delayedOfMessage.all(messageId, upTo, stepMs) as unknown as DelayedRecipient[];
  }

  /** Records that a recipient has been warned at a step of `stepMs` (steps are ages: larger is later). */
  markWarned(recipientId: number, stepMs: number): void {
    this.#stmts.markWarned.run(stepMs, recipientId, stepMs);
  }

  /** Domains with queued mail. */
  domainsWithMail(): DomainFacts[] {
    return this.#stmts.domains.all() as unknown as DomainFacts[];
  }

  /** One domain's facts, or null. */
  domain(name: string): DomainFacts | null {
    return (this.#stmts.domain.get(name) as unknown as DomainFacts | undefined) ?? null;
  }

  /** The oldest queued recipient's time and the number of messages waiting. */
  oldestQueued(domain: string): { oldest: number | null; count: number } {
    const row = this.#stmts.oldestQueued.get(domain) as { oldest: number | null; n: number };
    return { oldest: row.oldest, count: row.n };
  }

  /** Records that the domain's customer was told at `at`. */
  setNotified(domain: string, at: number): void {
    this.#stmts.setNotified.run(at, domain);
  }

  /** A durable number kept by a job (a scan's watermark), or null. */
  state(key: string): number | null {
    return (this.#stmts.getState.get(key) as unknown as { value: number } | undefined)?.value ?? null;
  }

  /** Sets a durable number. */
  setState(key: string, value: number): void {
    this.#stmts.setState.run(key, value);
  }
}
