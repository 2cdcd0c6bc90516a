/**
 * Queue administration on the shared PostgreSQL queue: list, show, delete and bounce messages (the HTTP
 * API's /queue routes). The same filters, ordering, messages and return shapes as the SQLite module
 * (src/queue/admin_store.ts).
 *
 * - A listing is one statement and `getMessage` one REPEATABLE READ snapshot, so a page never mixes
 *   two states of the queue while other nodes deliver.
 * - Delete and bounce change queued recipients, whose counter triggers update their domain rows and
 *   then `queue_totals`. They lock those domain rows first, by name (`COLLATE "C"`), the order
 *   src/queue/pg/pg_enqueue.ts and pg_delivery.ts use, so an operator's change never deadlocks with
 *   the intake or a delivery on another node.
 *
 * @module
 */
import type { Clock } from "../../clock.ts";
import { Code550NotTaken } from "../../smtp/codes.ts";
import { canonicalDomain } from "../../smtp/idna.ts";
import type { QueueListFilter, QueueListRow, StoredMessage } from "../admin_store.ts";
import { type PostgresDatabase, runNamed } from "./database.ts";
import { domainBeingDelivered } from "./pg_leases.ts";

/** The columns of a stored message, in `StoredMessage`'s field names. */
const MESSAGE_COLUMNS = 'id, received_at AS "receivedAt", mail_from AS "mailFrom", size, ' +
  'body_inline AS "bodyInline", chunk_count AS "chunkCount", client_ip AS "clientIp", ' +
  'client_helo AS "clientHelo", tls, body_type AS "bodyType", smtputf8, eight_bit AS "eightBit", envid, ret';

/** The columns of a recipient row, in `StoredMessage["recipients"]`'s field names. */
const RECIPIENT_COLUMNS =
  'id, message_id AS "messageId", address, domain, status, queued_at AS "queuedAt", ' +
  'message_size AS "messageSize", attempts, last_code AS "lastCode", last_text AS "lastText", ' +
  'last_attempt_at AS "lastAttemptAt", notify, orcpt, failure_kind AS "failureKind", ' +
  'remote_mta AS "remoteMta", delay_warnings AS "delayWarnings"';

/** A listing row before it is grouped by message. */
interface ListingRow {
  id: number;
  receivedAt: number;
  mailFrom: string;
  size: number;
  rcptId: number;
  address: string;
  status: string;
  attempts: number;
  lastCode: number | null;
}

const STATEMENTS = {
  message: {
    name: "admin_message",
    text: `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = $1`,
  },
  recipients: {
    name: "admin_recipients",
    text: `SELECT ${RECIPIENT_COLUMNS} FROM recipients WHERE message_id = $1 ORDER BY id`,
  },
  lockDomainsOfMessage: {
    name: "admin_lock_domains",
    // Only queued recipients move the counters. ORDER BY runs below the row locking, so the rows are
    // locked in this order.
    text: "SELECT d.name FROM domains d WHERE d.name IN " +
      "(SELECT domain FROM recipients WHERE message_id = $1 AND status = 'queued') " +
      'ORDER BY d.name COLLATE "C" FOR UPDATE OF d',
  },
  deleteRecipients: {
    name: "admin_delete_recipients",
    text: "DELETE FROM recipients WHERE message_id = $1",
  },
  deleteMessage: {
    name: "admin_delete_message",
    text: "DELETE FROM messages WHERE id = $1",
  },
  bounce: {
    name: "admin_bounce",
    // The DSN step reports these to the sender (RFC 3461 6.2); 550: not taken.
    text: `UPDATE recipients SET status = 'failed', last_code = ${Code550NotTaken}, last_text = $2, ` +
      "last_attempt_at = $3, failure_kind = 'operator-bounce' WHERE message_id = $1 AND status = 'queued' " +
      // Not a recipient whose domain a session (any node) delivers right now; checked under the
      // domain locks above (pg_leases.ts, domainBeingDelivered).
      `AND NOT ${domainBeingDelivered("recipients.domain")}`,
  },
} as const;

