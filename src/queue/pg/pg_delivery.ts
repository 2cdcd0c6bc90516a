/**
 * The delivery side of the shared PostgreSQL queue: what an ATRN session may deliver, the stored body,
 * the per-recipient outcomes, and the expiry of mail nobody collected in time. The same rules as the
 * SQLite store (src/queue/delivery_store.ts); what changes is the number of round trips:
 *
 * - The selection is one statement (message ids, envelopes and the granted recipients joined).
 * - The outcomes of any number of messages are one transaction of a fixed number of statements: the
 *   domain rows whose counters will change are locked first, by name (`COLLATE "C"`, the order
 *   src/queue/pg/pg_enqueue.ts uses, so delivery and intake on two nodes never deadlock), then one
 *   statement applies every outcome from arrays, then one removes the messages left without
 *   recipients.
 * - A body is read in batches of a few chunks, so a large message is never held whole in memory.
 *
 * Delivery is at least once: outcomes count only once committed, so a node that dies before its
 * `recordOutcomesMany` commits leaves those recipients queued for the next session (RFC 5321 6.1
 * accepts the duplicate; losing mail is not accepted).
 *
 * @module
 */
import type { Clock } from "../../clock.ts";
import { Code451LocalError } from "../../smtp/codes.ts";
import type { DeliverableMessage, RecipientOutcome } from "../delivery_store.ts";
import { StoreError } from "../store_error.ts";
import { type PostgresDatabase, runNamed } from "./database.ts";
import { domainBeingDelivered } from "./pg_leases.ts";

/** Chunks fetched per query while reading a body: at most this many CHUNK_SIZE pieces in memory. */
const BODY_BATCH_CHUNKS = 4;

const STATEMENTS = {
  hasQueued: {
    name: "delivery_has_queued",
    text:
      "SELECT EXISTS (SELECT 1 FROM recipients WHERE domain = ANY($1::text[]) AND status = 'queued') AS ok",
  },
  nextDeliverable: {
    name: "delivery_next",
    // The first `limit` messages after `afterId` with a queued recipient in the granted domains, each
    // with only those recipients. Other recipients of the same message stay queued (RFC 2645 via
    // Exim's behaviour; docs/protocol.md#atrn-decisions).
    text: "WITH ids AS (SELECT DISTINCT message_id FROM recipients " +
      "WHERE domain = ANY($1::text[]) AND status = 'queued' AND message_id > $2 ORDER BY message_id LIMIT $3) " +
      "SELECT m.id, m.mail_from, m.size, m.body_type, m.smtputf8, m.eight_bit, m.envid, m.ret, m.received_at, " +
      "r.id AS rcpt_id, r.address, r.notify, r.orcpt " +
      "FROM ids JOIN messages m ON m.id = ids.message_id " +
      "JOIN recipients r ON r.message_id = m.id AND r.status = 'queued' AND r.domain = ANY($1::text[]) " +
      "ORDER BY m.id, r.id",
  },
  bodyHead: {
    name: "delivery_body_head",
    text: "SELECT body_inline, chunk_count FROM messages WHERE id = $1",
  },
  chunks: {
    name: "delivery_body_chunks",
    text:
      "SELECT seq, data FROM message_chunks WHERE message_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
  },
  lockDomainsOfRecipients: {
    name: "delivery_lock_domains",
    // ORDER BY runs below the row locking, so the rows are locked in this order.
    // NO KEY UPDATE: the counters change, no key does, so the session's own lease renewal (FOR KEY
    // SHARE, pg_leases.ts) does not wait for its outcome batch.
    text: "SELECT d.name FROM domains d WHERE d.name IN " +
      "(SELECT domain FROM recipients WHERE id = ANY($1::bigint[]) AND status = 'queued') " +
      'ORDER BY d.name COLLATE "C" FOR NO KEY UPDATE OF d',
  },
  applyOutcomes: {
    name: "delivery_apply_outcomes",
    // Outcomes apply only to recipients still queued: one failed or bounced meanwhile by the
    // housekeeping or an operator is not touched again. delivered: the row goes; deferred: stays
    // queued with the attempt noted; relayed (NOTIFY=SUCCESS DSN due) and failed (failure DSN due)
    // leave the queue and wait for their DSN.
    text: "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], " +
      "$6::text[]) AS v(id, result, code, text, failure_kind, remote_mta)), " +
      "gone AS (DELETE FROM recipients r USING v WHERE r.id = v.id AND v.result = 'delivered' " +
      "AND r.status = 'queued') " +
      "UPDATE recipients r SET " +
      "status = CASE WHEN v.result = 'deferred' THEN r.status ELSE v.result END, " +
      "attempts = r.attempts + 1, last_code = v.code, last_text = v.text, last_attempt_at = $7, " +
      "failure_kind = CASE WHEN v.result = 'failed' THEN v.failure_kind ELSE r.failure_kind END, " +
      "remote_mta = CASE WHEN v.result = 'deferred' THEN r.remote_mta ELSE v.remote_mta END " +
      "FROM v WHERE r.id = v.id AND v.result <> 'delivered' AND r.status = 'queued'",
  },
  deleteMessagesIfDone: {
    name: "delivery_delete_done_messages",
    text: "DELETE FROM messages m WHERE m.id = ANY($1::bigint[]) " +
      "AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id)",
  },
  expiryCandidates: {
    name: "delivery_expiry_candidates",
    text: "SELECT name, retention_ms FROM domains WHERE queued_recipients > 0 ORDER BY name",
  },
  lockDomain: {
    name: "delivery_lock_domain",
    text: "SELECT name FROM domains WHERE name = $1 FOR UPDATE",
  },
  expire: {
    name: "delivery_expire",
    // Not while a session delivers the domain (the customer may be accepting this very mail); the
    // check runs after the domain row is locked (pg_leases.ts, domainBeingDelivered).
    text: "UPDATE recipients SET status = 'failed', failure_kind = 'expired', " +
      `last_code = COALESCE(last_code, ${Code451LocalError}), last_text = COALESCE(last_text, $1) ` +
      `WHERE domain = $2 AND status = 'queued' AND queued_at < $3 AND NOT ${domainBeingDelivered("$2")}`,
  },
} as const;

