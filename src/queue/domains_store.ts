/**
 * Hosted domains: what the intake accepts mail for and what an account may ATRN, with their settings
 * (hold, mailboxes, retention, quota, notices). Drizzle's query builder throughout: operator commands,
 * one lookup per ATRN and per report, never per message. The per-RCPT check, which is hot, reads the
 * same rows with prepared statements in src/queue/enqueue.ts.
 *
 * @module
 */
import { and, asc, count, eq, notExists, sql } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import { canonicalDomain } from "../smtp/idna.ts";
import type { AccountsStore } from "./accounts_store.ts";
import type { OpenDatabase, QueueDb } from "./db.ts";
import { accounts, domainMailboxes, domains, messages, recipients } from "./schema.ts";
import { domainKeyOrThrow, StoreError } from "./store_error.ts";
import { immediateTransaction } from "./transaction.ts";

/** A hosted domain with its queue counters and last collection. */
export interface DomainInfo {
  name: string;
  accountId: number;
  username: string;
  hold: boolean;
  catchAll: boolean;
  mailboxes: number;
  /** Queue lifetime override in ms (null: the global queueLifetime). */
  retentionMs: number | null;
  /** Queue quota in bytes (null: none). */
  quotaBytes: number | null;
  /** Local parts with `%`, `!` or `@` are accepted (off by default). */
  allowRoutingSyntax: boolean;
  /** Where the customer is told that mail waits uncollected (null: nobody). */
  notifyAddress: string | null;
  /** After how long without an ATRN (null: the global domainNotifyAfter). */
  notifyAfterMs: number | null;
  queuedRecipients: number;
  queuedBytes: number;
  createdAt: number;
  lastAtrnAt: number | null;
  lastAtrnPeer: string | null;
  lastAtrnDelivered: number | null;
  lastFailureAt: number | null;
  lastFailureText: string | null;
}

/** What `updateDomain` may change; omitted fields stay as they are. */
export interface DomainChanges {
  retentionMs?: number | null;
  quotaBytes?: number | null;
  mailboxes?: string[] | null;
  allowRoutingSyntax?: boolean;
  notifyAddress?: string | null;
  notifyAfterMs?: number | null;
}

/** The domains and domain_mailboxes tables. */
export class DomainsStore {
  readonly #open: OpenDatabase;
  readonly #db: QueueDb;
  readonly #accounts: AccountsStore;
  readonly #clock: Clock;

  constructor(open: OpenDatabase, accountsStore: AccountsStore, clock: Clock) {
    this.#open = open;
    this.#db = open.db;
    this.#accounts = accountsStore;
    this.#clock = clock;
  }

