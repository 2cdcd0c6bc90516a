/**
 * The embedded queue: `Queue` over the synchronous SQLite store (src/queue/store.ts). node:sqlite runs
 * each statement to completion on the event loop, so every method here has done its work, and
 * committed, by the time it returns its (already settled) promise: the async interface costs one
 * microtask, and the group commit and prepared statements underneath are unchanged. The reporting
 * jobs and the outbound queue work on `store` directly (same connection, same transactions).
 *
 * @module
 */
import { hostname as osHostname } from "node:os";
import { type Clock, systemClock } from "../clock.ts";
import { DomainLeases } from "./leases.ts";
import type { OpenOptions } from "./db.ts";
import { openStore } from "./open.ts";
import type { ClusterNode, DomainLeaseTable, Queue, QueueBackend } from "./queue.ts";
import type {
  Account,
  AccountSecrets,
  AtrnRecord,
  AtrnSessionRow,
  BodySource,
  DeliverableMessage,
  DomainChanges,
  DomainInfo,
  DomainQueueStatus,
  IncomingMessage,
  QueueListFilter,
  QueueListRow,
  QueueStore,
  QueueTotals,
  RecipientOutcome,
  RecipientVerdict,
  StoredMessage,
} from "./store.ts";

/** The in-memory lease table behind the `DomainLeaseTable` interface (one process: memory is right). */
class MemoryLeaseTable implements DomainLeaseTable {
  readonly #leases: DomainLeases;
  constructor(clock: Clock | undefined) {
    this.#leases = new DomainLeases(clock);
  }
  tryAcquire(domains: readonly string[], owner: string, ttlMs: number): Promise<boolean> {
    return Promise.resolve(this.#leases.tryAcquire(domains, owner, ttlMs));
  }
  release(owner: string): Promise<void> {
    return Promise.resolve(this.#leases.release(owner));
  }
  setIdle(owner: string, idle: boolean): Promise<void> {
    return Promise.resolve(this.#leases.setIdle(owner, idle));
  }
  busyDomains(): Promise<string[]> {
    return Promise.resolve(this.#leases.busyDomains());
  }
  claimJob(): Promise<boolean> {
    // One process owns the file: every job is this node's.
    return Promise.resolve(true);
  }
}

/** Runs `fn` now and settles with its result or its error (never throws synchronously). */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Options of {@linkcode SqliteQueue}. */
export interface SqliteQueueOptions {
  /** This node's name (config `nodeName`; default: the OS hostname). */
  node?: string;
}

/** `Queue` over one SQLite file. */
export class SqliteQueue implements Queue {
  readonly backend: QueueBackend = "sqlite";
  readonly leases: DomainLeaseTable;
  /** The synchronous store (for the reporting jobs, the outbound queue and tests). */
  readonly store: QueueStore;
  readonly node: string;
  /** When this process opened the queue (shown as the node's start in /status). */
  readonly #openedAt: number;

  constructor(store: QueueStore, clock?: Clock, options: SqliteQueueOptions = {}) {
    this.store = store;
    this.leases = new MemoryLeaseTable(clock);
    this.node = options.node ?? osHostname();
    this.#openedAt = (clock ?? systemClock).now();
  }

  /** Opens (creating and migrating when needed) the queue under `dataDir`. */
  static open(
    dataDir: string,
    clock?: Clock,
    options: OpenOptions & SqliteQueueOptions = {},
  ): SqliteQueue {
    const { node, ...storeOptions } = options;
    return new SqliteQueue(
      openStore(dataDir, clock, storeOptions),
      clock,
      node === undefined ? {} : { node },
    );
  }

  get location(): string {
    return this.store.database.path;
  }

  get postmasterQuotaBytes(): number {
    return this.store.postmasterQuotaBytes;
  }

  set postmasterQuotaBytes(bytes: number) {
    this.store.postmasterQuotaBytes = bytes;
  }

  addAccount(username: string, secrets: AccountSecrets): Promise<Account> {
    return settle(() => this.store.addAccount(username, secrets));
  }
  findAccount(username: string): Promise<Account | null> {
    return settle(() => this.store.findAccount(username));
  }
  listAccounts(): Promise<(Account & { domains: number })[]> {
    return settle(() => this.store.listAccounts());
  }
  setAccountSecrets(username: string, secrets: AccountSecrets): Promise<void> {
    return settle(() => this.store.setAccountSecrets(username, secrets));
  }
  setAccountDisabled(username: string, disabled: boolean): Promise<void> {
    return settle(() => this.store.setAccountDisabled(username, disabled));
  }
  removeAccount(username: string): Promise<void> {
    return settle(() => this.store.removeAccount(username));
  }

  addDomain(name: string, username: string, options: { mailboxes?: string[] } = {}): Promise<void> {
    return settle(() => this.store.addDomain(name, username, options));
  }
  removeDomain(name: string, options: { force?: boolean } = {}): Promise<{ deletedRecipients: number }> {
    return settle(() => this.store.removeDomain(name, options));
  }
  setDomainHold(name: string, hold: boolean): Promise<void> {
    return settle(() => this.store.setDomainHold(name, hold));
  }
  listDomains(): Promise<DomainInfo[]> {
    return settle(() => this.store.listDomains());
  }
  domainsOfAccount(accountId: number): Promise<{ name: string; hold: boolean }[]> {
    return settle(() => this.store.domainsOfAccount(accountId));
  }
  hasDomain(name: string): Promise<boolean> {
    return settle(() => this.store.hasDomain(name));
  }
  updateDomain(name: string, changes: DomainChanges): Promise<void> {
    return settle(() => this.store.updateDomain(name, changes));
  }

  recipientVerdict(domain: string, localPart: string, incomingBytes = 0): Promise<RecipientVerdict> {
    return settle(() => this.store.recipientVerdict(domain, localPart, incomingBytes));
  }
  enqueue(message: IncomingMessage, body: BodySource): Promise<number> {
    return settle(() => this.store.enqueue(message, body));
  }
  enqueueMany(items: readonly { message: IncomingMessage; body: BodySource }[]): Promise<(number | Error)[]> {
    return settle(() => this.store.enqueueMany(items));
  }

  hasQueuedMail(domainNames: readonly string[]): Promise<boolean> {
    return settle(() => this.store.hasQueuedMail(domainNames));
  }
  nextDeliverable(
    domainNames: readonly string[],
    afterId: number,
    limit = 50,
  ): Promise<DeliverableMessage[]> {
    return settle(() => this.store.nextDeliverable(domainNames, afterId, limit));
  }
  readBody(messageId: number): Iterable<Uint8Array> {
    return this.store.readBody(messageId);
  }
  recordOutcomes(messageId: number, outcomes: readonly RecipientOutcome[]): Promise<void> {
    return settle(() => this.store.recordOutcomes(messageId, outcomes));
  }
  recordOutcomesMany(
    entries: readonly { messageId: number; outcomes: readonly RecipientOutcome[] }[],
  ): Promise<void> {
    return settle(() => this.store.recordOutcomesMany(entries));
  }
  expiryCandidates(): Promise<{ name: string; retentionMs: number | null }[]> {
    return settle(() => this.store.expiryCandidates());
  }
  expireQueued(domain: string, cutoff: number, text: string): Promise<number> {
    return settle(() => this.store.transaction(() => this.store.expireQueued(domain, cutoff, text)));
  }

  recordAtrnSession(record: AtrnRecord): Promise<number> {
    return settle(() => this.store.recordAtrnSession(record));
  }
  recordPoll(accountId: number, domainNames: readonly string[], peer: string, at: number): Promise<void> {
    return settle(() => this.store.recordPoll(accountId, domainNames, peer, at));
  }
  recentAtrnSessions(limit = 20): Promise<AtrnSessionRow[]> {
    return settle(() => this.store.recentAtrnSessions(limit));
  }
  pruneAtrnHistory(cutoff: number): Promise<number> {
    return settle(() => this.store.pruneAtrnHistory(cutoff));
  }

  listQueue(filter: QueueListFilter = {}): Promise<QueueListRow[]> {
    return settle(() => this.store.listQueue(filter));
  }
  getMessage(id: number): Promise<StoredMessage | null> {
    return settle(() => this.store.getMessage(id));
  }
  deleteMessage(id: number): Promise<boolean> {
    return settle(() => this.store.deleteMessage(id));
  }
  bounceMessage(id: number, reason: string): Promise<number> {
    return settle(() => this.store.bounceMessage(id, reason));
  }

  totals(): Promise<QueueTotals> {
    return settle(() => this.store.totals());
  }
  queueCounts(): Promise<{ messages: number; bytes: number; queuedRecipients: number }> {
    return settle(() => this.store.queueCounts());
  }
  oldestQueuedAt(domain: string): Promise<number | null> {
    return settle(() => this.store.oldestQueuedAt(domain));
  }
  domainQueueStatus(): Promise<DomainQueueStatus[]> {
    return settle(() => this.store.domainQueueStatus());
  }
  postmasterMailboxBytes(): Promise<number> {
    return settle(() => this.store.postmasterMailboxBytes());
  }
  postmasterMailboxCount(): Promise<number> {
    return settle(() => this.store.postmasterMailboxCount());
  }
  clusterNodes(): Promise<ClusterNode[]> {
    // One process owns the file: the cluster is this node. No heartbeat: nobody else reads it.
    return Promise.resolve([{
      name: this.node,
      hostname: osHostname(),
      startedAt: this.#openedAt,
      heartbeatAt: null,
      heartbeatAgeMs: null,
      self: true,
    }]);
  }

  isWritable(): Promise<boolean> {
    return settle(() => this.store.isWritable());
  }
  maintain(): Promise<void> {
    // auto_vacuum=INCREMENTAL: give back up to 1000 free pages per round without a full VACUUM.
    return settle(() => this.store.incrementalVacuum(1000));
  }
  close(): Promise<void> {
    return settle(() => this.store.database.close());
  }
}
