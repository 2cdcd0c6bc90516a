/**
 * The queue as the serving relay and the admin commands see it: one asynchronous interface with two
 * implementations (docs/design.md#seams, 6):
 *
 * - `SqliteQueue` (src/queue/sqlite_queue.ts): the embedded default, one SQLite file in `dataDir`. Its
 *   work is synchronous underneath (node:sqlite), so every method has done its work, committed, before
 *   it returns its promise; the group commit and prepared statements stay as they were.
 * - `PostgresQueue` (src/queue/pg/postgres_queue.ts): several relay nodes sharing one database, selected
 *   by a `postgres://` `database` setting. It passes the same store suite as SQLite
 *   (test/queue/queue_suite.ts); its reporting jobs are src/queue/pg/pg_bounces.ts and its siblings.
 *
 * Every write method is one transaction, committed durably before its promise resolves (SQLite
 * synchronous=FULL; PostgreSQL synchronous_commit=on): the intake answers 250 only after `enqueue`
 * resolves (RFC 5321 4.1.1.4). A promise that rejects means nothing of that call was stored.
 *
 * @module
 */
import type { Account, AccountSecrets } from "./accounts_store.ts";
import type { QueueListFilter, QueueListRow, StoredMessage } from "./admin_store.ts";
import type { AtrnRecord, AtrnSessionRow } from "./atrn_store.ts";
import type { DeliverableMessage, RecipientOutcome } from "./delivery_store.ts";
import type { DomainChanges, DomainInfo } from "./domains_store.ts";
import type { BodySource, IncomingMessage, RecipientVerdict } from "./enqueue.ts";
import type { DomainQueueStatus, QueueTotals } from "./status_store.ts";

export type { Account, AccountSecrets } from "./accounts_store.ts";
export type { QueueListFilter, QueueListRow, StoredMessage } from "./admin_store.ts";
export type { AtrnRecord, AtrnSessionRow } from "./atrn_store.ts";
export type { DeliverableMessage, RecipientOutcome } from "./delivery_store.ts";
export type { DomainChanges, DomainInfo } from "./domains_store.ts";
export type { BodySource, IncomingMessage, IncomingRecipient, RecipientVerdict } from "./enqueue.ts";
export { QuotaExceededError } from "./enqueue.ts";
export type { DomainQueueStatus, QueueTotals } from "./status_store.ts";
export { domainKeyOrThrow, StoreError } from "./store_error.ts";

/** Which implementation a queue is. */
export type QueueBackend = "sqlite" | "postgres";

/**
 * One ATRN session per domain at a time (RFC 2645 5: the server must not let two sessions deliver a
 * domain at once): a lease per domain, taken for all of a session's domains or none. SQLite keeps
 * them in memory (one process); PostgreSQL in a table every node sees, with an expiry that the
 * holder renews, so a node that dies frees its domains when its leases expire.
 */
export interface DomainLeaseTable {
  /** Takes (or renews) every domain for `owner`, or none when any is held by another live owner. */
  tryAcquire(domains: readonly string[], owner: string, ttlMs: number): Promise<boolean>;
  /** Releases every domain `owner` holds. */
  release(owner: string): Promise<void>;
  /** Marks `owner`'s leases idle (a watching session waiting, nothing in flight) or busy again. */
  setIdle(owner: string, idle: boolean): Promise<void>;
  /** Domains being delivered right now (leased and not idle), by any owner. */
  busyDomains(): Promise<string[]>;
  /**
   * True when this node should run the cluster-wide job `name` now (expiry, the DSN step, the outbound
   * worker): the job's lease is this node's, taken or renewed for `ttlMs`. One process: always true.
   */
  claimJob(name: string, ttlMs: number): Promise<boolean>;
}

/** One relay node using the queue, for /status and /metrics. */
export interface ClusterNode {
  /** The node's identity: `nodeName` (SQLite), `nodeName#suffix` per process (PostgreSQL). */
  name: string;
  /** The host it runs on, as it reported it. */
  hostname: string | null;
  /** When it joined, ms since the epoch (PostgreSQL: the database server's clock); null if unknown. */
  startedAt: number | null;
  /** Its last heartbeat, ms since the epoch (server clock); null for SQLite, which has none. */
  heartbeatAt: number | null;
  /** Milliseconds since that heartbeat, measured on the database server; null without one. */
  heartbeatAgeMs: number | null;
  /** True for the node answering this request. */
  self: boolean;
}

/** What a cross-node new-mail listener reports: committed mail for these domains, or for any ("all"). */
export type NewMailEvent = string[] | "all";

/** The queue: accounts, domains, accepted mail, delivery, history and status. */
export interface Queue {
  readonly backend: QueueBackend;
  /** Where the queue lives, for logs and /status (a file path, or the URL without its password). */
  readonly location: string;
  /** This node's name in /status, /metrics and (PostgreSQL) lease rows. */
  readonly node: string;
  readonly leases: DomainLeaseTable;
  /** Most bytes the relay's own postmaster mailbox may hold (config `postmasterMailboxQuota`). */
  postmasterQuotaBytes: number;

