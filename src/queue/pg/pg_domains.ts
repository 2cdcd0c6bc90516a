/**
 * Hosted domains on the shared PostgreSQL queue: the same rules, messages and return shapes as the
 * SQLite module (src/queue/domains_store.ts), with the same canonical keys (lower-case A-labels,
 * RFC 5890 2.3.2.1, through `domainKeyOrThrow` and `canonicalDomain`).
 *
 * Where SQLite reads and then writes inside one synchronous transaction, this module locks the rows it
 * decides on, so an operator command on one node and the intake or delivery on another cannot
 * interleave:
 *
 * - `addDomain` holds its account `FOR KEY SHARE` (an account being removed elsewhere waits, or is
 *   already gone) and inserts with `ON CONFLICT DO NOTHING`, so two nodes adding one name get one row
 *   and one "already exists".
 * - `removeDomain` and `updateDomain` lock the domain row `FOR UPDATE` first. It is the only domain row
 *   they change (the counter triggers update it, then `queue_totals`), so they keep the lock order of
 *   src/queue/pg/pg_enqueue.ts and cannot deadlock with it. The intake and delivery lock the same row,
 *   so `removeDomain` sees every recipient committed before it and none can be added after.
 *
 * @module
 */
import type { Clock } from "../../clock.ts";
import { canonicalDomain } from "../../smtp/idna.ts";
import type { DomainChanges, DomainInfo } from "../domains_store.ts";
import { domainKeyOrThrow, StoreError } from "../store_error.ts";
import { type PostgresDatabase, runNamed } from "./database.ts";

/** SQLSTATE of a foreign-key violation (the account went away between our lock and the insert). */
const FOREIGN_KEY_VIOLATION = "23503";

const STATEMENTS = {
  shareAccount: {
    name: "domains_share_account",
    text: "SELECT id FROM accounts WHERE username = $1 FOR KEY SHARE",
  },
  insert: {
    name: "domains_insert",
    text: "INSERT INTO domains (name, account_id, catch_all, created_at) VALUES ($1, $2, $3, $4) " +
      "ON CONFLICT (name) DO NOTHING",
  },
  insertMailboxes: {
    name: "domains_insert_mailboxes",
    text: "INSERT INTO domain_mailboxes (domain, local_part) SELECT $1, unnest($2::text[])",
  },
  insertMailboxesIgnoringRepeats: {
    name: "domains_insert_mailboxes_distinct",
    text: "INSERT INTO domain_mailboxes (domain, local_part) SELECT $1, unnest($2::text[]) " +
      "ON CONFLICT DO NOTHING",
  },
  deleteMailboxes: {
    name: "domains_delete_mailboxes",
    text: "DELETE FROM domain_mailboxes WHERE domain = $1",
  },
  recount: {
    name: "domains_recount",
    // Recomputed from the recipients (index range, not a queue scan). SUM of bigint is numeric,
    // which pg would hand back as a string.
    text: "UPDATE domains SET " +
      "queued_recipients = (SELECT COUNT(*) FROM recipients WHERE domain = $1 AND status = 'queued'), " +
      "queued_bytes = (SELECT COALESCE(SUM(message_size), 0)::bigint FROM recipients " +
      "WHERE domain = $1 AND status = 'queued') WHERE name = $1",
  },
  lock: {
    name: "domains_lock",
    text: "SELECT name FROM domains WHERE name = $1 FOR UPDATE",
  },
  countRecipients: {
    name: "domains_count_recipients",
    text: "SELECT COUNT(*) AS n FROM recipients WHERE domain = $1",
  },
  deleteRecipients: {
    name: "domains_delete_recipients",
    text: "DELETE FROM recipients WHERE domain = $1 RETURNING message_id",
  },
  deleteMessagesIfDone: {
    name: "domains_delete_done_messages",
    // The message goes with its last recipient (one of another domain keeps it).
    text: "DELETE FROM messages m WHERE m.id = ANY($1::bigint[]) " +
      "AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id)",
  },
  delete: {
    name: "domains_delete",
    text: "DELETE FROM domains WHERE name = $1",
  },
  setHold: {
    name: "domains_set_hold",
    text: "UPDATE domains SET hold = $2 WHERE name = $1",
  },
  list: {
    name: "domains_list",
    // COLLATE "C": byte order, as SQLite's BINARY collation sorts, whatever the database's locale.
    text: 'SELECT d.name, d.account_id AS "accountId", a.username, d.hold, d.catch_all AS "catchAll", ' +
      "(SELECT COUNT(*) FROM domain_mailboxes m WHERE m.domain = d.name) AS mailboxes, " +
      'd.retention_ms AS "retentionMs", d.quota_bytes AS "quotaBytes", ' +
      'd.allow_routing_syntax AS "allowRoutingSyntax", d.notify_address AS "notifyAddress", ' +
      'd.notify_after_ms AS "notifyAfterMs", d.queued_recipients AS "queuedRecipients", ' +
      'd.queued_bytes AS "queuedBytes", d.created_at AS "createdAt", d.last_atrn_at AS "lastAtrnAt", ' +
      'd.last_atrn_peer AS "lastAtrnPeer", d.last_atrn_delivered AS "lastAtrnDelivered", ' +
      'd.last_failure_at AS "lastFailureAt", d.last_failure_text AS "lastFailureText" ' +
      'FROM domains d JOIN accounts a ON a.id = d.account_id ORDER BY d.name COLLATE "C"',
  },
  ofAccount: {
    name: "domains_of_account",
    text: 'SELECT name, hold FROM domains WHERE account_id = $1 ORDER BY name COLLATE "C"',
  },
  has: {
    name: "domains_has",
    text: "SELECT 1 FROM domains WHERE name = $1",
  },
} as const;

