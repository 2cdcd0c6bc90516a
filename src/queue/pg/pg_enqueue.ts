/**
 * The intake's side of the shared PostgreSQL queue: the RCPT-time recipient check and the commit of an
 * accepted message, with the per-domain queue quotas. The same rules as the SQLite intake
 * (src/queue/enqueue.ts); what changes is that several nodes commit at once, so:
 *
 * - Quotas are checked inside the transaction, on domain rows locked `FOR NO KEY UPDATE` (which, unlike
 *   FOR UPDATE, lets a session take its lease meanwhile, src/queue/pg/pg_leases.ts): a second node's
 *   enqueue into the same domain waits for this COMMIT and then reads the new `queued_bytes`, so two
 *   nodes cannot overrun a quota together. The relay's postmaster mailbox has no domain row; an
 *   advisory transaction lock serialises the enqueues into it instead.
 * - Lock order, the same in every transaction of this backend that touches the counters: the domain
 *   rows first, all at once, by name (`COLLATE "C"`), then the postmaster lock. A fixed order means two
 *   transactions never wait for each other in a cycle (no deadlock between nodes enqueueing into
 *   overlapping domains). The triggers update `domains` rows, then `queue_totals`, only at COMMIT
 *   (migrations/postgres/0002_deferred_counters.sql), so a body still being sent holds up no other
 *   domain's commit.
 * - Round trips per message are few: one to lock and read the quotas, one statement that inserts the
 *   message and all of its recipients (an `unnest` of arrays), and, for a body larger than one chunk,
 *   one per chunk plus one to record the chunk count.
 *
 * Every method resolves only after COMMIT, which with synchronous_commit=on has flushed the WAL: only
 * then may the intake answer 250 (RFC 5321 4.1.1.4).
 *
 * Each transaction that inserts mail also sends `pg_notify` with its domains (src/queue/pg/pg_new_mail.ts):
 * PostgreSQL delivers it to the other nodes' listeners at COMMIT and drops it on ROLLBACK, so a
 * watching session on any node wakes for committed mail only. (PostgreSQL serialises the COMMITs of
 * notifying transactions on a database-wide lock; the group commit keeps those few.)
 *
 * @module
 */
import type pg from "pg";
import type { Clock } from "../../clock.ts";
import { asciiLowerCase } from "../../smtp/idna.ts";
import {
  type BodySource,
  DomainGoneError,
  type IncomingMessage,
  QuotaExceededError,
  type RecipientVerdict,
} from "../enqueue.ts";
import { POSTMASTER_MAILBOX } from "../postmaster_store.ts";
import { CHUNK_SIZE } from "../spool.ts";
import { type PostgresDatabase, type Queryable, runNamed } from "./database.ts";
import { NEW_MAIL_CHANNEL, newMailPayloads } from "./pg_new_mail.ts";

/**
 * The advisory lock (two-int form) that serialises enqueues into the postmaster mailbox, whose quota
 * is a sum over its recipients rather than a domain row that could be locked. 0x6f646d72 is "odmr".
 */
const POSTMASTER_LOCK = [0x6f646d72, 1] as const;

/** Bytes already queued and the most allowed, for one destination of a message. */
interface Room {
  quota: number;
  queued: number;
}