  /** Adds a hosted domain owned by `username`. */
  addDomain(name: string, username: string, options: { mailboxes?: string[] } = {}): void {
    const domain = domainKeyOrThrow(name);
    const account = this.#accounts.findAccount(username);
    if (!account) throw new StoreError(`No account ${username}`, "not-found");
    if (this.#db.select().from(domains).where(eq(domains.name, domain)).get()) {
      throw new StoreError(`Domain ${domain} already exists`, "conflict");
    }
    const mailboxes = options.mailboxes ?? [];
    immediateTransaction(this.#open.raw, () => {
      this.#db.insert(domains).values({
        name: domain,
        accountId: account.id,
        catchAll: mailboxes.length === 0,
        createdAt: this.#clock.now(),
      }).run();
      for (const localPart of mailboxes) this.#db.insert(domainMailboxes).values({ domain, localPart }).run();
      this.#recountDomain(domain);
    });
  }

  /** Recomputes a domain's counters from its recipients (index range, not a queue scan). */
  #recountDomain(domain: string): void {
    const queued = and(eq(recipients.domain, domain), eq(recipients.status, "queued"));
    this.#db.update(domains).set({
      queuedRecipients: sql`(SELECT COUNT(*) FROM ${recipients} WHERE ${queued})`,
      queuedBytes:
        sql`(SELECT COALESCE(SUM(${recipients.messageSize}), 0) FROM ${recipients} WHERE ${queued})`,
    }).where(eq(domains.name, domain)).run();
  }

  /** Removes a domain; with queued mail only when `force` (which deletes that mail). */
  removeDomain(name: string, options: { force?: boolean } = {}): { deletedRecipients: number } {
    const domain = domainKeyOrThrow(name);
    const row = this.#db.select().from(domains).where(eq(domains.name, domain)).get();
    if (!row) throw new StoreError(`No domain ${domain}`, "not-found");
    const pending =
      this.#db.select({ n: count() }).from(recipients).where(eq(recipients.domain, domain)).get()!.n;
    if (pending > 0 && !options.force) {
      throw new StoreError(
        `Domain ${domain} has ${pending} recipient(s) in the queue: deliver or delete them, or use --force`,
        "conflict",
      );
    }
    immediateTransaction(this.#open.raw, () => {
      const ids = this.#db.selectDistinct({ id: recipients.messageId }).from(recipients)
        .where(eq(recipients.domain, domain)).all().map((r) => r.id);
      this.#db.delete(recipients).where(eq(recipients.domain, domain)).run();
      for (const id of ids) {
        // The message goes with its last recipient (one of another domain keeps it).
        const others = this.#db.select({ one: sql`1` }).from(recipients).where(eq(recipients.messageId, id));
        this.#db.delete(messages).where(and(eq(messages.id, id), notExists(others))).run();
      }
      this.#db.delete(domains).where(eq(domains.name, domain)).run();
    });
    return { deletedRecipients: pending };
  }

  /** Sets a domain's hold flag (held mail stays queued and is not delivered on ATRN). */
  setDomainHold(name: string, hold: boolean): void {
    const result = this.#db.update(domains).set({ hold }).where(eq(domains.name, domainKeyOrThrow(name)))
      .run();
    if (Number(result.changes) === 0) throw new StoreError(`No domain ${name}`, "not-found");
  }

  /** Every domain with owner and counters (O(domains), no queue scan). */
  listDomains(): DomainInfo[] {
    const rows = this.#db.select({
      d: domains,
      username: accounts.username,
      mailboxes: sql<number>`(SELECT COUNT(*) FROM domain_mailboxes m WHERE m.domain = ${domains.name})`,
    }).from(domains).innerJoin(accounts, eq(domains.accountId, accounts.id)).orderBy(asc(domains.name)).all();
    return rows.map(({ d, username, mailboxes }) => ({
      name: d.name,
      accountId: d.accountId,
      username,
      hold: d.hold,
      catchAll: d.catchAll,
      mailboxes,
      retentionMs: d.retentionMs,
      quotaBytes: d.quotaBytes,
      allowRoutingSyntax: d.allowRoutingSyntax,
      notifyAddress: d.notifyAddress,
      notifyAfterMs: d.notifyAfterMs,
      queuedRecipients: d.queuedRecipients,
      queuedBytes: d.queuedBytes,
      createdAt: d.createdAt,
      lastAtrnAt: d.lastAtrnAt,
      lastAtrnPeer: d.lastAtrnPeer,
      lastAtrnDelivered: d.lastAtrnDelivered,
      lastFailureAt: d.lastFailureAt,
      lastFailureText: d.lastFailureText,
    }));
  }

  /** Names of the domains owned by an account. */
  domainsOfAccount(accountId: number): { name: string; hold: boolean }[] {
    return this.#db.select({ name: domains.name, hold: domains.hold }).from(domains)
      .where(eq(domains.accountId, accountId)).orderBy(asc(domains.name)).all();
  }

  /** True when `name` (any case) is a hosted domain (primary-key lookup). */
  hasDomain(name: string): boolean {
    const key = canonicalDomain(name);
    return key !== null &&
      this.#db.select({ one: sql`1` }).from(domains).where(eq(domains.name, key)).get() !== undefined;
  }

  /**
   * Changes a domain's settings: queue lifetime override (null: the global queueLifetime), queue
   * quota in bytes (null: none), accepted mailboxes (null: catch-all). Omitted fields stay as they are.
   */
  updateDomain(name: string, changes: DomainChanges): void {
    const domain = domainKeyOrThrow(name);
    if (!this.hasDomain(domain)) throw new StoreError(`No domain ${domain}`, "not-found");
    immediateTransaction(this.#open.raw, () => {
      const set: Partial<typeof domains.$inferInsert> = {};
      if (changes.retentionMs !== undefined) set.retentionMs = changes.retentionMs;
      if (changes.quotaBytes !== undefined) set.quotaBytes = changes.quotaBytes;
      if (changes.allowRoutingSyntax !== undefined) set.allowRoutingSyntax = changes.allowRoutingSyntax;
      if (changes.notifyAddress !== undefined) set.notifyAddress = changes.notifyAddress;
      if (changes.notifyAfterMs !== undefined) set.notifyAfterMs = changes.notifyAfterMs;
      if (changes.mailboxes !== undefined) {
        set.catchAll = changes.mailboxes === null;
        this.#db.delete(domainMailboxes).where(eq(domainMailboxes.domain, domain)).run();
        for (const localPart of changes.mailboxes ?? []) {
          this.#db.insert(domainMailboxes).values({ domain, localPart }).onConflictDoNothing().run();
        }
      }
      if (Object.keys(set).length > 0) {
        this.#db.update(domains).set(set).where(eq(domains.name, domain)).run();
      }
    });
  }
}
