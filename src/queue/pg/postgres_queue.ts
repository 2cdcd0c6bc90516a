/**
 * The shared queue: `Queue` over one PostgreSQL database that several relay nodes use at once
 * (docs/postgres_driver.md). Each aggregate has its module in this directory; this class opens
 * the connection pool, applies the migrations (serialised between nodes by an advisory lock), and
 * delegates. Domain leases live in the database (pg_leases.ts), with owners scoped by node, so two
 * sessions on two nodes never deliver one domain at once. Committed mail is announced to every node by
 * NOTIFY, heard on a dedicated LISTEN connection (pg_new_mail.ts, `watchNewMail`).
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { type Clock, systemClock } from "../../clock.ts";
import type {
  Account,
  AccountSecrets,
  AtrnRecord,
  AtrnSessionRow,
  BodySource,
  ClusterNode,
  DeliverableMessage,
  DomainChanges,
  DomainInfo,
  DomainLeaseTable,
  DomainQueueStatus,
  IncomingMessage,
  NewMailEvent,
  Queue,
  QueueBackend,
  QueueListFilter,
  QueueListRow,
  QueueTotals,
  RecipientOutcome,
  RecipientVerdict,
  StoredMessage,
} from "../queue.ts";
import { PostgresDatabase, type PostgresOptions } from "./database.ts";
import { migratePostgres } from "./migrate.ts";
import { PgAccounts } from "./pg_accounts.ts";
import { PgAdmin } from "./pg_admin.ts";
import { PgAtrn } from "./pg_atrn.ts";
import { PgDelivery } from "./pg_delivery.ts";
import { PgDomains } from "./pg_domains.ts";
import { PgEnqueue } from "./pg_enqueue.ts";
import { PgLeaseTable } from "./pg_leases.ts";
import { PgNewMailListener } from "./pg_new_mail.ts";
import { PgStatus } from "./pg_status.ts";

/** Options of {@linkcode PostgresQueue.open}. */
export interface PostgresQueueOptions extends PostgresOptions {
  clock?: Clock;
  /** This node's name (config `nodeName`); a random suffix tells restarts apart. */
  node?: string;
  /** Lease lifetime after the last heartbeat, ms (config `clusterLeaseTtl`). */
  leaseTtlMs?: number;
  /** Apply pending migrations (default true). */
  migrate?: boolean;
  /** Told when a lease heartbeat fails (the database is unreachable; leases lapse after the ttl). */
  onHeartbeatError?: (error: Error) => void;
}

/** `Queue` over PostgreSQL. */
export class PostgresQueue implements Queue {
  readonly backend: QueueBackend = "postgres";
  readonly db: PostgresDatabase;
  /** This process's identity in lease rows and /status (`name#suffix`). */
  readonly node: string;
  readonly leases: DomainLeaseTable;
  readonly #leaseTable: PgLeaseTable;
  /** The heartbeat's own connection: a pool busy with slow queries must not starve the lease renewals. */
  readonly #heartbeatDb: PostgresDatabase;
  readonly #accounts: PgAccounts;
  readonly #domains: PgDomains;
  readonly #enqueue: PgEnqueue;
  readonly #delivery: PgDelivery;
  readonly #atrn: PgAtrn;
  readonly #admin: PgAdmin;
  readonly #status: PgStatus;
  /** How to open connections outside the pool (the LISTEN one). */
  readonly #connect: { url: string; ca: string | undefined; connectTimeoutMs: number | undefined };
  readonly #listeners = new Set<PgNewMailListener>();