const STATEMENTS = {
  verdict: {
    name: "enqueue_verdict",
    text: "SELECT catch_all, quota_bytes, queued_bytes, allow_routing_syntax, " +
      "EXISTS (SELECT 1 FROM domain_mailboxes WHERE domain = $1 AND local_part = $2) AS has_mailbox " +
      "FROM domains WHERE name = $1",
  },
  postmasterBytes: {
    name: "enqueue_postmaster_bytes",
    // SUM of bigint is numeric, which pg would hand back as a string.
    text: "SELECT COALESCE(SUM(message_size), 0)::bigint AS n FROM recipients " +
      "WHERE domain = '' AND status = 'queued'",
  },
  lockDomains: {
    name: "enqueue_lock_domains",
    // ORDER BY runs below the row locking, so the rows are locked in this order.
    text:
      'SELECT name, quota_bytes, queued_bytes FROM domains WHERE name = ANY($1::text[]) ORDER BY name COLLATE "C" ' +
      "FOR NO KEY UPDATE",
  },
  lockPostmaster: {
    name: "enqueue_lock_postmaster",
    text: "SELECT pg_advisory_xact_lock($1::int, $2::int)",
  },
  insertMessage: {
    name: "enqueue_insert_message",
    // The message and its recipients in one statement; recipients get their ids in RCPT order.
    text:
      "WITH m AS (INSERT INTO messages (received_at, mail_from, size, body_inline, chunk_count, client_ip, " +
      "client_helo, tls, body_type, smtputf8, eight_bit, envid, ret) " +
      "VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id), " +
      "r AS (INSERT INTO recipients (message_id, address, domain, status, queued_at, message_size, notify, orcpt) " +
      "SELECT m.id, v.address, v.domain, 'queued', $1, $3, v.notify, v.orcpt FROM m, " +
      "unnest($13::text[], $14::text[], $15::text[], $16::text[]) WITH ORDINALITY AS v(address, domain, notify, orcpt, n) " +
      "ORDER BY v.n) " +
      "SELECT id FROM m",
  },
  insertChunk: {
    name: "enqueue_insert_chunk",
    text: "INSERT INTO message_chunks (message_id, seq, data) VALUES ($1, $2, $3)",
  },
  setChunkCount: {
    name: "enqueue_set_chunk_count",
    text: "UPDATE messages SET chunk_count = $1, body_inline = NULL WHERE id = $2",
  },
  notifyNewMail: {
    name: "enqueue_notify_new_mail",
    // One notification per payload (several only when the domains do not fit in one).
    text: "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
  },
} as const;

/** Recipient checks and message inserts on PostgreSQL. */
export class PgEnqueue {
  /**
   * Most bytes the relay's own postmaster mailbox (domain key "", src/queue/postmaster.ts) may hold;
   * config `postmasterMailboxQuota`.
   */
  postmasterQuotaBytes = Number.MAX_SAFE_INTEGER;

  readonly #db: PostgresDatabase;
  readonly #node: string;
  readonly #clock: Clock;

  /** `node` names this relay in its new-mail notifications (so it can ignore its own). */
  constructor(db: PostgresDatabase, clock: Clock, node = "") {
    this.#db = db;
    this.#clock = clock;
    this.#node = node;
  }

  /** RCPT-time recipient validation: hosted domain, and mailbox when the domain is not catch-all. */
  async recipientVerdict(
    domain: string,
    localPart: string,
    incomingBytes = 0,
    db: Queryable = this.#db.pool,
  ): Promise<RecipientVerdict> {
    const key = asciiLowerCase(domain);
    if (key === POSTMASTER_MAILBOX) {
      // The relay's own postmaster mailbox: always there (RFC 5321 4.5.1), bounded only by its quota.
      const bytes = (await runNamed<{ n: number }>(db, STATEMENTS.postmasterBytes, [])).rows[0]!.n;
      return bytes + incomingBytes > this.postmasterQuotaBytes ? "over-quota" : "accept";
    }
    const row = (await runNamed<{
      catch_all: boolean;
      quota_bytes: number | null;
      queued_bytes: number;
      allow_routing_syntax: boolean;
      has_mailbox: boolean;
    }>(db, STATEMENTS.verdict, [key, localPart])).rows[0];
    if (!row) return "unknown-domain";
    // `user%other@d`, `other!user@d` and `"user@other"@d` ask the next hop to relay onwards (RFC 5321
    // 2.3.11 leaves local parts to their domain; the customer's MTA may trust fetchmail's loopback).
    if (!row.allow_routing_syntax && /[%!@]/.test(localPart)) return "routing-syntax";
    // RFC 5321 4.5.1: postmaster must be accepted for every served domain.
    if (!row.catch_all && localPart.toLowerCase() !== "postmaster" && !row.has_mailbox) {
      return "unknown-mailbox";
    }
    // A domain over its queue quota is full for now: the customer has to collect first.
    if (row.quota_bytes !== null && row.queued_bytes + incomingBytes > row.quota_bytes) return "over-quota";
    return "accept";
  }

