/**
 * Domain leases shared by every relay node, in the `domain_leases` table: one ATRN session per domain
 * at a time across the cluster (RFC 2645 5; docs/design.md#delivery), and cluster-wide jobs that run on
 * one node at a time. Same semantics as the in-memory table (src/queue/leases.ts): all of a session's
 * domains or none, renewal by the same owner keeps the idle mark, a new owner starts busy.
 *
 * Design: heartbeat and expiry, not session advisory locks. An advisory lock lives on one pooled
 * connection, so the session would have to pin a connection for its whole length and a lost
 * connection would silently drop its leases; a row with an expiry can be read by every node
 * (busyDomains, /status) and survives a reconnect.
 *
 * - A lease is a row (domain, owner, node, expires_at, idle). `owner` is a session id, unique only
 *   within its node, so a lease belongs to the pair (owner, node).
 * - `expires_at` is the database server's time (`clock_timestamp()` in ms), never a node's own clock:
 *   every node compares against the same clock, so clock skew between nodes cannot make two of them
 *   both think a lease expired.
 * - Taking leases is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE` (the row is free, expired, or
 *   already ours), in one transaction: when fewer rows were taken than asked for, it rolls back, so
 *   a session gets all its domains or none. Domains are taken in sorted order, so two nodes asking
 *   for overlapping sets cannot deadlock.
 * - A lease lasts `ttlMs` (config `clusterLeaseTtl`) after it was taken or last extended. While
 *   `startHeartbeat` runs, this node extends its live leases every interval, so a session holds its
 *   domains however long it runs (up to the `ttlMs` it asked for in `tryAcquire`, measured on this
 *   node's clock, as the in-memory table bounds a session that never releases). A node that dies stops
 *   beating, and its domains are free again within `ttlMs`.
 * - Jobs (expiry, the DSN step, the outbound worker) are rows keyed `job:<name>` owned by the node,
 *   renewed by each `claimJob` call for the job's own lifetime; the heartbeat does not touch them.
 * - The heartbeat runs on a connection of its own (`heartbeatDb`), so a pool saturated by slow
 *   queries cannot delay it past the ttl.
 * - The heartbeat also keeps this node's row in `nodes` (server times) for /status; `releaseNode`, at a
 *   clean shutdown, removes the node's leases, jobs and row at once.
 *
 * @module
 */
import { hostname as osHostname } from "node:os";
import { clearInterval, setInterval } from "node:timers";
import { type Clock, systemClock } from "../../clock.ts";
import type { ClusterNode, DomainLeaseTable } from "../queue.ts";
import { type PostgresDatabase, runNamed } from "./database.ts";

/** The database server's time in ms since the epoch (the one clock every node agrees on). */
const SERVER_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/** Domain key prefix of job leases; a domain name never contains ':'. */
const JOB_PREFIX = "job:";

/**
 * SQL: true when the domain named by the expression `domain` is being delivered right now (a live,
 * not idle lease, any node). Expiry and operator bounces test it in the statement that fails the
 * recipients, after locking the domain row; `tryAcquire` key-share-locks the same rows before it takes
 * a lease, so the two serialise: either the failure commits before the session's first look at the
 * queue, or the failing statement sees the session's lease and leaves its mail alone.
 */
export function domainBeingDelivered(domain: string): string {
  return `EXISTS (SELECT 1 FROM domain_leases bl WHERE bl.domain = ${domain} AND NOT bl.idle ` +
    `AND bl.expires_at > ${SERVER_NOW})`;
}