  // accounts
  addAccount(username: string, secrets: AccountSecrets): Promise<Account>;
  findAccount(username: string): Promise<Account | null>;
  listAccounts(): Promise<(Account & { domains: number })[]>;
  setAccountSecrets(username: string, secrets: AccountSecrets): Promise<void>;
  setAccountDisabled(username: string, disabled: boolean): Promise<void>;
  removeAccount(username: string): Promise<void>;

  // domains
  addDomain(name: string, username: string, options?: { mailboxes?: string[] }): Promise<void>;
  removeDomain(name: string, options?: { force?: boolean }): Promise<{ deletedRecipients: number }>;
  setDomainHold(name: string, hold: boolean): Promise<void>;
  listDomains(): Promise<DomainInfo[]>;
  domainsOfAccount(accountId: number): Promise<{ name: string; hold: boolean }[]>;
  hasDomain(name: string): Promise<boolean>;
  updateDomain(name: string, changes: DomainChanges): Promise<void>;

  // intake
  recipientVerdict(domain: string, localPart: string, incomingBytes?: number): Promise<RecipientVerdict>;
  /** Commits one message; resolves with its id only after the durable COMMIT. */
  enqueue(message: IncomingMessage, body: BodySource): Promise<number>;
  /** Group commit: several messages in one transaction, a failing one alone rejected (an Error in its slot). */
  enqueueMany(items: readonly { message: IncomingMessage; body: BodySource }[]): Promise<(number | Error)[]>;

  // delivery
  hasQueuedMail(domainNames: readonly string[]): Promise<boolean>;
  nextDeliverable(
    domainNames: readonly string[],
    afterId: number,
    limit?: number,
  ): Promise<DeliverableMessage[]>;
  /** The stored body in order, one chunk at a time. */
  readBody(messageId: number): Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
  recordOutcomes(messageId: number, outcomes: readonly RecipientOutcome[]): Promise<void>;
  recordOutcomesMany(
    entries: readonly { messageId: number; outcomes: readonly RecipientOutcome[] }[],
  ): Promise<void>;
  expiryCandidates(): Promise<{ name: string; retentionMs: number | null }[]>;
  /** Fails a domain's recipients queued before `cutoff` as expired, in one transaction; returns how many. */
  expireQueued(domain: string, cutoff: number, text: string): Promise<number>;

  // ATRN history
  recordAtrnSession(record: AtrnRecord): Promise<number>;
  recordPoll(accountId: number, domainNames: readonly string[], peer: string, at: number): Promise<void>;
  recentAtrnSessions(limit?: number): Promise<AtrnSessionRow[]>;
  pruneAtrnHistory(cutoff: number): Promise<number>;

  // queue administration
  listQueue(filter?: QueueListFilter): Promise<QueueListRow[]>;
  getMessage(id: number): Promise<StoredMessage | null>;
  deleteMessage(id: number): Promise<boolean>;
  bounceMessage(id: number, reason: string): Promise<number>;

  // status
  totals(): Promise<QueueTotals>;
  queueCounts(): Promise<{ messages: number; bytes: number; queuedRecipients: number }>;
  oldestQueuedAt(domain: string): Promise<number | null>;
  domainQueueStatus(): Promise<DomainQueueStatus[]>;
  postmasterMailboxBytes(): Promise<number>;
  postmasterMailboxCount(): Promise<number>;
  /**
   * The nodes using this queue, this one marked `self`. PostgreSQL: every node whose heartbeat is
   * younger than the lease ttl (a node that died drops out), plus this one; SQLite: just this one.
   */
  clusterNodes(): Promise<ClusterNode[]>;

  // new mail from other nodes
  /**
   * Calls `onMail` whenever another node (or this one) commits mail, with its domains, or "all" when
   * notifications may have been missed (after a reconnect). Only a wake-up hint: the queue stays the
   * truth. Absent where one process owns the queue (SQLite). Returns a function that stops it.
   */
  watchNewMail?(
    onMail: (domains: NewMailEvent) => void,
    options?: {
      /** Told when the listening connection is lost or a reconnect fails (it keeps trying). */
      onError?: (error: Error) => void;
      /** Told each time LISTEN is in place (first connect and every reconnect). */
      onListening?: () => void;
    },
  ): () => Promise<void>;

  // operations
  /** True when the database answers and accepts a write (for /readyz). */
  isWritable(): Promise<boolean>;
  /** Periodic upkeep of the storage (SQLite: returns free pages; PostgreSQL: nothing, autovacuum does it). */
  maintain(): Promise<void>;
  close(): Promise<void>;
}