/** A plain Uint8Array view of a pg Buffer (no copy), so callers see the same type as from SQLite. */
function bytesOf(buffer: Uint8Array): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** Selection, body reads and outcome marks on PostgreSQL. */
export class PgDelivery {
  readonly #db: PostgresDatabase;
  readonly #clock: Clock;

  constructor(db: PostgresDatabase, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /** True when any of `domainNames` has a queued recipient (an index probe). */
  async hasQueuedMail(domainNames: readonly string[]): Promise<boolean> {
    if (domainNames.length === 0) return false;
    return (await runNamed<{ ok: boolean }>(this.#db.pool, STATEMENTS.hasQueued, [domainNames])).rows[0]!.ok;
  }

  /**
   * The next messages (by id, after `afterId`) with queued recipients in `domainNames`, each with
   * only the recipients in those domains (in the order they were accepted).
   */
  async nextDeliverable(
    domainNames: readonly string[],
    afterId: number,
    limit = 50,
  ): Promise<DeliverableMessage[]> {
    if (domainNames.length === 0) return [];
    const rows = (await runNamed<{
      id: number;
      mail_from: string;
      size: number;
      body_type: string | null;
      smtputf8: boolean;
      eight_bit: boolean;
      envid: string | null;
      ret: string | null;
      received_at: number;
      rcpt_id: number;
      address: string;
      notify: string | null;
      orcpt: string | null;
    }>(this.#db.pool, STATEMENTS.nextDeliverable, [domainNames, afterId, limit])).rows;
    const out: DeliverableMessage[] = [];
    for (const row of rows) {
      let message = out[out.length - 1];
      if (message?.id !== row.id) {
        message = {
          id: row.id,
          mailFrom: row.mail_from,
          size: row.size,
          bodyType: row.body_type,
          smtputf8: row.smtputf8,
          eightBit: row.eight_bit,
          envid: row.envid,
          ret: row.ret,
          receivedAt: row.received_at,
          recipients: [],
        };
        out.push(message);
      }
      message.recipients.push({
        id: row.rcpt_id,
        address: row.address,
        notify: row.notify,
        orcpt: row.orcpt,
      });
    }
    return out;
  }

  /**
   * The stored body in order, one chunk at a time, fetched BODY_BATCH_CHUNKS chunks per query: memory
   * stays at one batch however large the message. Rejects (on the first read) with a not-found
   * StoreError for an unknown message.
   */
  async *readBody(messageId: number): AsyncGenerator<Uint8Array> {
    const head = (await runNamed<{ body_inline: Uint8Array | null; chunk_count: number }>(
      this.#db.pool,
      STATEMENTS.bodyHead,
      [messageId],
    )).rows[0];
    if (!head) throw new StoreError(`No message ${messageId}`, "not-found");
    if (head.body_inline) {
      yield bytesOf(head.body_inline);
      return;
    }
    for (let from = 0; from < head.chunk_count; from += BODY_BATCH_CHUNKS) {
      const to = Math.min(from + BODY_BATCH_CHUNKS, head.chunk_count);
      const rows = (await runNamed<{ seq: number; data: Uint8Array }>(
        this.#db.pool,
        STATEMENTS.chunks,
        [messageId, from, to],
      )).rows;
      for (let seq = from; seq < to; seq++) {
        const row = rows[seq - from];
        if (row?.seq !== seq) throw new StoreError(`Message ${messageId} is missing body chunk ${seq}`);
        yield bytesOf(row.data);
      }
    }
  }

  /**
   * Records the outcome for recipients of one message in one transaction: delivered ones are
   * removed, deferred ones stay queued with the attempt noted, failed ones wait for their DSN.
   * The message row goes when no recipient remains. One outcome per recipient id.
   */
  async recordOutcomes(messageId: number, outcomes: readonly RecipientOutcome[]): Promise<void> {
    await this.recordOutcomesMany([{ messageId, outcomes }]);
  }

  /**
   * The outcomes of several messages in ONE transaction (one WAL flush). Delivery may batch its
   * records this way: a crash before the commit re-delivers those messages later (a duplicate,
   * which RFC 5321 6.1 accepts), it never loses one.
   */
  async recordOutcomesMany(
    entries: readonly { messageId: number; outcomes: readonly RecipientOutcome[] }[],
  ): Promise<void> {
    if (entries.length === 0) return;
    const now = this.#clock.now();
    const ids: number[] = [];
    const results: string[] = [];
    const codes: (number | null)[] = [];
    const texts: (string | null)[] = [];
    const failureKinds: (string | null)[] = [];
    const remoteMtas: (string | null)[] = [];
    // Recipients whose row leaves the queue: their domain counters change (the triggers).
    const leaving: number[] = [];
    for (const { outcomes } of entries) {
      for (const o of outcomes) {
        ids.push(o.id);
        results.push(o.result);
        codes.push(o.code);
        texts.push(o.text);
        failureKinds.push(o.result === "failed" ? (o.local ? "local-refusal" : "customer-rejected") : null);
        remoteMtas.push(o.remoteMta ?? null);
        if (o.result !== "deferred") leaving.push(o.id);
      }
    }
    await this.#db.transaction(async (client) => {
      if (leaving.length > 0) await runNamed(client, STATEMENTS.lockDomainsOfRecipients, [leaving]);
      if (ids.length > 0) {
        await runNamed(client, STATEMENTS.applyOutcomes, [
          ids,
          results,
          codes,
          texts,
          failureKinds,
          remoteMtas,
          now,
        ]);
      }
      await runNamed(client, STATEMENTS.deleteMessagesIfDone, [entries.map((e) => e.messageId)]);
    });
  }

  /** Domains with queued mail and their queue lifetime override (what expiry looks at). */
  async expiryCandidates(): Promise<{ name: string; retentionMs: number | null }[]> {
    const rows = (await runNamed<{ name: string; retention_ms: number | null }>(
      this.#db.pool,
      STATEMENTS.expiryCandidates,
      [],
    )).rows;
    return rows.map((r) => ({ name: r.name, retentionMs: r.retention_ms }));
  }

  /**
   * Marks a domain's recipients queued before `cutoff` failed as expired, keeping the last reply the
   * customer gave (or `text` when there was none) for their DSN; returns how many. Nothing expires
   * while a session of any node is delivering the domain: the domain row is locked first, so a
   * session starting meanwhile reads the queue only after this commits.
   */
  async expireQueued(domain: string, cutoff: number, text: string): Promise<number> {
    return await this.#db.transaction(async (client) => {
      await runNamed(client, STATEMENTS.lockDomain, [domain]);
      return (await runNamed(client, STATEMENTS.expire, [text, domain, cutoff])).rowCount ?? 0;
    });
  }
}