const STATEMENTS = {
  lockDomains: {
    name: "leases_lock_domains",
    // FOR KEY SHARE, the weakest row lock: it conflicts only with FOR UPDATE, which expiry, operator
    // bounces and domain removal take, so a session waits for those alone. Intake, outcome records and
    // the counter triggers change no key (FOR NO KEY UPDATE, plain UPDATEs) and never hold it up.
    // Locked in the order intake uses (src/queue/pg/pg_enqueue.ts).
    text: 'SELECT name FROM domains WHERE name = ANY($1::text[]) ORDER BY name COLLATE "C" FOR KEY SHARE',
  },
  acquire: {
    name: "leases_acquire",
    text: "INSERT INTO domain_leases AS l (domain, owner, node, expires_at, idle) " +
      `SELECT d, $2, $3, ${SERVER_NOW} + $4, false FROM unnest($1::text[]) WITH ORDINALITY AS u(d, n) ORDER BY u.n ` +
      "ON CONFLICT (domain) DO UPDATE SET owner = excluded.owner, node = excluded.node, " +
      "expires_at = excluded.expires_at, " +
      // Only a renewal by the same owner keeps the idle mark; a new owner starts busy.
      "idle = CASE WHEN l.owner = excluded.owner AND l.node = excluded.node THEN l.idle ELSE false END " +
      `WHERE (l.owner = excluded.owner AND l.node = excluded.node) OR l.expires_at <= ${SERVER_NOW}`,
  },
  release: {
    name: "leases_release",
    text: "DELETE FROM domain_leases WHERE node = $1 AND owner = $2 AND domain NOT LIKE 'job:%'",
  },
  setIdle: {
    name: "leases_set_idle",
    text: "UPDATE domain_leases SET idle = $3 WHERE node = $1 AND owner = $2 AND domain NOT LIKE 'job:%'",
  },
  busy: {
    name: "leases_busy",
    text: `SELECT domain FROM domain_leases WHERE expires_at > ${SERVER_NOW} AND NOT idle ` +
      "AND domain NOT LIKE 'job:%' ORDER BY domain",
  },
  claimJob: {
    name: "leases_claim_job",
    text: "INSERT INTO domain_leases AS l (domain, owner, node, expires_at, idle) " +
      `VALUES ($1, $2, $2, ${SERVER_NOW} + $3, false) ` +
      "ON CONFLICT (domain) DO UPDATE SET owner = excluded.owner, node = excluded.node, " +
      `expires_at = excluded.expires_at WHERE l.node = excluded.node OR l.expires_at <= ${SERVER_NOW} ` +
      "RETURNING 1",
  },
  heartbeat: {
    name: "leases_heartbeat",
    // Extends only leases still live: one that expired may already be another node's, and if not, the
    // session's next renewal takes it again. Each owner gets at most what is left of its own ttl.
    text: "WITH beat AS (INSERT INTO nodes (id, hostname, started_at, heartbeat_at) " +
      `VALUES ($1, $4, ${SERVER_NOW}, ${SERVER_NOW}) ` +
      "ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, heartbeat_at = excluded.heartbeat_at) " +
      `UPDATE domain_leases l SET expires_at = ${SERVER_NOW} + LEAST($5::bigint, v.remaining) ` +
      "FROM unnest($2::text[], $3::bigint[]) AS v(owner, remaining) " +
      `WHERE l.node = $1 AND l.owner = v.owner AND l.domain NOT LIKE 'job:%' AND l.expires_at > ${SERVER_NOW}`,
  },
  liveNodes: {
    name: "leases_live_nodes",
    // Live: beat within the ttl, on the server's clock (as lease expiry is judged). Ages from there too.
    text: 'SELECT id AS name, hostname, started_at AS "startedAt", heartbeat_at AS "heartbeatAt", ' +
      `${SERVER_NOW} - heartbeat_at AS "heartbeatAgeMs" FROM nodes ` +
      `WHERE heartbeat_at > ${SERVER_NOW} - $1::bigint ORDER BY id COLLATE "C"`,
  },
  releaseNode: {
    name: "leases_release_node",
    text: "WITH gone AS (DELETE FROM nodes WHERE id = $1) DELETE FROM domain_leases WHERE node = $1",
  },
} as const;

/** Thrown inside `tryAcquire`'s transaction to roll it back when a domain is held elsewhere. */
class LeaseHeldElsewhere extends Error {}

/** Options of {@linkcode PgLeaseTable}. */
export interface PgLeaseTableOptions {
  /** This node's identity in lease rows and `nodes` (unique per process). */
  node: string;
  /** This node's clock: measures how long each of this node's sessions asked to hold its leases. */
  clock?: Clock;
  /** How long a lease outlives the last heartbeat or renewal, ms (config `clusterLeaseTtl`). */
  ttlMs?: number;
  /** Shown in `nodes.hostname` (default: the OS hostname). */
  hostname?: string;
  /** Called when a heartbeat fails (the database is unreachable); the next beat tries again. */
  onHeartbeatError?: (error: Error) => void;
  /**
   * Where the heartbeat runs (default: the shared pool). A connection of its own keeps the beat on
   * time while every pooled connection is busy, so a busy node does not lose its leases.
   */
  heartbeatDb?: PostgresDatabase;
}

/** `DomainLeaseTable` in PostgreSQL, shared by every node. */
export class PgLeaseTable implements DomainLeaseTable {
  readonly node: string;
  readonly ttlMs: number;
  readonly #db: PostgresDatabase;
  readonly #heartbeatDb: PostgresDatabase;
  readonly #clock: Clock;
  readonly #hostname: string;
  readonly #onHeartbeatError: ((error: Error) => void) | undefined;
  /** This node's sessions holding leases: when each one's own ttl runs out (this node's clock). */
  readonly #sessions = new Map<string, number>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #beating: Promise<void> | undefined;

  constructor(db: PostgresDatabase, options: PgLeaseTableOptions) {
    this.#db = db;
    this.#heartbeatDb = options.heartbeatDb ?? db;
    this.node = options.node;
    this.#clock = options.clock ?? systemClock;
    this.ttlMs = Math.ceil(options.ttlMs ?? 30_000);
    this.#hostname = options.hostname ?? osHostname();
    this.#onHeartbeatError = options.onHeartbeatError;
  }

