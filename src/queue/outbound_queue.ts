/**
 * The outbound queue: mail the relay itself sends to the internet (DSNs to senders, notices to
 * customers, postmaster copies), one row per message and recipient, in the same SQLite database as the
 * main queue, so a DSN is committed in the same transaction that removes the recipients it reports.
 * Rows survive restarts; the outbound worker (src/outbound/worker.ts) retries them with backoff until
 * they are delivered or expire.
 *
 * @module
 */
import type { OpenDatabase } from "./db.ts";
import type { Clock } from "../clock.ts";

/** What an outbound row is. */
export type OutboundKind = "dsn" | "notice" | "postmaster";

/** A message to put on the outbound queue. */
export interface NewOutbound {
  kind: OutboundKind;
  /** Reverse-path; "" for DSNs and notices. */
  mailFrom: string;
  rcpt: string;
  /** The recipient's domain, A-label form. */
  domain: string;
  body: Uint8Array;
  eightBit: boolean;
  smtputf8: boolean;
  /** How long to keep trying, ms from now. */
  lifetimeMs: number;
  aboutMessageId?: number | null;
}

/** An outbound row as the worker sees it. */
export interface OutboundRow {
  id: number;
  kind: OutboundKind;
  mailFrom: string;
  rcpt: string;
  domain: string;
  body: Uint8Array;
  eightBit: boolean;
  smtputf8: boolean;
  attempts: number;
  createdAt: number;
  expiresAt: number;
  lastError: string | null;
  aboutMessageId: number | null;
}

/** Counts for /status and /metrics. */
export interface OutboundCounts {
  pending: number;
  byKind: Record<string, number>;
  oldestCreatedAt: number | null;
}

/** The outbound table's operations. Each method is one statement; callers own transactions. */
export class OutboundQueue {
  readonly #raw: OpenDatabase["raw"];
  readonly #clock: Clock;
  readonly #stmts;

  constructor(open: OpenDatabase, clock: Clock) {
    this.#raw = open.raw;
    this.#clock = clock;
    this.#stmts = {
      insert: this.#raw.prepare(
        "INSERT INTO outbound (created_at, kind, mail_from, rcpt, domain, body, eight_bit, smtputf8, " +
          "next_attempt_at, expires_at, about_message_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
      ),
      due: this.#raw.prepare(
        "SELECT id, kind, mail_from AS mailFrom, rcpt, domain, body, eight_bit AS eightBit, smtputf8, " +
          "attempts, created_at AS createdAt, expires_at AS expiresAt, last_error AS lastError, " +
          "about_message_id AS aboutMessageId FROM outbound WHERE next_attempt_at <= ? " +
          "ORDER BY next_attempt_at, id LIMIT ?",
      ),
      remove: this.#raw.prepare("DELETE FROM outbound WHERE id = ?"),
      defer: this.#raw.prepare(
        "UPDATE outbound SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
      ),
      nextDue: this.#raw.prepare("SELECT MIN(next_attempt_at) AS at FROM outbound"),
      counts: this.#raw.prepare(
        "SELECT kind, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbound GROUP BY kind",
      ),
    };
  }

  /** Adds a message; returns its id. Call inside the transaction that makes it due. */
  add(item: NewOutbound): number {
    const now = this.#clock.now();
    const result = this.#stmts.insert.run(
      now,
      item.kind,
      item.mailFrom,
      item.rcpt,
      item.domain,
      item.body,
      item.eightBit ? 1 : 0,
      item.smtputf8 ? 1 : 0,
      now,
      now + item.lifetimeMs,
      item.aboutMessageId ?? null,
    );
    return Number(result.lastInsertRowid);
  }

  /** Rows whose next attempt is due, oldest first. */
  due(limit: number): OutboundRow[] {
    const rows = this.#stmts.due.all(
      this.#clock.now(),
      limit,
    ) as unknown as (Omit<OutboundRow, "eightBit" | "smtputf8"> & { eightBit: number; smtputf8: number })[];
    return rows.map((r) => ({ ...r, eightBit: Boolean(r.eightBit), smtputf8: Boolean(r.smtputf8) }));
  }

  /** Delivered, or given up: the row goes. */
  remove(id: number): void {
    this.#stmts.remove.run(id);
  }

  /** A temporary failure: try again at `nextAttemptAt`. */
  defer(id: number, nextAttemptAt: number, error: string): void {
    this.#stmts.defer.run(nextAttemptAt, error, id);
  }

  /** When the next row is due (ms), or null when the queue is empty. */
  nextDueAt(): number | null {
    return (this.#stmts.nextDue.get() as unknown as { at: number | null } | undefined)?.at ?? null;
  }

  /** Pending rows by kind and the oldest one's age. */
  counts(): OutboundCounts {
    return outboundCounts(
      this.#stmts.counts.all() as unknown as { kind: string; n: number; oldest: number }[],
    );
  }
}

/** The counts from per-kind rows (count and oldest `created_at`); shared with the PostgreSQL store. */
export function outboundCounts(rows: readonly { kind: string; n: number; oldest: number }[]): OutboundCounts {
  const byKind: Record<string, number> = {};
  let pending = 0;
  let oldest: number | null = null;
  for (const r of rows) {
    byKind[r.kind] = r.n;
    pending += r.n;
    if (oldest === null || r.oldest < oldest) oldest = r.oldest;
  }
  return { pending, byKind, oldestCreatedAt: oldest };
}
