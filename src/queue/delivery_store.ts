/**
 * The delivery side of the queue: what an ATRN session may deliver, the stored body, the
 * per-recipient outcomes, and the expiry of mail nobody collected in time. Prepared statements
 * throughout: the selection and the marks run for every message of every session (docs/design.md#runtimes), and
 * every statement here is an index range per domain or per message, never a queue scan.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { Code451LocalError } from "../smtp/codes.ts";
import type { OpenDatabase } from "./db.ts";
import { StoreError } from "./store_error.ts";
import { immediateTransaction } from "./transaction.ts";

/** A message selected for delivery with the recipients this session may deliver. */
export interface DeliverableMessage {
  id: number;
  mailFrom: string;
  size: number;
  bodyType: string | null;
  smtputf8: boolean;
  eightBit: boolean;
  envid: string | null;
  ret: string | null;
  receivedAt: number;
  recipients: { id: number; address: string; notify: string | null; orcpt: string | null }[];
}

/** Result of a delivery attempt for one recipient. */
export interface RecipientOutcome {
  id: number;
  /**
   * delivered: remove; relayed: delivered, keep for the NOTIFY=SUCCESS DSN; deferred: keep queued (4xx,
   * lost connection); failed: keep for the failure DSN.
   */
  result: "delivered" | "relayed" | "deferred" | "failed";
  code: number | null;
  text: string | null;
  /** For failed: the relay refused it itself (never sent), rather than the customer. */
  local?: boolean;
  /** The customer's server that answered (its greeting name), for the DSN's Remote-MTA. */
  remoteMta?: string | null;
}

/** Selection, body reads and outcome marks. */
export class DeliveryStore {
  readonly #raw: OpenDatabase["raw"];
  readonly #clock: Clock;
  readonly #stmts;

