/**
 * The rows the reporting jobs read and write on the shared PostgreSQL queue: the same queries as the
 * SQLite ReportStore (src/queue/report_store.ts), as functions over a pool or a transaction's client.
 * Several nodes run these jobs, so the writes are guarded: a message is reported only by the node that
 * locked it (`FOR UPDATE SKIP LOCKED`), only the recipients read under that lock leave, a delay
 * warning is marked only where it was not yet, a notice only if no other was queued meanwhile, and a
 * scan's watermark only moves forward.
 *
 * @module
 */
import type { PendingRecipient, ReportedMessage } from "../report_store.ts";
import type { DelayedRecipient, DomainFacts } from "../report_store.ts";
import type { PostmasterRow } from "../postmaster_store.ts";
import { type Queryable, runNamed } from "./database.ts";

const RECIPIENT_FACTS = 'last_code AS "lastCode", last_text AS "lastText", ' +
  'last_attempt_at AS "lastAttemptAt", remote_mta AS "remoteMta"';
const DOMAIN_FACTS = 'name, retention_ms AS "retentionMs", last_atrn_at AS "lastAtrnAt", ' +
  'notify_address AS "notifyAddress", notify_after_ms AS "notifyAfterMs", notified_at AS "notifiedAt", ' +
  'queued_recipients AS "queuedRecipients"';

const STATEMENTS = {
  pendingMessages: {
    name: "reports_pending_messages",
    // The partial index recipients_dsn_pending holds exactly these rows.
    text:
      "SELECT DISTINCT message_id AS id FROM recipients WHERE status <> 'queued' ORDER BY message_id LIMIT $1",
  },
  pendingCount: {
    name: "reports_pending_count",
    text: "SELECT COUNT(*) AS recipients, COUNT(DISTINCT message_id) AS messages FROM recipients " +
      "WHERE status <> 'queued'",
  },
  lockMessage: {
    name: "reports_lock_message",
    // Another node reporting this message holds the lock: it is skipped here, not waited for.
    text: 'SELECT id, mail_from AS "mailFrom", received_at AS "receivedAt", envid, ret, smtputf8 ' +
      "FROM messages WHERE id = $1 FOR UPDATE SKIP LOCKED",
  },
  message: {
    name: "reports_message",
    text: 'SELECT id, mail_from AS "mailFrom", received_at AS "receivedAt", envid, ret, smtputf8 ' +
      "FROM messages WHERE id = $1",
  },
  pendingOf: {
    name: "reports_pending_of",
    text:
      `SELECT id, address, domain, status, notify, orcpt, failure_kind AS "failureKind", ${RECIPIENT_FACTS} ` +
      "FROM recipients WHERE message_id = $1 AND status <> 'queued' ORDER BY id",
  },
  deleteReported: {
    name: "reports_delete_reported",
    text: "DELETE FROM recipients WHERE id = ANY($1::bigint[]) AND status <> 'queued'",
  },
  lockLeft: {
    name: "reports_lock_left",
    // Waits for a transaction deleting one of them (a delivery on another node), then sees the truth.
    text: "SELECT id FROM recipients WHERE message_id = $1 FOR UPDATE",
  },
  deleteMessageIfDone: {
    name: "reports_delete_message_if_done",
    text:
      "DELETE FROM messages WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM recipients WHERE message_id = $1)",
  },
  bodyHead: {
    name: "reports_body_head",
    text: "SELECT body_inline, chunk_count FROM messages WHERE id = $1",
  },
  chunks: {
    name: "reports_body_chunks",
    text: "SELECT data FROM message_chunks WHERE message_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
  },
  domain: { name: "reports_domain", text: `SELECT ${DOMAIN_FACTS} FROM domains WHERE name = $1` },
  domains: {
    name: "reports_domains",
    text: `SELECT ${DOMAIN_FACTS} FROM domains WHERE queued_recipients > 0`,
  },
  oldestQueued: {
    name: "reports_oldest_queued",
    text: "SELECT MIN(queued_at) AS oldest, COUNT(DISTINCT message_id) AS n FROM recipients " +
      "WHERE domain = $1 AND status = 'queued'",
  },
  setNotified: {
    name: "reports_set_notified",
    // Only if no notice was queued within the threshold meanwhile (by another node).
    text:
      "UPDATE domains SET notified_at = $2 WHERE name = $1 AND (notified_at IS NULL OR notified_at <= $3)",
  },
  delayed: {
    name: "reports_delayed",
    text:
      "SELECT DISTINCT message_id AS \"messageId\" FROM recipients WHERE domain = $1 AND status = 'queued' " +
      "AND queued_at > $2 AND queued_at <= $3 AND delay_warnings < $4 ORDER BY message_id LIMIT $5",
  },
  delayedOfMessage: {
    name: "reports_delayed_of_message",
    text: 'SELECT id, message_id AS "messageId", address, domain, notify, orcpt, queued_at AS "queuedAt", ' +
      `${RECIPIENT_FACTS} FROM recipients WHERE message_id = $1 AND status = 'queued' AND queued_at <= $2 ` +
      "AND delay_warnings < $3 ORDER BY id",
  },
  markWarned: {
    name: "reports_mark_warned",
    // Steps are ages: a recipient already warned at this step or a later one is left alone.
    text: "UPDATE recipients SET delay_warnings = $2 WHERE id = ANY($1::bigint[]) AND delay_warnings < $2 " +
      "RETURNING id",
  },
  getState: { name: "reports_get_state", text: "SELECT value FROM housekeeping_state WHERE key = $1" },
  setState: {
    name: "reports_set_state",
    // A watermark only moves forward, whichever node writes it.
    text: "INSERT INTO housekeeping_state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE " +
      "SET value = GREATEST(housekeeping_state.value, excluded.value)",
  },
  postmasterWaiting: {
    name: "reports_postmaster_waiting",
    text:
      'SELECT r.id, r.message_id AS "messageId", m.mail_from AS "mailFrom", m.size, m.eight_bit AS "eightBit", ' +
      "m.smtputf8 FROM recipients r JOIN messages m ON m.id = r.message_id " +
      "WHERE r.domain = '' AND r.status = 'queued' ORDER BY r.id LIMIT $1",
  },
  lockPostmaster: {
    name: "reports_lock_postmaster",
    // Still waiting, and not being forwarded by another node right now.
    text:
      "SELECT id FROM recipients WHERE id = $1 AND domain = '' AND status = 'queued' FOR UPDATE SKIP LOCKED",
  },
  deleteRecipient: { name: "reports_delete_recipient", text: "DELETE FROM recipients WHERE id = $1" },
} as const;