/**
 * The listing statement for the filters given: the first `limit` message ids after `afterId` with a
 * matching recipient, then each of those messages with ALL its recipients (as SQLite lists them), in
 * one statement. Four shapes, each named.
 */
function listingStatement(byDomain: boolean, byStatus: boolean): { name: string; text: string } {
  const conditions = ["message_id > $1"];
  if (byDomain) conditions.push("domain = $3");
  if (byStatus) conditions.push(`status = $${byDomain ? 4 : 3}`);
  return {
    name: `admin_list${byDomain ? "_domain" : ""}${byStatus ? "_status" : ""}`,
    text: "WITH ids AS (SELECT DISTINCT message_id FROM recipients " +
      `WHERE ${conditions.join(" AND ")} ORDER BY message_id LIMIT $2) ` +
      'SELECT m.id, m.received_at AS "receivedAt", m.mail_from AS "mailFrom", m.size, r.id AS "rcptId", ' +
      'r.address, r.status, r.attempts, r.last_code AS "lastCode" ' +
      "FROM ids JOIN messages m ON m.id = ids.message_id JOIN recipients r ON r.message_id = m.id " +
      "ORDER BY m.id, r.id",
  };
}

/** Operator reads and changes of queued messages on PostgreSQL. */
export class PgAdmin {
  readonly #db: PostgresDatabase;
  readonly #clock: Clock;

  constructor(db: PostgresDatabase, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /** Lists messages (keyset pagination by id), optionally for one domain and recipient status. */
  async listQueue(filter: QueueListFilter = {}): Promise<QueueListRow[]> {
    const limit = Math.min(Math.max(filter.limit ?? 50, 1), 500);
    const values: unknown[] = [filter.afterId ?? 0, limit];
    if (filter.domain) values.push(canonicalDomain(filter.domain) ?? filter.domain);
    if (filter.status) values.push(filter.status);
    const statement = listingStatement(Boolean(filter.domain), Boolean(filter.status));
    const rows = (await runNamed<ListingRow>(this.#db.pool, statement, values)).rows;
    const listing: QueueListRow[] = [];
    for (const r of rows) {
      let message = listing.at(-1);
      if (message?.id !== r.id) {
        message = { id: r.id, receivedAt: r.receivedAt, mailFrom: r.mailFrom, size: r.size, recipients: [] };
        listing.push(message);
      }
      message.recipients.push({
        id: r.rcptId,
        address: r.address,
        status: r.status,
        attempts: r.attempts,
        lastCode: r.lastCode,
      });
    }
    return listing;
  }

  /** One message with its envelope and recipients, or null. */
  async getMessage(id: number): Promise<StoredMessage | null> {
    return await this.#db.transaction(async (client) => {
      // One snapshot for both reads: a delivery committing in between cannot split the answer.
      await client.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
      const m = (await runNamed<Omit<StoredMessage, "recipients">>(client, STATEMENTS.message, [id])).rows[0];
      if (!m) return null;
      const recipients =
        (await runNamed<StoredMessage["recipients"][number]>(client, STATEMENTS.recipients, [id]))
          .rows;
      return { ...m, recipients };
    });
  }

  /** Deletes a message and all its recipients; false when it did not exist. */
  async deleteMessage(id: number): Promise<boolean> {
    return await this.#db.transaction(async (client) => {
      await runNamed(client, STATEMENTS.lockDomainsOfMessage, [id]);
      await runNamed(client, STATEMENTS.deleteRecipients, [id]);
      return ((await runNamed(client, STATEMENTS.deleteMessage, [id])).rowCount ?? 0) > 0;
    });
  }

  /** Marks every queued recipient of a message failed; the DSN step reports them to the sender. */
  async bounceMessage(id: number, reason: string): Promise<number> {
    const now = this.#clock.now();
    return await this.#db.transaction(async (client) => {
      await runNamed(client, STATEMENTS.lockDomainsOfMessage, [id]);
      return (await runNamed(client, STATEMENTS.bounce, [id, reason, now])).rowCount ?? 0;
    });
  }
}
