/**
 * The queue reads behind /status, /metrics and the status page. Prepared statements: the HTTP API
 * reads these on every request (a Prometheus scrape every few seconds), and each is O(1) or one index
 * seek per domain with queued mail, never a scan of the recipients table.
 *
 * @module
 */
import type { OpenDatabase } from "./db.ts";

/** A domain's queue state for /status and /metrics (see StatusStore.domainQueueStatus). */
export interface DomainQueueStatus {
  name: string;
  username: string;
  hold: boolean;
  queuedRecipients: number;
  queuedBytes: number;
  lastAtrnAt: number | null;
  lastAtrnPeer: string | null;
  lastAtrnDelivered: number | null;
  lastFailureAt: number | null;
  lastFailureText: string | null;
  /** Time of the oldest queued recipient, null when none is queued. */
  oldestQueuedAt: number | null;
}

/** Queue totals (kept by triggers, read in O(1)). */
export interface QueueTotals {
  messages: number;
  bytes: number;
  queuedRecipients: number;
  oldestQueuedAt: number | null;
}

/** Queue counters and per-domain status. */
export class StatusStore {
  readonly #stmts;

  constructor(open: OpenDatabase) {
    const raw = open.raw;
    this.#stmts = {
      counts: raw.prepare("SELECT messages, bytes, recipients FROM queue_totals WHERE id = 1"),
      domainsWithMail: raw.prepare("SELECT name FROM domains WHERE queued_recipients > 0"),
      oldestQueued: raw.prepare(
        "SELECT MIN(queued_at) AS oldest FROM recipients WHERE domain = ? AND status = 'queued'",
      ),
      domainQueueStatus: raw.prepare(
        "SELECT d.name AS name, a.username AS username, d.hold AS hold, " +
          "d.queued_recipients AS queuedRecipients, d.queued_bytes AS queuedBytes, " +
          "d.last_atrn_at AS lastAtrnAt, d.last_atrn_peer AS lastAtrnPeer, " +
          "d.last_atrn_delivered AS lastAtrnDelivered, d.last_failure_at AS lastFailureAt, " +
          "d.last_failure_text AS lastFailureText, " +
          "CASE WHEN d.queued_recipients > 0 THEN (SELECT MIN(r.queued_at) FROM recipients r " +
          "WHERE r.domain = d.name AND r.status = 'queued') END AS oldestQueuedAt " +
          "FROM domains d JOIN accounts a ON a.id = d.account_id ORDER BY d.name",
      ),
    };
  }

  /** Whole-queue totals in O(1) plus the oldest queued recipient (one seek per domain). */
  totals(): QueueTotals {
    let oldest: number | null = null;
    for (const d of this.#stmts.domainsWithMail.all() as { name: string }[]) {
      const o = this.oldestQueuedAt(d.name);
      if (o !== null && (oldest === null || o < oldest)) oldest = o;
    }
    return { ...this.queueCounts(), oldestQueuedAt: oldest };
  }

  /** Whole-queue counters from the trigger-kept `queue_totals` row: O(1), no oldest-age seeks. */
  queueCounts(): { messages: number; bytes: number; queuedRecipients: number } {
    const row = this.#stmts.counts.get() as
      | { messages: number; bytes: number; recipients: number }
      | undefined;
    return { messages: row?.messages ?? 0, bytes: row?.bytes ?? 0, queuedRecipients: row?.recipients ?? 0 };
  }

  /** Oldest queued recipient's time for a domain (one index seek). */
  oldestQueuedAt(domain: string): number | null {
    const row = this.#stmts.oldestQueued.get(domain) as { oldest: number | null } | undefined;
    return row?.oldest ?? null;
  }

  /**
   * Every domain with its owner, counters, last collection and oldest queued time, in ONE
   * statement: the oldest time is a correlated MIN over the `(domain, status, queued_at)` index
   * (a seek per domain inside SQLite, skipped for domains whose counter is 0). One statement
   * instead of a seek call per domain halves the cost at 1,000 domains (scripts/bench_status.ts).
   */
  domainQueueStatus(): DomainQueueStatus[] {
    const rows = this.#stmts.domainQueueStatus
      .all() as (Omit<DomainQueueStatus, "hold"> & { hold: number })[];
    return rows.map((r) => ({ ...r, hold: Boolean(r.hold) }));
  }
}