/** Ids of messages with recipients waiting for a DSN, oldest first. */
export async function pendingMessageIds(db: Queryable, limit: number): Promise<number[]> {
  return (await runNamed<{ id: number }>(db, STATEMENTS.pendingMessages, [limit])).rows.map((r) => r.id);
}

/** Recipients and messages waiting for a DSN (for /status and /metrics). */
export async function pendingCounts(db: Queryable): Promise<{ recipients: number; messages: number }> {
  return (await runNamed<{ recipients: number; messages: number }>(db, STATEMENTS.pendingCount, [])).rows[0]!;
}

/** Locks a message for this transaction and returns it; null when it is gone or another node has it. */
export async function lockMessage(client: Queryable, id: number): Promise<ReportedMessage | null> {
  return (await runNamed<ReportedMessage>(client, STATEMENTS.lockMessage, [id])).rows[0] ?? null;
}

/** The message row, or null. */
export async function reportedMessage(db: Queryable, id: number): Promise<ReportedMessage | null> {
  return (await runNamed<ReportedMessage>(db, STATEMENTS.message, [id])).rows[0] ?? null;
}

/** The message's recipients waiting for a DSN. */
export async function pendingRecipients(db: Queryable, messageId: number): Promise<PendingRecipient[]> {
  return (await runNamed<PendingRecipient>(db, STATEMENTS.pendingOf, [messageId])).rows;
}

/**
 * Removes the reported recipients (`ids`, read under the message's lock: one failed meanwhile waits for
 * its own DSN), and the message with its body when no recipient is left.
 */
export async function finishReported(
  client: Queryable,
  messageId: number,
  ids: readonly number[],
): Promise<void> {
  if (ids.length > 0) await runNamed(client, STATEMENTS.deleteReported, [ids]);
  await deleteMessageIfDone(client, messageId);
}

/**
 * Deletes the message when it has no recipient left. The remaining rows are locked first: a node that
 * is deleting the last one (a delivery) is waited for, so the message is neither deleted under a
 * recipient nor left behind without one.
 */
export async function deleteMessageIfDone(client: Queryable, messageId: number): Promise<void> {
  const left = (await runNamed(client, STATEMENTS.lockLeft, [messageId])).rows.length;
  if (left === 0) await runNamed(client, STATEMENTS.deleteMessageIfDone, [messageId]);
}

/**
 * The stored body, in order, as far as a reader that stops after `limit` octets needs it (a DSN returns
 * headers only, or the whole message up to its size cap): chunks are read until they pass `limit`.
 */