/** The `DomainChanges` fields that are plain columns, with their column names. */
const CHANGE_COLUMNS = {
  retentionMs: "retention_ms",
  quotaBytes: "quota_bytes",
  allowRoutingSyntax: "allow_routing_syntax",
  notifyAddress: "notify_address",
  notifyAfterMs: "notify_after_ms",
} as const satisfies Partial<Record<keyof DomainChanges, string>>;

/** The domains and domain_mailboxes tables on PostgreSQL. */
export class PgDomains {
  readonly #db: PostgresDatabase;
  readonly #clock: Clock;

  constructor(db: PostgresDatabase, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /** Adds a hosted domain owned by `username`. */
  async addDomain(name: string, username: string, options: { mailboxes?: string[] } = {}): Promise<void> {
    const domain = domainKeyOrThrow(name);
    const mailboxes = options.mailboxes ?? [];
    try {
      await this.#db.transaction(async (client) => {
        const account = (await runNamed<{ id: number }>(client, STATEMENTS.shareAccount, [username])).rows[0];
        if (!account) throw new StoreError(`No account ${username}`, "not-found");
        const values = [domain, account.id, mailboxes.length === 0, this.#clock.now()];
        const inserted = await runNamed(client, STATEMENTS.insert, values);
        if (inserted.rowCount === 0) throw new StoreError(`Domain ${domain} already exists`, "conflict");
        if (mailboxes.length > 0) await runNamed(client, STATEMENTS.insertMailboxes, [domain, mailboxes]);
        await runNamed(client, STATEMENTS.recount, [domain]);
      });
    } catch (error) {
      if ((error as { code?: string }).code === FOREIGN_KEY_VIOLATION) {
        throw new StoreError(`No account ${username}`, "not-found");
      }
      throw error;
    }
  }