  constructor(open: OpenDatabase, clock: Clock) {
    const raw = open.raw;
    this.#raw = raw;
    this.#clock = clock;
    this.#stmts = {
      hasQueued: raw.prepare(
        "SELECT 1 AS ok FROM recipients WHERE domain = ? AND status = 'queued' LIMIT 1",
      ),
      nextMessageIds: raw.prepare(
        "SELECT DISTINCT message_id AS id FROM recipients WHERE domain = ? AND status = 'queued' " +
          "AND message_id > ? ORDER BY message_id LIMIT ?",
      ),
      message: raw.prepare(
        "SELECT id, mail_from AS mailFrom, size, body_type AS bodyType, smtputf8, eight_bit AS eightBit, envid, ret, " +
          "received_at AS receivedAt FROM messages WHERE id = ?",
      ),
      recipientsFor: raw.prepare(
        "SELECT id, address, domain, notify, orcpt FROM recipients WHERE message_id = ? AND status = 'queued'",
      ),
      bodyInline: raw.prepare("SELECT body_inline AS body, chunk_count AS chunks FROM messages WHERE id = ?"),
      chunk: raw.prepare("SELECT data FROM message_chunks WHERE message_id = ? AND seq = ?"),
      // Outcomes apply only to recipients still queued: one failed or bounced meanwhile by the
      // housekeeping or an operator is not touched again.
      deleteRecipient: raw.prepare("DELETE FROM recipients WHERE id = ? AND status = 'queued'"),
      deferRecipient: raw.prepare(
        "UPDATE recipients SET attempts = attempts + 1, last_code = ?, last_text = ?, last_attempt_at = ? " +
          "WHERE id = ? AND status = 'queued'",
      ),
      failRecipient: raw.prepare(
        "UPDATE recipients SET status = 'failed', attempts = attempts + 1, last_code = ?, last_text = ?, " +
          "last_attempt_at = ?, failure_kind = ?, remote_mta = ? WHERE id = ? AND status = 'queued'",
      ),
      relayRecipient: raw.prepare(
        "UPDATE recipients SET status = 'relayed', attempts = attempts + 1, last_code = ?, last_text = ?, " +
          "last_attempt_at = ?, remote_mta = ? WHERE id = ? AND status = 'queued'",
      ),
      deleteMessageIfDone: raw.prepare(
        "DELETE FROM messages WHERE id = ? AND NOT EXISTS (SELECT 1 FROM recipients WHERE message_id = ?)",
      ),
      expiryCandidates: raw.prepare(
        "SELECT name, retention_ms AS retentionMs FROM domains WHERE queued_recipients > 0",
      ),
      expire: raw.prepare(
        "UPDATE recipients SET status = 'failed', failure_kind = 'expired', " +
          `last_code = COALESCE(last_code, ${Code451LocalError}), last_text = COALESCE(last_text, ?) ` +
          "WHERE domain = ? AND status = 'queued' AND queued_at < ?",
      ),
    };
  }

  /** True when any of `domains` has a queued recipient (one index probe per domain). */
  hasQueuedMail(domainNames: readonly string[]): boolean {
    return domainNames.some((d) => this.#stmts.hasQueued.get(d) !== undefined);
  }

  /**
   * The next messages (by id, after `afterId`) with queued recipients in `domainNames`, each with
   * only the recipients in those domains. Other recipients of the same message stay queued
   * (RFC 2645 via Exim's behaviour; docs/protocol.md#atrn-decisions).
   */
  nextDeliverable(domainNames: readonly string[], afterId: number, limit = 50): DeliverableMessage[] {
    const granted = new Set(domainNames);
    const ids = new Set<number>();
    for (const domain of domainNames) {
      for (const row of this.#stmts.nextMessageIds.all(domain, afterId, limit) as { id: number }[]) {
        ids.add(row.id);
      }
    }
    const ordered = [...ids].sort((a, b) => a - b).slice(0, limit);
    const out: DeliverableMessage[] = [];
    for (const id of ordered) {
      const m = this.#stmts.message.get(id) as Omit<DeliverableMessage, "recipients"> | undefined;
      if (!m) continue;
      const rcpts = (this.#stmts.recipientsFor.all(id) as {
        id: number;
        address: string;
        domain: string;
        notify: string | null;
        orcpt: string | null;
      }[]).filter((r) => granted.has(r.domain)).map(({ id, address, notify, orcpt }) => ({
        id,
        address,
        notify,
        orcpt,
      }));
      if (rcpts.length === 0) continue;
      out.push({ ...m, smtputf8: Boolean(m.smtputf8), eightBit: Boolean(m.eightBit), recipients: rcpts });
    }
    return out;
  }

  /** The stored body in order, one chunk at a time (memory stays at one chunk). */
  *readBody(messageId: number): Generator<Uint8Array> {
    const row = this.#stmts.bodyInline.get(messageId) as
      | { body: Uint8Array | null; chunks: number }
      | undefined;
    if (!row) throw new StoreError(`No message ${messageId}`, "not-found");
    if (row.body) {
      yield row.body;
      return;
    }
    for (let seq = 0; seq < row.chunks; seq++) {
      const chunk = this.#stmts.chunk.get(messageId, seq) as { data: Uint8Array } | undefined;
      if (!chunk) throw new StoreError(`Message ${messageId} is missing body chunk ${seq}`);
      yield chunk.data;
    }
  }

  /**
   * Records the outcome for recipients of one message in one transaction: delivered ones are
   * removed, deferred ones stay queued with the attempt noted, failed ones wait for their DSN.
   * The message row goes when no recipient remains.
   */
  recordOutcomes(messageId: number, outcomes: readonly RecipientOutcome[]): void {
    const now = this.#clock.now();
    immediateTransaction(this.#raw, () => this.#applyOutcomes(messageId, outcomes, now));
  }

  /**
   * The outcomes of several messages in ONE transaction (one fsync). Delivery may batch its
   * records this way: a crash before the commit re-delivers those messages later (a duplicate,
   * which RFC 5321 6.1 accepts), it never loses one.
   */
  recordOutcomesMany(entries: readonly { messageId: number; outcomes: readonly RecipientOutcome[] }[]): void {
    if (entries.length === 0) return;
    const now = this.#clock.now();
    immediateTransaction(this.#raw, () => {
      for (const e of entries) this.#applyOutcomes(e.messageId, e.outcomes, now);
    });
  }

  #applyOutcomes(messageId: number, outcomes: readonly RecipientOutcome[], now: number): void {
    const s = this.#stmts;
    for (const o of outcomes) {
      if (o.result === "delivered") s.deleteRecipient.run(o.id);
      else if (o.result === "deferred") s.deferRecipient.run(o.code, o.text, now, o.id);
      else if (o.result === "relayed") s.relayRecipient.run(o.code, o.text, now, o.remoteMta ?? null, o.id);
      else {
        const kind = o.local ? "local-refusal" : "customer-rejected";
        s.failRecipient.run(o.code, o.text, now, kind, o.remoteMta ?? null, o.id);
      }
    }
    s.deleteMessageIfDone.run(messageId, messageId);
  }

  /** Domains with queued mail and their queue lifetime override (what expiry looks at). */
  expiryCandidates(): { name: string; retentionMs: number | null }[] {
    return this.#stmts.expiryCandidates.all() as { name: string; retentionMs: number | null }[];
  }

  /**
   * Marks a domain's recipients queued before `cutoff` failed as expired, keeping the last reply the
   * customer gave (or `text` when there was none) for their DSN; returns how many. The caller owns the
   * transaction.
   */
  expireQueued(domain: string, cutoff: number, text: string): number {
    return Number(this.#stmts.expire.run(text, domain, cutoff).changes);
  }
}