  /**
   * Commits a message and its recipients in ONE transaction; resolves with its id only after COMMIT
   * (RFC 5321 4.1.1.4). Rejects with QuotaExceededError when a domain's queue would pass its quota.
   * On any error nothing of the message remains.
   */
  async enqueue(message: IncomingMessage, body: BodySource): Promise<number> {
    const now = this.#clock.now();
    return await this.#db.transaction(async (client) => {
      const rooms = await this.#lockDestinations(client, [message]);
      checkQuotas(message, body.size, rooms);
      return await insertMessage(client, message, body, now, this.#node);
    });
  }

  /**
   * Enqueues a message inside the caller's transaction on `client` (a report the relay writes itself,
   * src/queue/pg/pg_report_router.ts), with the quota rules of `enqueue`; resolves with its id.
   */
  async enqueueWith(client: pg.PoolClient, message: IncomingMessage, body: BodySource): Promise<number> {
    const rooms = await this.#lockDestinations(client, [message]);
    checkQuotas(message, body.size, rooms);
    return await insertMessage(client, message, body, this.#clock.now(), this.#node);
  }

  /**
   * Group commit: several messages in ONE transaction (one WAL flush), each inside its own SAVEPOINT
   * so a failing message is rolled back alone and reported as an Error in its slot, while the others
   * commit. If the COMMIT itself fails, this rejects and none of them is stored.
   */
  async enqueueMany(
    items: readonly { message: IncomingMessage; body: BodySource }[],
  ): Promise<(number | Error)[]> {
    if (items.length === 0) return [];
    const now = this.#clock.now();
    return await this.#db.transaction(async (client) => {
      // Every destination of the batch is locked up front, in the one fixed order: locks taken later,
      // message by message, would come in the batch's order and could deadlock with another node. (A
      // lock taken inside a savepoint would also be released when that savepoint is rolled back.)
      const rooms = await this.#lockDestinations(client, items.map((i) => i.message));
      const results: (number | Error)[] = [];
      const committed = new Set<string>();
      for (const { message, body } of items) {
        try {
          // The locks keep other transactions off these counters, so the rooms read above, plus what
          // this batch added, are exact until COMMIT.
          checkQuotas(message, body.size, rooms);
        } catch (error) {
          results.push(error as Error);
          continue;
        }
        await client.query("SAVEPOINT enqueue_one");
        try {
          const id = await insertMessage(client, message, body, now, null);
          await client.query("RELEASE SAVEPOINT enqueue_one");
          for (const r of message.recipients) committed.add(asciiLowerCase(r.domain));
          for (const [domain, count] of recipientsPerDomain(message)) {
            const room = rooms.get(domain);
            if (room) room.queued += body.size * count;
          }
          results.push(id);
        } catch (error) {
          // If even the rollback fails, the connection is gone: the whole batch fails.
          await client.query("ROLLBACK TO SAVEPOINT enqueue_one; RELEASE SAVEPOINT enqueue_one");
          results.push(error instanceof Error ? error : new Error(String(error)));
        }
      }
      // One notification for the batch, with the domains of the messages that stay in it.
      await notifyNewMail(client, committed, this.#node);
      return results;
    });
  }

  /**
   * Locks the domain rows of every recipient of `messages` (and the postmaster mailbox when one goes
   * there) and returns the room left in each destination that has a quota.
   */
  async #lockDestinations(
    client: pg.PoolClient,
    messages: readonly IncomingMessage[],
  ): Promise<Map<string, Room>> {
    const domains = new Set<string>();
    for (const message of messages) {
      for (const domain of recipientsPerDomain(message).keys()) domains.add(domain);
    }
    const rooms = new Map<string, Room>();
    const hosted = [...domains].filter((d) => d !== POSTMASTER_MAILBOX);
    if (hosted.length > 0) {
      const rows = (await runNamed<{ name: string; quota_bytes: number | null; queued_bytes: number }>(
        client,
        STATEMENTS.lockDomains,
        [hosted],
      )).rows;
      if (rows.length < hosted.length) {
        const found = new Set(rows.map((r) => r.name));
        throw new DomainGoneError(hosted.find((d) => !found.has(d))!);
      }
      for (const row of rows) {
        if (row.quota_bytes !== null) {
          rooms.set(row.name, { quota: row.quota_bytes, queued: row.queued_bytes });
        }
      }
    }
    if (domains.has(POSTMASTER_MAILBOX)) {
      await runNamed(client, STATEMENTS.lockPostmaster, [...POSTMASTER_LOCK]);
      // A statement after the lock: its snapshot sees every enqueue that held the lock before.
      const queued = (await runNamed<{ n: number }>(client, STATEMENTS.postmasterBytes, [])).rows[0]!.n;
      rooms.set(POSTMASTER_MAILBOX, { quota: this.postmasterQuotaBytes, queued });
    }
    return rooms;
  }
}