  /** Removes a domain; with queued mail only when `force` (which deletes that mail). */
  async removeDomain(
    name: string,
    options: { force?: boolean } = {},
  ): Promise<{ deletedRecipients: number }> {
    const domain = domainKeyOrThrow(name);
    return await this.#db.transaction(async (client) => {
      const row = (await runNamed(client, STATEMENTS.lock, [domain])).rows[0];
      if (!row) throw new StoreError(`No domain ${domain}`, "not-found");
      const pending =
        (await runNamed<{ n: number }>(client, STATEMENTS.countRecipients, [domain])).rows[0]!.n;
      if (pending > 0 && !options.force) {
        throw new StoreError(
          `Domain ${domain} has ${pending} recipient(s) in the queue: deliver or delete them, or use --force`,
          "conflict",
        );
      }
      let deletedRecipients = 0;
      if (pending > 0) {
        const deleted = await runNamed<{ message_id: number }>(client, STATEMENTS.deleteRecipients, [domain]);
        deletedRecipients = deleted.rowCount ?? 0;
        const ids = [...new Set(deleted.rows.map((r) => r.message_id))];
        await runNamed(client, STATEMENTS.deleteMessagesIfDone, [ids]);
      }
      await runNamed(client, STATEMENTS.delete, [domain]);
      return { deletedRecipients };
    });
  }

  /** Sets a domain's hold flag (held mail stays queued and is not delivered on ATRN). */
  async setDomainHold(name: string, hold: boolean): Promise<void> {
    const result = await runNamed(this.#db.pool, STATEMENTS.setHold, [domainKeyOrThrow(name), hold]);
    if (result.rowCount === 0) throw new StoreError(`No domain ${name}`, "not-found");
  }

  /** Every domain with owner and counters (O(domains), no queue scan). */
  async listDomains(): Promise<DomainInfo[]> {
    return (await runNamed<DomainInfo>(this.#db.pool, STATEMENTS.list, [])).rows;
  }

  /** Names of the domains owned by an account. */
  async domainsOfAccount(accountId: number): Promise<{ name: string; hold: boolean }[]> {
    return (await runNamed<{ name: string; hold: boolean }>(this.#db.pool, STATEMENTS.ofAccount, [accountId]))
      .rows;
  }

  /** True when `name` (any case) is a hosted domain (primary-key lookup). */
  async hasDomain(name: string): Promise<boolean> {
    const key = canonicalDomain(name);
    return key !== null && (await runNamed(this.#db.pool, STATEMENTS.has, [key])).rows.length > 0;
  }

  /**
   * Changes a domain's settings: queue lifetime override (null: the global queueLifetime), queue
   * quota in bytes (null: none), accepted mailboxes (null: catch-all). Omitted fields stay as they are.
   */
  async updateDomain(name: string, changes: DomainChanges): Promise<void> {
    const domain = domainKeyOrThrow(name);
    await this.#db.transaction(async (client) => {
      if ((await runNamed(client, STATEMENTS.lock, [domain])).rows.length === 0) {
        throw new StoreError(`No domain ${domain}`, "not-found");
      }
      const sets: string[] = [];
      const values: unknown[] = [domain];
      for (const [field, column] of Object.entries(CHANGE_COLUMNS)) {
        const value = changes[field as keyof typeof CHANGE_COLUMNS];
        if (value === undefined) continue;
        values.push(value);
        sets.push(`${column} = $${values.length}`);
      }
      if (changes.mailboxes !== undefined) {
        values.push(changes.mailboxes === null);
        sets.push(`catch_all = $${values.length}`);
        await runNamed(client, STATEMENTS.deleteMailboxes, [domain]);
        if (changes.mailboxes && changes.mailboxes.length > 0) {
          await runNamed(client, STATEMENTS.insertMailboxesIgnoringRepeats, [domain, changes.mailboxes]);
        }
      }
      // The column list varies with the changes, so this one is not a named statement (an operator
      // command, rare).
      if (sets.length > 0) {
        await client.query(`UPDATE domains SET ${sets.join(", ")} WHERE name = $1`, values);
      }
    });
  }
}
