/**
 * Queue administration: list, show, delete and bounce messages (the HTTP API's /queue routes, which
 * the CLI calls). Drizzle's query builder: operator requests, a page at a time, where variable filters
 * and typed whole rows matter more than a prepared statement's saving.
 *
 * @module
 */
import { and, asc, eq, gt, inArray } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import { Code550NotTaken } from "../smtp/codes.ts";
import { canonicalDomain } from "../smtp/idna.ts";
import type { OpenDatabase, QueueDb } from "./db.ts";
import { messages, recipients } from "./schema.ts";
import { immediateTransaction } from "./transaction.ts";

/** Filters for listing the queue. */
export interface QueueListFilter {
  domain?: string;
  status?: "queued" | "failed" | "relayed";
  /** Return messages with id greater than this (keyset pagination). */
  afterId?: number;
  limit?: number;
}

/** A queue listing row. */
export interface QueueListRow {
  id: number;
  receivedAt: number;
  mailFrom: string;
  size: number;
  recipients: { id: number; address: string; status: string; attempts: number; lastCode: number | null }[];
}

/** A stored message with its envelope and every recipient row, as `getMessage` returns it. */
export type StoredMessage = typeof messages.$inferSelect & { recipients: (typeof recipients.$inferSelect)[] };

/** Operator reads and changes of queued messages. */
export class AdminStore {
  readonly #open: OpenDatabase;
  readonly #db: QueueDb;
  readonly #clock: Clock;

  constructor(open: OpenDatabase, clock: Clock) {
    this.#open = open;
    this.#db = open.db;
    this.#clock = clock;
  }

  /** Lists messages (keyset pagination by id), optionally for one domain and recipient status. */
  listQueue(filter: QueueListFilter = {}): QueueListRow[] {
    const limit = Math.min(Math.max(filter.limit ?? 50, 1), 500);
    const conditions = [gt(recipients.messageId, filter.afterId ?? 0)];
    if (filter.domain) {
      conditions.push(eq(recipients.domain, canonicalDomain(filter.domain) ?? filter.domain));
    }
    if (filter.status) conditions.push(eq(recipients.status, filter.status));
    const ids = this.#db.selectDistinct({ id: recipients.messageId }).from(recipients).where(
      and(...conditions),
    )
      .orderBy(asc(recipients.messageId)).limit(limit).all().map((r) => r.id);
    if (ids.length === 0) return [];
    const msgs = this.#db.select({
      id: messages.id,
      receivedAt: messages.receivedAt,
      mailFrom: messages.mailFrom,
      size: messages.size,
    }).from(messages).where(inArray(messages.id, ids)).orderBy(asc(messages.id)).all();
    const rcpts = this.#db.select({
      messageId: recipients.messageId,
      id: recipients.id,
      address: recipients.address,
      status: recipients.status,
      attempts: recipients.attempts,
      lastCode: recipients.lastCode,
    }).from(recipients).where(inArray(recipients.messageId, ids)).orderBy(asc(recipients.id)).all();
    return msgs.map((m) => ({
      ...m,
      recipients: rcpts.filter((r) => r.messageId === m.id).map(({ messageId: _, ...r }) => r),
    }));
  }

  /** One message with its envelope and recipients, or null. */
  getMessage(id: number): StoredMessage | null {
    const m = this.#db.select().from(messages).where(eq(messages.id, id)).get();
    if (!m) return null;
    const rcpts = this.#db.select().from(recipients).where(eq(recipients.messageId, id)).orderBy(
      asc(recipients.id),
    )
      .all();
    return { ...m, recipients: rcpts };
  }

  /** Deletes a message and all its recipients; false when it did not exist. */
  deleteMessage(id: number): boolean {
    return immediateTransaction(this.#open.raw, () => {
      this.#db.delete(recipients).where(eq(recipients.messageId, id)).run();
      return Number(this.#db.delete(messages).where(eq(messages.id, id)).run().changes) > 0;
    });
  }

  /** Marks every queued recipient of a message failed; the DSN step reports them to the sender. */
  bounceMessage(id: number, reason: string): number {
    const now = this.#clock.now();
    const result = this.#db.update(recipients).set({
      status: "failed",
      lastCode: Code550NotTaken,
      lastText: reason,
      lastAttemptAt: now,
      failureKind: "operator-bounce",
    }).where(and(eq(recipients.messageId, id), eq(recipients.status, "queued"))).run();
    return Number(result.changes);
  }
}