/** How many recipients of `message` go to each (lower-case) domain, in RCPT order. */
function recipientsPerDomain(message: IncomingMessage): Map<string, number> {
  const perDomain = new Map<string, number>();
  for (const r of message.recipients) {
    const domain = asciiLowerCase(r.domain);
    perDomain.set(domain, (perDomain.get(domain) ?? 0) + 1);
  }
  return perDomain;
}

/**
 * Throws QuotaExceededError when the message would take a destination past its quota. The quota counts
 * the real size; a domain's bytes grow by the size once per recipient in it, as its counter does.
 */
function checkQuotas(message: IncomingMessage, size: number, rooms: ReadonlyMap<string, Room>): void {
  for (const [domain, count] of recipientsPerDomain(message)) {
    const room = rooms.get(domain);
    if (room && room.queued + size * count > room.quota) throw new QuotaExceededError(domain || "postmaster");
  }
}

/**
 * Announces new mail for `domains` to every node's listener; sent by PostgreSQL only if the caller's
 * transaction commits.
 */
async function notifyNewMail(client: pg.PoolClient, domains: Iterable<string>, node: string): Promise<void> {
  const payloads = newMailPayloads(domains, node);
  if (payloads.length > 0) await runNamed(client, STATEMENTS.notifyNewMail, [NEW_MAIL_CHANNEL, payloads]);
}

/**
 * Inserts one message, its body and recipients, and announces it to the other nodes (unless the
 * caller announces a whole batch itself, `announceAs` null); the caller owns the transaction.
 */
async function insertMessage(
  client: pg.PoolClient,
  message: IncomingMessage,
  body: BodySource,
  now: number,
  /** The node announcing it (see notifyNewMail), or null when the caller announces a batch. */
  announceAs: string | null,
): Promise<number> {
  // Pieces of `chunks()` stay valid until the iteration after the next (src/queue/enqueue.ts): the
  // second piece is read, to decide whether the body fits inline, before the first is bound, and each
  // later piece only after the previous insert has been sent (pg copies the bytes when it sends).
  const chunks = body.chunks()[Symbol.iterator]();
  const first = chunks.next();
  const firstChunk = first.done ? new Uint8Array(0) : first.value;
  const second = first.done ? ({ done: true } as IteratorResult<Uint8Array>) : chunks.next();
  const inline = second.done === true && firstChunk.length <= CHUNK_SIZE;
  const rcpts = message.recipients;
  const result = await runNamed<{ id: number }>(client, STATEMENTS.insertMessage, [
    now,
    message.mailFrom,
    body.size,
    inline ? firstChunk : null,
    message.clientIp,
    message.clientHelo,
    message.tls,
    message.bodyType,
    message.smtputf8,
    body.eightBit,
    message.envid,
    message.ret,
    rcpts.map((r) => r.address),
    rcpts.map((r) => asciiLowerCase(r.domain)),
    rcpts.map((r) => r.notify),
    rcpts.map((r) => r.orcpt),
  ]);
  const id = result.rows[0]!.id;
  if (!inline) {
    let seq = 0;
    await runNamed(client, STATEMENTS.insertChunk, [id, seq++, firstChunk]);
    if (!second.done) await runNamed(client, STATEMENTS.insertChunk, [id, seq++, second.value]);
    for (let next = chunks.next(); !next.done; next = chunks.next()) {
      await runNamed(client, STATEMENTS.insertChunk, [id, seq++, next.value]);
    }
    await runNamed(client, STATEMENTS.setChunkCount, [seq, id]);
  }
  if (announceAs !== null) {
    await notifyNewMail(
      client,
      rcpts.map((r) => asciiLowerCase(r.domain)),
      announceAs,
    );
  }
  return id;
}
