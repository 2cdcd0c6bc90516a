/**
 * The outbound queue on the shared PostgreSQL database (the `outbound` table, as in SQLite:
 * src/queue/outbound_queue.ts), as the outbound worker's store. Every node runs a worker, so `due`
 * claims what it returns: one statement moves the rows' next attempt `claimMs` ahead while it selects
 * them (`FOR UPDATE SKIP LOCKED`), so two nodes never send one row at the same time. A node that dies
 * mid-send leaves its rows due again once the claim has passed: at least once, never lost (RFC 5321
 * 6.1 accepts the duplicate). The claim's `next_attempt_at` is also its fencing token: `remove` and
 * `defer` apply only while the row still carries this node's claim, so a node whose claim lapsed
 * (a stalled process, a clock jump) cannot delete or reschedule a row another node now sends. `add` runs inside the caller's transaction, so a DSN is committed
 * together with the removal of what it reports.
 *
 * @module
 */
import type { Clock } from "../../clock.ts";
import type { OutboundStore } from "../../outbound/worker.ts";
import {
  type NewOutbound,
  type OutboundCounts,
  outboundCounts,
  type OutboundKind,
  type OutboundRow,
} from "../outbound_queue.ts";
import { type PostgresDatabase, type Queryable, runNamed } from "./database.ts";

/**
 * How long a claimed row is left to the node sending it: longer than one attempt can take (the
 * RFC 5321 4.5.3.2 timeouts add up to some minutes), short enough that a dead node's rows go again soon.
 */
export const OUTBOUND_CLAIM_MS = 15 * 60_000;

const COLUMNS = "id, kind, mail_from, rcpt, domain, body, eight_bit, smtputf8, attempts, created_at, " +
  "expires_at, last_error, about_message_id";

const STATEMENTS = {
  insert: {
    name: "outbound_insert",
    text: "INSERT INTO outbound (created_at, kind, mail_from, rcpt, domain, body, eight_bit, smtputf8, " +
      "next_attempt_at, expires_at, about_message_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$1,$9,$10) RETURNING id",
  },
  claim: {
    name: "outbound_claim",
    // The inner SELECT locks the due rows it picks and skips those another node is claiming right
    // now; the UPDATE pushes them past this node's attempt. ORDER BY as in SQLite: oldest due first.
    text: "WITH picked AS (SELECT id FROM outbound WHERE next_attempt_at <= $1 AND id <> ALL($2::bigint[]) " +
      "ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) " +
      `UPDATE outbound o SET next_attempt_at = $4 FROM picked WHERE o.id = picked.id RETURNING ${
        COLUMNS.split(", ").map((c) => `o.${c}`).join(", ")
      }`,
  },
  remove: { name: "outbound_remove", text: "DELETE FROM outbound WHERE id = $1 AND next_attempt_at = $2" },
  defer: {
    name: "outbound_defer",
    text: "UPDATE outbound SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 " +
      "WHERE id = $1 AND next_attempt_at = $4",
  },
  nextDue: { name: "outbound_next_due", text: "SELECT MIN(next_attempt_at) AS at FROM outbound" },
  counts: {
    name: "outbound_counts",
    text: "SELECT kind, COUNT(*)::bigint AS n, MIN(created_at) AS oldest FROM outbound GROUP BY kind",
  },
} as const;

interface Row {
  id: number;
  kind: OutboundKind;
  mail_from: string;
  rcpt: string;
  domain: string;
  body: Uint8Array;
  eight_bit: boolean;
  smtputf8: boolean;
  attempts: number;
  created_at: number;
  expires_at: number;
  last_error: string | null;
  about_message_id: number | null;
}

/** The outbound table on PostgreSQL; see the module documentation. */
export class PgOutbound implements OutboundStore {
  readonly #db: PostgresDatabase;
  readonly #clock: Clock;
  readonly #claimMs: number;
  /** Rows this node claimed and has not finished: the claim's `next_attempt_at` (the fencing token). */
  readonly #claims = new Map<number, number>();

  /** An attempt ends a minute before its claim would let another node take the row. */
  readonly attemptLimitMs: number;

  constructor(db: PostgresDatabase, clock: Clock, options: { claimMs?: number } = {}) {
    this.#db = db;
    this.#clock = clock;
    this.#claimMs = options.claimMs ?? OUTBOUND_CLAIM_MS;
    this.attemptLimitMs = Math.max(1000, this.#claimMs - 60_000);
  }

  /** Adds a message inside the caller's transaction on `client`; returns its id. */
  async add(client: Queryable, item: NewOutbound): Promise<number> {
    const now = this.#clock.now();
    const result = await runNamed<{ id: number }>(client, STATEMENTS.insert, [
      now,
      item.kind,
      item.mailFrom,
      item.rcpt,
      item.domain,
      item.body,
      item.eightBit,
      item.smtputf8,
      now + item.lifetimeMs,
      item.aboutMessageId ?? null,
    ]);
    return result.rows[0]!.id;
  }

  /** Claims up to `limit` due rows for this node (see the module documentation), oldest due first. */
  async due(limit: number, exclude: ReadonlySet<number> = new Set()): Promise<OutboundRow[]> {
    const now = this.#clock.now();
    const claimUntil = now + this.#claimMs;
    const rows = (await runNamed<Row>(this.#db.pool, STATEMENTS.claim, [
      now,
      [...exclude],
      limit,
      claimUntil,
    ])).rows;
    for (const row of rows) this.#claims.set(row.id, claimUntil);
    // RETURNING of an UPDATE ... FROM keeps no order: sorted as they were picked.
    return rows.map(rowOf).sort((a, b) => a.id - b.id);
  }

  /** Deletes a row this node claimed, unless another node has claimed it since (see the module doc). */
  remove(id: number): Promise<boolean> {
    return this.#underClaim(id, (claim) => runNamed(this.#db.pool, STATEMENTS.remove, [id, claim]));
  }

  /** Reschedules a row this node claimed, unless another node has claimed it since. */
  defer(id: number, nextAttemptAt: number, error: string): Promise<boolean> {
    return this.#underClaim(
      id,
      (claim) => runNamed(this.#db.pool, STATEMENTS.defer, [id, nextAttemptAt, error, claim]),
    );
  }

  /** Runs `write` with this node's claim on row `id` as its fencing token; true when it changed the row. */
  async #underClaim(
    id: number,
    write: (claim: number) => Promise<{ rowCount: number | null }>,
  ): Promise<boolean> {
    const claim = this.#claims.get(id);
    if (claim === undefined) return false;
    const { rowCount } = await write(claim);
    this.#claims.delete(id);
    return rowCount === 1;
  }

  async nextDueAt(): Promise<number | null> {
    return (await runNamed<{ at: number | null }>(this.#db.pool, STATEMENTS.nextDue, [])).rows[0]?.at ?? null;
  }

  async counts(): Promise<OutboundCounts> {
    return outboundCounts(
      (await runNamed<{ kind: string; n: number; oldest: number }>(this.#db.pool, STATEMENTS.counts, []))
        .rows,
    );
  }
}

function rowOf(r: Row): OutboundRow {
  return {
    id: r.id,
    kind: r.kind,
    mailFrom: r.mail_from,
    rcpt: r.rcpt,
    domain: r.domain,
    // pg hands bytea back as a Buffer; the worker wants a plain view of the same bytes.
    body: new Uint8Array(r.body.buffer, r.body.byteOffset, r.body.byteLength),
    eightBit: r.eight_bit,
    smtputf8: r.smtputf8,
    attempts: r.attempts,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    lastError: r.last_error,
    aboutMessageId: r.about_message_id,
  };
}