  private constructor(
    db: PostgresDatabase,
    node: string,
    clock: Clock,
    leaseTtlMs: number,
    connect: { url: string; ca: string | undefined; connectTimeoutMs: number | undefined },
    onHeartbeatError: ((error: Error) => void) | undefined,
    heartbeatDb: PostgresDatabase,
  ) {
    this.db = db;
    this.#heartbeatDb = heartbeatDb;
    this.#connect = connect;
    this.node = node;
    this.#leaseTable = new PgLeaseTable(db, {
      node,
      heartbeatDb,
      clock,
      ttlMs: leaseTtlMs,
      ...(onHeartbeatError ? { onHeartbeatError } : {}),
    });
    this.leases = this.#leaseTable;
    this.#accounts = new PgAccounts(db, clock);
    this.#domains = new PgDomains(db, clock);
    this.#enqueue = new PgEnqueue(db, clock, node);
    this.#delivery = new PgDelivery(db, clock);
    this.#atrn = new PgAtrn(db);
    this.#admin = new PgAdmin(db, clock);
    this.#status = new PgStatus(db);
  }

  /** Connects, migrates (unless told not to) and starts the lease heartbeat. */
  static async open(url: string, options: PostgresQueueOptions = {}): Promise<PostgresQueue> {
    const db = new PostgresDatabase(url, options);
    try {
      if (options.migrate !== false) await migratePostgres(db);
    } catch (error) {
      await db.close().catch(() => {});
      throw error;
    }
    const node = `${options.node ?? "node"}#${randomBytes(3).toString("hex")}`;
    const ttl = options.leaseTtlMs ?? 30_000;
    const beatMs = Math.max(100, Math.floor(ttl / 3));
    // Kept open between beats (a server out of connection slots must not cost this node its leases),
    // and one hung beat gives up before the next is due rather than outliving the ttl.
    const heartbeatDb = new PostgresDatabase(url, {
      ...options,
      poolSize: 1,
      idleTimeoutMs: 0,
      queryTimeoutMs: Math.min(options.queryTimeoutMs ?? 30_000, Math.max(1000, beatMs)),
    });
    const queue = new PostgresQueue(
      db,
      node,
      options.clock ?? systemClock,
      ttl,
      {
        url,
        ca: options.ca,
        connectTimeoutMs: options.connectTimeoutMs,
      },
      options.onHeartbeatError,
      heartbeatDb,
    );
    queue.#leaseTable.startHeartbeat(beatMs);
    return queue;
  }

  get location(): string {
    return this.db.location;
  }

  get postmasterQuotaBytes(): number {
    return this.#enqueue.postmasterQuotaBytes;
  }

  set postmasterQuotaBytes(bytes: number) {
    this.#enqueue.postmasterQuotaBytes = bytes;
  }

  addAccount(username: string, secrets: AccountSecrets): Promise<Account> {
    return this.#accounts.addAccount(username, secrets);
  }
  findAccount(username: string): Promise<Account | null> {
    return this.#accounts.findAccount(username);
  }
  listAccounts(): Promise<(Account & { domains: number })[]> {
    return this.#accounts.listAccounts();
  }
  setAccountSecrets(username: string, secrets: AccountSecrets): Promise<void> {
    return this.#accounts.setAccountSecrets(username, secrets);
  }
  setAccountDisabled(username: string, disabled: boolean): Promise<void> {
    return this.#accounts.setAccountDisabled(username, disabled);
  }
  removeAccount(username: string): Promise<void> {
    return this.#accounts.removeAccount(username);
  }

  addDomain(name: string, username: string, options: { mailboxes?: string[] } = {}): Promise<void> {
    return this.#domains.addDomain(name, username, options);
  }
  removeDomain(name: string, options: { force?: boolean } = {}): Promise<{ deletedRecipients: number }> {
    return this.#domains.removeDomain(name, options);
  }
  setDomainHold(name: string, hold: boolean): Promise<void> {
    return this.#domains.setDomainHold(name, hold);
  }
  listDomains(): Promise<DomainInfo[]> {
    return this.#domains.listDomains();
  }
  domainsOfAccount(accountId: number): Promise<{ name: string; hold: boolean }[]> {
    return this.#domains.domainsOfAccount(accountId);
  }
  hasDomain(name: string): Promise<boolean> {
    return this.#domains.hasDomain(name);
  }
  updateDomain(name: string, changes: DomainChanges): Promise<void> {
    return this.#domains.updateDomain(name, changes);
  }

  recipientVerdict(domain: string, localPart: string, incomingBytes = 0): Promise<RecipientVerdict> {
    return this.#enqueue.recipientVerdict(domain, localPart, incomingBytes);
  }
  enqueue(message: IncomingMessage, body: BodySource): Promise<number> {
    return this.#enqueue.enqueue(message, body);
  }
  enqueueMany(items: readonly { message: IncomingMessage; body: BodySource }[]): Promise<(number | Error)[]> {
    return this.#enqueue.enqueueMany(items);
  }

  hasQueuedMail(domainNames: readonly string[]): Promise<boolean> {
    return this.#delivery.hasQueuedMail(domainNames);
  }
  nextDeliverable(
    domainNames: readonly string[],
    afterId: number,
    limit = 50,
  ): Promise<DeliverableMessage[]> {
    return this.#delivery.nextDeliverable(domainNames, afterId, limit);
  }
  readBody(messageId: number): AsyncIterable<Uint8Array> {
    return this.#delivery.readBody(messageId);
  }
  recordOutcomes(messageId: number, outcomes: readonly RecipientOutcome[]): Promise<void> {
    return this.#delivery.recordOutcomes(messageId, outcomes);
  }
  recordOutcomesMany(
    entries: readonly { messageId: number; outcomes: readonly RecipientOutcome[] }[],
  ): Promise<void> {
    return this.#delivery.recordOutcomesMany(entries);
  }
  expiryCandidates(): Promise<{ name: string; retentionMs: number | null }[]> {
    return this.#delivery.expiryCandidates();
  }
  expireQueued(domain: string, cutoff: number, text: string): Promise<number> {
    return this.#delivery.expireQueued(domain, cutoff, text);
  }

  recordAtrnSession(record: AtrnRecord): Promise<number> {
    return this.#atrn.recordAtrnSession(record);
  }
  recordPoll(accountId: number, domainNames: readonly string[], peer: string, at: number): Promise<void> {
    return this.#atrn.recordPoll(accountId, domainNames, peer, at);
  }
  recentAtrnSessions(limit = 20): Promise<AtrnSessionRow[]> {
    return this.#atrn.recentAtrnSessions(limit);
  }
  pruneAtrnHistory(cutoff: number): Promise<number> {
    return this.#atrn.pruneAtrnHistory(cutoff);
  }

  listQueue(filter: QueueListFilter = {}): Promise<QueueListRow[]> {
    return this.#admin.listQueue(filter);
  }
  getMessage(id: number): Promise<StoredMessage | null> {
    return this.#admin.getMessage(id);
  }
  deleteMessage(id: number): Promise<boolean> {
    return this.#admin.deleteMessage(id);
  }
  bounceMessage(id: number, reason: string): Promise<number> {
    return this.#admin.bounceMessage(id, reason);
  }

  totals(): Promise<QueueTotals> {
    return this.#status.totals();
  }
  queueCounts(): Promise<{ messages: number; bytes: number; queuedRecipients: number }> {
    return this.#status.queueCounts();
  }
  oldestQueuedAt(domain: string): Promise<number | null> {
    return this.#status.oldestQueuedAt(domain);
  }
  domainQueueStatus(): Promise<DomainQueueStatus[]> {
    return this.#status.domainQueueStatus();
  }
  postmasterMailboxBytes(): Promise<number> {
    return this.#status.postmasterMailboxBytes();
  }
  postmasterMailboxCount(): Promise<number> {
    return this.#status.postmasterMailboxCount();
  }
  clusterNodes(): Promise<ClusterNode[]> {
    return this.#leaseTable.clusterNodes();
  }

  /**
   * Listens for the NOTIFY every enqueue transaction of the other nodes sends (this node wakes its
   * own watchers when it commits) on a dedicated connection, reconnecting by itself; "all" after a reconnect, since notifications sent
   * meanwhile are lost. The returned function (and `close`) stops it.
   */
  watchNewMail(
    onMail: (domains: NewMailEvent) => void,
    options: { onError?: (error: Error) => void; onListening?: () => void } = {},
  ): () => Promise<void> {
    const listener = new PgNewMailListener({
      url: this.#connect.url,
      ca: this.#connect.ca,
      ...(this.#connect.connectTimeoutMs === undefined
        ? {}
        : { connectTimeoutMs: this.#connect.connectTimeoutMs }),
      ...(options.onError ? { onError: options.onError } : {}),
      ...(options.onListening ? { onListening: options.onListening } : {}),
      node: this.node,
    }, onMail);
    this.#listeners.add(listener);
    return async () => {
      this.#listeners.delete(listener);
      await listener.close();
    };
  }

  async isWritable(): Promise<boolean> {
    try {
      // A real write, rolled back: a read-only standby or a full disk says no.
      await this.db.transaction(async (client) => {
        await client.query("CREATE TEMP TABLE IF NOT EXISTS readiness_probe (x int) ON COMMIT DROP");
        await client.query("INSERT INTO readiness_probe VALUES (1)");
      });
      return true;
    } catch {
      return false;
    }
  }
  maintain(): Promise<void> {
    // autovacuum reclaims space on PostgreSQL.
    return Promise.resolve();
  }
  async close(): Promise<void> {
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    await Promise.all(listeners.map((l) => l.close()));
    this.#leaseTable.stop();
    await this.#leaseTable.stopped();
    await this.#leaseTable.releaseNode().catch(() => {});
    await this.#heartbeatDb.close();
    await this.db.close();
  }
}
