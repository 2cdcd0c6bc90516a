/**
 * The queue reads behind /status, /metrics and the status page on the shared PostgreSQL queue, and the
 * counts of the relay's own postmaster mailbox: the same figures and shapes as the SQLite modules
 * (src/queue/status_store.ts and the reads of src/queue/postmaster_store.ts). Named statements: a
 * Prometheus scrape reads these every few seconds. Each is one statement (one snapshot), O(1) or one
 * index seek per domain with queued mail, never a scan of the recipients table.
 *
 * @module
 */
import type { DomainQueueStatus, QueueTotals } from "../status_store.ts";
import { type PostgresDatabase, runNamed } from "./database.ts";

/** The whole-queue counters kept by the triggers, as one row even when `queue_totals` has none. */
const COUNTS_FROM = "FROM (VALUES (1)) AS one(id) LEFT JOIN queue_totals t ON t.id = one.id";
const COUNTS_COLUMNS = "COALESCE(t.messages, 0) AS messages, COALESCE(t.bytes, 0) AS bytes, " +
  'COALESCE(t.recipients, 0) AS "queuedRecipients"';

const STATEMENTS = {
  counts: {
    name: "status_counts",
    text: `SELECT ${COUNTS_COLUMNS} ${COUNTS_FROM}`,
  },
  totals: {
    name: "status_totals",
    // The oldest over hosted domains with queued mail only (the postmaster mailbox has no domain
    // row), one seek of the (domain, status, queued_at) index per such domain.
    text: `SELECT ${COUNTS_COLUMNS}, (SELECT MIN(o.oldest) FROM domains d CROSS JOIN LATERAL ` +
      "(SELECT MIN(r.queued_at) AS oldest FROM recipients r WHERE r.domain = d.name AND r.status = 'queued') o " +
      `WHERE d.queued_recipients > 0) AS "oldestQueuedAt" ${COUNTS_FROM}`,
  },
  oldestQueued: {
    name: "status_oldest_queued",
    text: "SELECT MIN(queued_at) AS oldest FROM recipients WHERE domain = $1 AND status = 'queued'",
  },
  domainQueueStatus: {
    name: "status_domains",
    // COLLATE "C": byte order, as SQLite's BINARY collation sorts, whatever the database's locale.
    text: 'SELECT d.name, a.username, d.hold, d.queued_recipients AS "queuedRecipients", ' +
      'd.queued_bytes AS "queuedBytes", d.last_atrn_at AS "lastAtrnAt", d.last_atrn_peer AS "lastAtrnPeer", ' +
      'd.last_atrn_delivered AS "lastAtrnDelivered", d.last_failure_at AS "lastFailureAt", ' +
      'd.last_failure_text AS "lastFailureText", ' +
      "CASE WHEN d.queued_recipients > 0 THEN (SELECT MIN(r.queued_at) FROM recipients r " +
      `WHERE r.domain = d.name AND r.status = 'queued') END AS "oldestQueuedAt" ` +
      'FROM domains d JOIN accounts a ON a.id = d.account_id ORDER BY d.name COLLATE "C"',
  },
  postmasterBytes: {
    name: "status_postmaster_bytes",
    // The mailbox is the recipients under the domain key "" (src/queue/postmaster_store.ts). SUM of
    // bigint is numeric, which pg would hand back as a string.
    text: "SELECT COALESCE(SUM(message_size), 0)::bigint AS n FROM recipients " +
      "WHERE domain = '' AND status = 'queued'",
  },
  postmasterCount: {
    name: "status_postmaster_count",
    text: "SELECT COUNT(DISTINCT message_id) AS n FROM recipients WHERE domain = '' AND status = 'queued'",
  },
} as const;

/** Queue counters, per-domain status and the postmaster mailbox's size on PostgreSQL. */
export class PgStatus {
  readonly #db: PostgresDatabase;

  constructor(db: PostgresDatabase) {
    this.#db = db;
  }

  /** Whole-queue totals in O(1) plus the oldest queued recipient (one seek per domain). */
  async totals(): Promise<QueueTotals> {
    return (await runNamed<QueueTotals>(this.#db.pool, STATEMENTS.totals, [])).rows[0]!;
  }

  /** Whole-queue counters from the trigger-kept `queue_totals` row: O(1), no oldest-age seeks. */
  async queueCounts(): Promise<{ messages: number; bytes: number; queuedRecipients: number }> {
    return (await runNamed<Omit<QueueTotals, "oldestQueuedAt">>(this.#db.pool, STATEMENTS.counts, []))
      .rows[0]!;
  }

  /** Oldest queued recipient's time for a domain (one index seek). */
  async oldestQueuedAt(domain: string): Promise<number | null> {
    return (await runNamed<{ oldest: number | null }>(this.#db.pool, STATEMENTS.oldestQueued, [domain]))
      .rows[0]!
      .oldest;
  }

  /** Every domain with its owner, counters, last collection and oldest queued time, in one statement. */
  async domainQueueStatus(): Promise<DomainQueueStatus[]> {
    return (await runNamed<DomainQueueStatus>(this.#db.pool, STATEMENTS.domainQueueStatus, [])).rows;
  }

  /** Bytes waiting in the relay's own postmaster mailbox. */
  async postmasterMailboxBytes(): Promise<number> {
    return (await runNamed<{ n: number }>(this.#db.pool, STATEMENTS.postmasterBytes, [])).rows[0]!.n;
  }

  /** Messages waiting in the relay's own postmaster mailbox. */
  async postmasterMailboxCount(): Promise<number> {
    return (await runNamed<{ n: number }>(this.#db.pool, STATEMENTS.postmasterCount, [])).rows[0]!.n;
  }
}
