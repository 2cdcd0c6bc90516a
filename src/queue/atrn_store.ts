/**
 * ATRN session history and each domain's "last collected" fields. Drizzle's query builder: one write
 * per session or poll and one read per /status, so the typed rows are worth more than a prepared
 * statement's saving.
 *
 * @module
 */
import { and, desc, eq, inArray, lt } from "drizzle-orm";
import type { OpenDatabase, QueueDb } from "./db.ts";
import { atrnSessions, domains } from "./schema.ts";
import { immediateTransaction } from "./transaction.ts";

/** An ATRN session record. */
export interface AtrnRecord {
  accountId: number | null;
  username: string;
  domains: string[];
  peer: string;
  tls: boolean;
  startedAt: number;
  endedAt: number;
  delivered: number;
  deferred: number;
  failed: number;
  outcome: "turned" | "no-mail" | "refused" | "busy" | "error";
  detail: string | null;
}

/** A stored ATRN session, as `recentAtrnSessions` returns it. */
export type AtrnSessionRow = typeof atrnSessions.$inferSelect;

/** The atrn_sessions table and the domains' collection fields. */
export class AtrnStore {
  readonly #open: OpenDatabase;
  readonly #db: QueueDb;

  constructor(open: OpenDatabase) {
    this.#open = open;
    this.#db = open.db;
  }

  /** Stores an ATRN session and updates the domains' "last collection" fields. */
  recordAtrnSession(record: AtrnRecord): number {
    return immediateTransaction(this.#open.raw, () => {
      const row = this.#db.insert(atrnSessions).values({
        accountId: record.accountId,
        username: record.username,
        domains: record.domains.join(","),
        peer: record.peer,
        tls: record.tls,
        startedAt: record.startedAt,
        endedAt: record.endedAt,
        delivered: record.delivered,
        deferred: record.deferred,
        failed: record.failed,
        outcome: record.outcome,
        detail: record.detail,
      }).returning({ id: atrnSessions.id }).get();
      if (record.domains.length > 0 && record.accountId !== null) {
        const owned = and(inArray(domains.name, record.domains), eq(domains.accountId, record.accountId));
        if (record.outcome === "turned" || record.outcome === "no-mail") {
          this.#db.update(domains).set({
            lastAtrnAt: record.endedAt,
            lastAtrnPeer: record.peer,
            lastAtrnDelivered: record.delivered,
          }).where(owned).run();
        }
        if (record.outcome === "error" || record.deferred > 0 || record.failed > 0) {
          this.#db.update(domains).set({
            lastFailureAt: record.endedAt,
            lastFailureText: record.detail ?? `${record.deferred} deferred, ${record.failed} failed`,
          }).where(owned).run();
        }
      }
      return row.id;
    });
  }

  /**
   * A poll that found no mail: updates the domains' last-poll fields instead of adding a history row,
   * so a customer polling often does not grow the database.
   */
  recordPoll(accountId: number, domainNames: readonly string[], peer: string, at: number): void {
    if (domainNames.length === 0) return;
    this.#db.update(domains).set({ lastAtrnAt: at, lastAtrnPeer: peer, lastAtrnDelivered: 0 })
      .where(and(inArray(domains.name, [...domainNames]), eq(domains.accountId, accountId))).run();
  }

  /** The most recent ATRN sessions, newest first. */
  recentAtrnSessions(limit = 20): AtrnSessionRow[] {
    return this.#db.select().from(atrnSessions).orderBy(desc(atrnSessions.id)).limit(limit).all();
  }

  /** Deletes ATRN session records started before `cutoff` (an index range); returns how many. */
  pruneAtrnHistory(cutoff: number): number {
    return Number(this.#db.delete(atrnSessions).where(lt(atrnSessions.startedAt, cutoff)).run().changes);
  }
}
