/**
 * The queue store: the one object the rest of the program holds for the queue (docs/design.md#seams, 6).
 * It composes one module per aggregate over the same SQLite connection, and its methods delegate to
 * them by the same names:
 *
 * | module | what | SQL |
 * |---|---|---|
 * | accounts_store.ts | accounts | drizzle builder |
 * | domains_store.ts | hosted domains and their settings | drizzle builder |
 * | enqueue.ts | RCPT check, quotas, committing accepted mail | prepared statements |
 * | delivery_store.ts | ATRN selection, bodies, outcomes, expiry | prepared statements |
 * | atrn_store.ts | ATRN history, last collection | drizzle builder |
 * | admin_store.ts | list, show, delete, bounce | drizzle builder |
 * | status_store.ts | counters and per-domain status | prepared statements |
 * | postmaster_store.ts | the relay's own postmaster mailbox | prepared statements |
 *
 * Hot paths (every RCPT, message, delivery mark and status read) use prepared statements, because
 * drizzle's builder re-prepares on each call (docs/design.md#runtimes); the rest use the builder for its typed
 * rows. Synchronous (node:sqlite is), so each method is one transaction that cannot interleave with
 * another on the event loop. The reporting jobs' statements are in report_store.ts and the outbound
 * queue's in outbound_queue.ts, constructed over `database` by the relay.
 *
 * @module
 */
import { type Clock, systemClock } from "../clock.ts";
import { type Account, type AccountSecrets, AccountsStore } from "./accounts_store.ts";
import { AdminStore, type QueueListFilter, type QueueListRow, type StoredMessage } from "./admin_store.ts";
import { type AtrnRecord, type AtrnSessionRow, AtrnStore } from "./atrn_store.ts";
import type { OpenDatabase, QueueDb } from "./db.ts";
import { type DeliverableMessage, DeliveryStore, type RecipientOutcome } from "./delivery_store.ts";
import { type DomainChanges, type DomainInfo, DomainsStore } from "./domains_store.ts";
import { type BodySource, EnqueueStore, type IncomingMessage, type RecipientVerdict } from "./enqueue.ts";
import { type PostmasterRow, PostmasterStore } from "./postmaster_store.ts";
import { type DomainQueueStatus, type QueueTotals, StatusStore } from "./status_store.ts";
import { immediateTransaction, savepoint } from "./transaction.ts";

export { type Clock, systemClock };
export type { Account, AccountSecrets } from "./accounts_store.ts";
export type { QueueListFilter, QueueListRow, StoredMessage } from "./admin_store.ts";
export type { AtrnRecord, AtrnSessionRow } from "./atrn_store.ts";
export type { DeliverableMessage, RecipientOutcome } from "./delivery_store.ts";
export type { DomainChanges, DomainInfo } from "./domains_store.ts";
export {
  type BodySource,
  type IncomingMessage,
  type IncomingRecipient,
  QuotaExceededError,
} from "./enqueue.ts";
export type { RecipientVerdict } from "./enqueue.ts";
export type { PostmasterRow } from "./postmaster_store.ts";
export type { DomainQueueStatus, QueueTotals } from "./status_store.ts";
export { domainKeyOrThrow, StoreError } from "./store_error.ts";

/** The queue store over an open database. */
export class QueueStore {
  readonly db: QueueDb;
  readonly #open: OpenDatabase;
  readonly #accounts: AccountsStore;
  readonly #domains: DomainsStore;
  readonly #enqueue: EnqueueStore;
  readonly #delivery: DeliveryStore;
  readonly #atrn: AtrnStore;
  readonly #admin: AdminStore;
  readonly #status: StatusStore;
  readonly #postmaster: PostmasterStore;

  constructor(open: OpenDatabase, clock: Clock = systemClock) {
    this.#open = open;
    this.db = open.db;
    this.#accounts = new AccountsStore(open.db, clock);
    this.#domains = new DomainsStore(open, this.#accounts, clock);
    this.#postmaster = new PostmasterStore(open);
    this.#enqueue = new EnqueueStore(open, this.#postmaster, clock);
    this.#delivery = new DeliveryStore(open, clock);
    this.#atrn = new AtrnStore(open);
    this.#admin = new AdminStore(open, clock);
    this.#status = new StatusStore(open);
  }

  /** The underlying open database (for shutdown, checks and the other statement sets). */
  get database(): OpenDatabase {
    return this.#open;
  }