export async function readBodyOn(client: Queryable, messageId: number, limit: number): Promise<Uint8Array[]> {
  const head = (await runNamed<{ body_inline: Uint8Array | null; chunk_count: number }>(
    client,
    STATEMENTS.bodyHead,
    [messageId],
  )).rows[0];
  if (!head) return [];
  if (head.body_inline) return [plain(head.body_inline)];
  const parts: Uint8Array[] = [];
  let total = 0;
  // A few chunks per query, so a large body is never read whole when it is not needed.
  for (let from = 0; from < head.chunk_count && total <= limit; from += 4) {
    const rows =
      (await runNamed<{ data: Uint8Array }>(client, STATEMENTS.chunks, [messageId, from, from + 4])).rows;
    for (const row of rows) {
      if (total > limit) break;
      parts.push(plain(row.data));
      total += row.data.length;
    }
  }
  return parts;
}

function plain(buffer: Uint8Array): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** One domain's facts, or null. */
export async function domainFacts(db: Queryable, name: string): Promise<DomainFacts | null> {
  return (await runNamed<DomainFacts>(db, STATEMENTS.domain, [name])).rows[0] ?? null;
}

/** Domains with queued mail. */
export async function domainsWithMail(db: Queryable): Promise<DomainFacts[]> {
  return (await runNamed<DomainFacts>(db, STATEMENTS.domains, [])).rows;
}

/** The oldest queued recipient's time and the number of messages waiting. */
export async function oldestQueued(
  db: Queryable,
  domain: string,
): Promise<{ oldest: number | null; count: number }> {
  const row =
    (await runNamed<{ oldest: number | null; n: number }>(db, STATEMENTS.oldestQueued, [domain])).rows[0];
  return { oldest: row?.oldest ?? null, count: row?.n ?? 0 };
}

/**
 * Records that the domain's customer was told at `at`, unless a notice was queued after `notBefore`
 * (another node's); returns whether this one counts.
 */
export async function setNotified(
  client: Queryable,
  domain: string,
  at: number,
  notBefore: number,
): Promise<boolean> {
  return ((await runNamed(client, STATEMENTS.setNotified, [domain, at, notBefore])).rowCount ?? 0) > 0;
}

/** Messages with queued recipients of `domain` that arrived in (after, upTo], not yet warned at `stepMs`. */
export async function delayedMessageIds(
  db: Queryable,
  domain: string,
  after: number,
  upTo: number,
  stepMs: number,
  limit: number,
): Promise<number[]> {
  const rows =
    (await runNamed<{ messageId: number }>(db, STATEMENTS.delayed, [domain, after, upTo, stepMs, limit]))
      .rows;
  return rows.map((r) => r.messageId);
}

/** All of a message's queued recipients, in any domain, due for a warning at a step of `stepMs`. */
export async function delayedRecipients(
  db: Queryable,
  messageId: number,
  upTo: number,
  stepMs: number,
): Promise<DelayedRecipient[]> {
  return (await runNamed<DelayedRecipient>(db, STATEMENTS.delayedOfMessage, [messageId, upTo, stepMs])).rows;
}

/** Marks recipients warned at `stepMs`; returns the ids this call marked (not already marked). */
export async function markWarned(
  client: Queryable,
  ids: readonly number[],
  stepMs: number,
): Promise<number[]> {
  return (await runNamed<{ id: number }>(client, STATEMENTS.markWarned, [ids, stepMs])).rows.map((r) => r.id);
}

/** A durable number kept by a job (a scan's watermark), or null. */
export async function jobState(db: Queryable, key: string): Promise<number | null> {
  return (await runNamed<{ value: number }>(db, STATEMENTS.getState, [key])).rows[0]?.value ?? null;
}

/** Moves a durable number forward (never back). */
export async function setJobState(db: Queryable, key: string, value: number): Promise<void> {
  await runNamed(db, STATEMENTS.setState, [key, value]);
}

/** Messages waiting in the relay's own postmaster mailbox (domain key ""), oldest first. */
export async function postmasterWaiting(db: Queryable, limit: number): Promise<PostmasterRow[]> {
  return (await runNamed<PostmasterRow>(db, STATEMENTS.postmasterWaiting, [limit])).rows;
}

/**
 * Locks one postmaster recipient for `client`'s transaction; false when it is gone or another node is
 * forwarding it.
 */
export async function lockPostmaster(client: Queryable, recipientId: number): Promise<boolean> {
  return (await runNamed(client, STATEMENTS.lockPostmaster, [recipientId])).rows.length > 0;
}

/** Removes a forwarded postmaster recipient, and its message when nothing else is left. */
export async function removePostmaster(
  client: Queryable,
  row: { id: number; messageId: number },
): Promise<void> {
  await runNamed(client, STATEMENTS.deleteRecipient, [row.id]);
  await deleteMessageIfDone(client, row.messageId);
}
