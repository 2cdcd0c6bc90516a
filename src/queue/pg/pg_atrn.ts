/**
 * ATRN session history and each domain's "last collected" fields on the shared PostgreSQL queue: the
 * same rows and return shapes as the SQLite module (src/queue/atrn_store.ts).
 *
 * The updates of several domain rows lock them first, by name (`COLLATE "C"`), in a subquery: the
 * order src/queue/pg/pg_enqueue.ts and pg_delivery.ts lock domain rows in, so a session record on one
 * node and an enqueue into the same domains on another never wait for each other in a cycle.
 *
 * @module
 */
import type { AtrnRecord, AtrnSessionRow } from "../atrn_store.ts";
import { type PostgresDatabase, runNamed } from "./database.ts";

/** The domain rows `$1` owned by account `$2`, locked in name order (joined by the UPDATEs below). */
const OWNED_LOCKED = "(SELECT name FROM domains WHERE name = ANY($1::text[]) AND account_id = $2 " +
  'ORDER BY name COLLATE "C" FOR NO KEY UPDATE) owned';

const STATEMENTS = {
  insert: {
    name: "atrn_insert_session",
    text: "INSERT INTO atrn_sessions (account_id, username, domains, peer, tls, started_at, ended_at, " +
      "delivered, deferred, failed, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) " +
      "RETURNING id",
  },
  collected: {
    name: "atrn_set_collected",
    text: "UPDATE domains d SET last_atrn_at = $3, last_atrn_peer = $4, last_atrn_delivered = $5 " +
      `FROM ${OWNED_LOCKED} WHERE d.name = owned.name`,
  },
  failure: {
    name: "atrn_set_failure",
    text: "UPDATE domains d SET last_failure_at = $3, last_failure_text = $4 " +
      `FROM ${OWNED_LOCKED} WHERE d.name = owned.name`,
  },
  recent: {
    name: "atrn_recent",
    text: 'SELECT id, account_id AS "accountId", username, domains, peer, tls, started_at AS "startedAt", ' +
      'ended_at AS "endedAt", delivered, deferred, failed, outcome, detail ' +
      "FROM atrn_sessions ORDER BY id DESC LIMIT $1",
  },
  prune: {
    name: "atrn_prune",
    text: "DELETE FROM atrn_sessions WHERE started_at < $1",
  },
} as const;

/** The atrn_sessions table and the domains' collection fields on PostgreSQL. */
export class PgAtrn {
  readonly #db: PostgresDatabase;

  constructor(db: PostgresDatabase) {
    this.#db = db;
  }

  /** Stores an ATRN session and updates the domains' "last collection" fields. */
  async recordAtrnSession(record: AtrnRecord): Promise<number> {
    return await this.#db.transaction(async (client) => {
      const row = (await runNamed<{ id: number }>(client, STATEMENTS.insert, [
        record.accountId,
        record.username,
        record.domains.join(","),
        record.peer,
        record.tls,
        record.startedAt,
        record.endedAt,
        record.delivered,
        record.deferred,
        record.failed,
        record.outcome,
        record.detail,
      ])).rows[0]!;
      if (record.domains.length > 0 && record.accountId !== null) {
        const owned = [record.domains, record.accountId];
        if (record.outcome === "turned" || record.outcome === "no-mail") {
          await runNamed(client, STATEMENTS.collected, [
            ...owned,
            record.endedAt,
            record.peer,
            record.delivered,
          ]);
        }
        if (record.outcome === "error" || record.deferred > 0 || record.failed > 0) {
          const text = record.detail ?? `${record.deferred} deferred, ${record.failed} failed`;
          await runNamed(client, STATEMENTS.failure, [...owned, record.endedAt, text]);
        }
      }
      return row.id;
    });
  }

  /**
   * A poll that found no mail: updates the domains' last-poll fields instead of adding a history row,
   * so a customer polling often does not grow the database.
   */
  async recordPoll(
    accountId: number,
    domainNames: readonly string[],
    peer: string,
    at: number,
  ): Promise<void> {
    if (domainNames.length === 0) return;
    await runNamed(this.#db.pool, STATEMENTS.collected, [[...domainNames], accountId, at, peer, 0]);
  }

  /** The most recent ATRN sessions, newest first. */
  async recentAtrnSessions(limit = 20): Promise<AtrnSessionRow[]> {
    // A negative limit is no limit in SQLite; LIMIT NULL is PostgreSQL's way to say it.
    return (await runNamed<AtrnSessionRow>(this.#db.pool, STATEMENTS.recent, [limit < 0 ? null : limit]))
      .rows;
  }

  /** Deletes ATRN session records started before `cutoff` (an index range); returns how many. */
  async pruneAtrnHistory(cutoff: number): Promise<number> {
    return (await runNamed(this.#db.pool, STATEMENTS.prune, [cutoff])).rowCount ?? 0;
  }
}