  /** Runs `fn` in one IMMEDIATE transaction (commit = fsync with synchronous=FULL). */
  transaction<T>(fn: () => T): T {
    return immediateTransaction(this.#open.raw, fn);
  }

  /**
   * Runs `fn` in a savepoint of the current transaction: what it wrote is rolled back alone when it
   * throws (and the error rethrown), while the transaction goes on.
   */
  savepoint<T>(name: string, fn: () => T): T {
    return savepoint(this.#open.raw, name, fn);
  }

  /** True when the database answers and accepts a write (for /readyz). */
  isWritable(): boolean {
    try {
      this.#open.raw.exec("BEGIN IMMEDIATE; ROLLBACK");
      return true;
    } catch {
      return false;
    }
  }

  /** Returns up to `pages` free pages to the file system (auto_vacuum=INCREMENTAL; no full VACUUM). */
  incrementalVacuum(pages: number): void {
    this.#open.raw.exec(`PRAGMA incremental_vacuum(${Math.trunc(pages)})`);
  }

  // ---------------------------------------------------------------- accounts (accounts_store.ts)

  /** Creates an account; `secrets` are the derived CRAM-MD5 context and scrypt hash. */
  addAccount(username: string, secrets: AccountSecrets): Account {
    return this.#accounts.addAccount(username, secrets);
  }

  /** The account named `username`, or null. */
  findAccount(username: string): Account | null {
    return this.#accounts.findAccount(username);
  }

  /** Every account, by name. */
  listAccounts(): (Account & { domains: number })[] {
    return this.#accounts.listAccounts();
  }

  /** Replaces an account's secrets. */
  setAccountSecrets(username: string, secrets: AccountSecrets): void {
    this.#accounts.setAccountSecrets(username, secrets);
  }

  /** Disables or enables an account (a disabled account cannot AUTH). */
  setAccountDisabled(username: string, disabled: boolean): void {
    this.#accounts.setAccountDisabled(username, disabled);
  }

  /** Removes an account that owns no domains. */
  removeAccount(username: string): void {
    this.#accounts.removeAccount(username);
  }

  // ----------------------------------------------------------------- domains (domains_store.ts)

  /** Adds a hosted domain owned by `username`. */
  addDomain(name: string, username: string, options: { mailboxes?: string[] } = {}): void {
    this.#domains.addDomain(name, username, options);
  }

  /** Removes a domain; with queued mail only when `force` (which deletes that mail). */
  removeDomain(name: string, options: { force?: boolean } = {}): { deletedRecipients: number } {
    return this.#domains.removeDomain(name, options);
  }

  /** Sets a domain's hold flag (held mail stays queued and is not delivered on ATRN). */
  setDomainHold(name: string, hold: boolean): void {
    this.#domains.setDomainHold(name, hold);
  }

  /** Every domain with owner and counters (O(domains), no queue scan). */
  listDomains(): DomainInfo[] {
    return this.#domains.listDomains();
  }

  /** Names of the domains owned by an account. */
  domainsOfAccount(accountId: number): { name: string; hold: boolean }[] {
    return this.#domains.domainsOfAccount(accountId);
  }

  /** True when `name` (any case) is a hosted domain (primary-key lookup). */
  hasDomain(name: string): boolean {
    return this.#domains.hasDomain(name);
  }

  /** Changes a domain's settings; omitted fields stay as they are (DomainsStore.updateDomain). */
  updateDomain(name: string, changes: DomainChanges): void {
    this.#domains.updateDomain(name, changes);
  }

  // ------------------------------------------------------------------ intake (enqueue.ts)

  /**
   * Most bytes the relay's own postmaster mailbox (domain key "", src/queue/postmaster.ts) may hold;
   * config `postmasterMailboxQuota`.
   */
  get postmasterQuotaBytes(): number {
    return this.#enqueue.postmasterQuotaBytes;
  }

  set postmasterQuotaBytes(bytes: number) {
    this.#enqueue.postmasterQuotaBytes = bytes;
  }

  /** RCPT-time recipient validation: hosted domain, and mailbox when the domain is not catch-all. */
  recipientVerdict(domain: string, localPart: string, incomingBytes = 0): RecipientVerdict {
    return this.#enqueue.recipientVerdict(domain, localPart, incomingBytes);
  }

  /** Commits a message and its recipients in ONE transaction; returns only after COMMIT. */
  enqueue(message: IncomingMessage, body: BodySource): number {
    return this.#enqueue.enqueue(message, body);
  }

  /** Inserts a message inside a transaction the caller owns (in a savepoint of it). */
  enqueueInTransaction(message: IncomingMessage, body: BodySource): number {
    return this.#enqueue.enqueueInTransaction(message, body);
  }

  /** Group commit: several messages in ONE transaction, each in its own savepoint. */
  enqueueMany(items: readonly { message: IncomingMessage; body: BodySource }[]): (number | Error)[] {
    return this.#enqueue.enqueueMany(items);
  }

  // ------------------------------------------------------------ delivery (delivery_store.ts)

  /** True when any of `domains` has a queued recipient (one index probe per domain). */
  hasQueuedMail(domainNames: readonly string[]): boolean {
    return this.#delivery.hasQueuedMail(domainNames);
  }

  /** The next messages after `afterId` with queued recipients in `domainNames`, with only those. */
  nextDeliverable(domainNames: readonly string[], afterId: number, limit = 50): DeliverableMessage[] {
    return this.#delivery.nextDeliverable(domainNames, afterId, limit);
  }

  /** The stored body in order, one chunk at a time (memory stays at one chunk). */
  readBody(messageId: number): Generator<Uint8Array> {
    return this.#delivery.readBody(messageId);
  }

  /** Records the outcomes for recipients of one message in one transaction. */
  recordOutcomes(messageId: number, outcomes: readonly RecipientOutcome[]): void {
    this.#delivery.recordOutcomes(messageId, outcomes);
  }

  /** The outcomes of several messages in ONE transaction (one fsync). */
  recordOutcomesMany(entries: readonly { messageId: number; outcomes: readonly RecipientOutcome[] }[]): void {
    this.#delivery.recordOutcomesMany(entries);
  }

  /** Domains with queued mail and their queue lifetime override (what expiry looks at). */
  expiryCandidates(): { name: string; retentionMs: number | null }[] {
    return this.#delivery.expiryCandidates();
  }

  /** Fails a domain's recipients queued before `cutoff` as expired; the caller owns the transaction. */
  expireQueued(domain: string, cutoff: number, text: string): number {
    return this.#delivery.expireQueued(domain, cutoff, text);
  }

  // ------------------------------------------------------------- ATRN history (atrn_store.ts)

  /** Stores an ATRN session and updates the domains' "last collection" fields. */
  recordAtrnSession(record: AtrnRecord): number {
    return this.#atrn.recordAtrnSession(record);
  }

  /** A poll that found no mail: updates the domains' last-poll fields, adds no history row. */
  recordPoll(accountId: number, domainNames: readonly string[], peer: string, at: number): void {
    this.#atrn.recordPoll(accountId, domainNames, peer, at);
  }

  /** The most recent ATRN sessions, newest first. */
  recentAtrnSessions(limit = 20): AtrnSessionRow[] {
    return this.#atrn.recentAtrnSessions(limit);
  }

  /** Deletes ATRN session records started before `cutoff`; returns how many. */
  pruneAtrnHistory(cutoff: number): number {
    return this.#atrn.pruneAtrnHistory(cutoff);
  }

  // ------------------------------------------------------------ queue admin (admin_store.ts)

  /** Lists messages (keyset pagination by id), optionally for one domain and recipient status. */
  listQueue(filter: QueueListFilter = {}): QueueListRow[] {
    return this.#admin.listQueue(filter);
  }

  /** One message with its envelope and recipients, or null. */
  getMessage(id: number): StoredMessage | null {
    return this.#admin.getMessage(id);
  }

  /** Deletes a message and all its recipients; false when it did not exist. */
  deleteMessage(id: number): boolean {
    return this.#admin.deleteMessage(id);
  }

  /** Marks every queued recipient of a message failed; the DSN step reports them to the sender. */
  bounceMessage(id: number, reason: string): number {
    return this.#admin.bounceMessage(id, reason);
  }

  // ------------------------------------------------------- status reads (status_store.ts)

  /** Whole-queue totals in O(1) plus the oldest queued recipient (one seek per domain). */
  totals(): QueueTotals {
    return this.#status.totals();
  }

  /** Whole-queue counters from the trigger-kept `queue_totals` row: O(1), no oldest-age seeks. */
  queueCounts(): { messages: number; bytes: number; queuedRecipients: number } {
    return this.#status.queueCounts();
  }

  /** Oldest queued recipient's time for a domain (one index seek). */
  oldestQueuedAt(domain: string): number | null {
    return this.#status.oldestQueuedAt(domain);
  }

  /** Every domain with owner, counters, last collection and oldest queued time, in ONE statement. */
  domainQueueStatus(): DomainQueueStatus[] {
    return this.#status.domainQueueStatus();
  }

  // ------------------------------------------- postmaster mailbox (postmaster_store.ts)

  /** Bytes waiting in the relay's own postmaster mailbox (an index range over its rows only). */
  postmasterMailboxBytes(): number {
    return this.#postmaster.mailboxBytes();
  }

  /** Messages waiting in the relay's own postmaster mailbox. */
  postmasterMailboxCount(): number {
    return this.#postmaster.mailboxCount();
  }

  /** The oldest `limit` postmaster mailbox recipients with their message's envelope facts. */
  postmasterWaiting(limit: number): PostmasterRow[] {
    return this.#postmaster.waiting(limit);
  }

  /** Removes a forwarded postmaster recipient, and its message when none is left. */
  removeForwardedPostmaster(recipientId: number, messageId: number): void {
    this.#postmaster.removeForwarded(recipientId, messageId);
  }
}