  /**
   * Takes (or renews) every domain for `owner` on this node, or none when any is held by another live
   * owner. The row lasts min(ttlMs, this table's ttl); the heartbeat keeps it for up to `ttlMs`.
   */
  async tryAcquire(domains: readonly string[], owner: string, ttlMs: number): Promise<boolean> {
    const wanted = [...new Set(domains)].sort();
    if (wanted.length === 0) return true;
    try {
      await this.#db.transaction(async (client) => {
        // A session reads the queue only after taking (or renewing, after a watch's wait) its leases:
        // this lock orders that against expiry and operator bounces (domainBeingDelivered).
        await runNamed(client, STATEMENTS.lockDomains, [wanted]);
        const result = await runNamed(client, STATEMENTS.acquire, [
          wanted,
          owner,
          this.node,
          Math.ceil(Math.min(ttlMs, this.ttlMs)),
        ]);
        if ((result.rowCount ?? 0) < wanted.length) throw new LeaseHeldElsewhere();
      });
    } catch (error) {
      if (error instanceof LeaseHeldElsewhere) return false;
      throw error;
    }
    this.#sessions.set(owner, this.#clock.now() + ttlMs);
    return true;
  }

  /** Releases every domain `owner` (of this node) holds. */
  async release(owner: string): Promise<void> {
    this.#sessions.delete(owner);
    await runNamed(this.#db.pool, STATEMENTS.release, [this.node, owner]);
  }

  /**
   * Marks `owner`'s leases idle (a watching session waiting, nothing in flight) or busy again. An idle
   * lease still keeps other sessions out, but expiry and operator bounces may touch its mail.
   */
  async setIdle(owner: string, idle: boolean): Promise<void> {
    await runNamed(this.#db.pool, STATEMENTS.setIdle, [this.node, owner, idle]);
  }

  /** Domains being delivered right now (leased, live and not idle), by any node. */
  async busyDomains(): Promise<string[]> {
    return (await runNamed<{ domain: string }>(this.#db.pool, STATEMENTS.busy, [])).rows.map((r) => r.domain);
  }

  /**
   * True when this node holds the cluster-wide job `name` after the call: taken when free or expired,
   * renewed for `ttlMs` when already this node's.
   */
  async claimJob(name: string, ttlMs: number): Promise<boolean> {
    const result = await runNamed(this.#db.pool, STATEMENTS.claimJob, [
      JOB_PREFIX + name,
      this.node,
      Math.ceil(ttlMs),
    ]);
    return (result.rowCount ?? 0) === 1;
  }

  /**
   * Extends this node's live session leases now (what each heartbeat does) and records the beat in
   * `nodes`. Sessions whose own ttl has run out are no longer extended and expire within the ttl.
   */
  async heartbeat(): Promise<void> {
    const now = this.#clock.now();
    const owners: string[] = [];
    const remaining: number[] = [];
    for (const [owner, until] of this.#sessions) {
      if (until <= now) {
        this.#sessions.delete(owner);
        continue;
      }
      owners.push(owner);
      remaining.push(Math.ceil(until - now));
    }
    await runNamed(this.#heartbeatDb.pool, STATEMENTS.heartbeat, [
      this.node,
      owners,
      remaining,
      this.#hostname,
      this.ttlMs,
    ]);
  }

  /**
   * Beats every `intervalMs` until `stop()` (choose well under the ttl, e.g. a third). A beat still in
   * flight when the next is due is not doubled. The timer does not keep the process alive by itself.
   */
  startHeartbeat(intervalMs: number): void {
    this.stop();
    const beat = () => {
      if (this.#beating) return;
      this.#beating = this.heartbeat()
        .catch((error) => this.#onHeartbeatError?.(error as Error))
        .finally(() => {
          this.#beating = undefined;
        });
    };
    beat();
    this.#timer = setInterval(beat, intervalMs);
    this.#timer.unref();
  }

  /** Stops the heartbeat (a beat in flight finishes; see `stopped`). */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Resolves once no heartbeat is in flight (for a clean shutdown after `stop`). */
  async stopped(): Promise<void> {
    await this.#beating;
  }

  /**
   * The nodes whose heartbeat is younger than the ttl (a node that died drops out as its leases
   * expire), this one marked `self`. This node is listed even before its first beat lands.
   */
  async clusterNodes(): Promise<ClusterNode[]> {
    const rows =
      (await runNamed<Omit<ClusterNode, "self">>(this.#db.pool, STATEMENTS.liveNodes, [this.ttlMs]))
        .rows;
    const nodes = rows.map((row) => ({ ...row, self: row.name === this.node }));
    if (!nodes.some((n) => n.self)) {
      nodes.push({
        name: this.node,
        hostname: this.#hostname,
        startedAt: null,
        heartbeatAt: null,
        heartbeatAgeMs: null,
        self: true,
      });
    }
    return nodes;
  }

  /** At a clean shutdown: deletes this node's leases, job leases and `nodes` row at once. */
  async releaseNode(): Promise<void> {
    this.stop();
    await this.stopped();
    this.#sessions.clear();
    await runNamed(this.#db.pool, STATEMENTS.releaseNode, [this.node]);
  }
}
