/**
 * Shared helpers of the intake transcript tests: queue queries on the relay's real SQLite file and
 * the usual session openings.
 *
 * @module
 */
import type { TestRelay } from "../support/relay.ts";

/** EHLO preamble lines of the intake (no STARTTLS), as transcript expectations. */
export const EHLO_REPLY = `
  < 250-mx.relay.test*
  < 250-PIPELINING
  < 250-SIZE *
  < 250-8BITMIME
  < 250-ENHANCEDSTATUSCODES
  < 250-SMTPUTF8
  < 250 DSN
`;

/** Greeting + EHLO client.test, as a transcript. */
export const OPEN = `
  < 220 mx.relay.test ESMTP*
  > EHLO client.test
  ${EHLO_REPLY}
`;

/** A message row as the tests read it. */
export interface MessageRow {
  id: number;
  mail_from: string;
  size: number;
  envid: string | null;
  ret: string | null;
  body_type: string | null;
  smtputf8: number;
  eight_bit: number;
  tls: number;
  client_helo: string;
}

/** A recipient row as the tests read it. */
export interface RecipientRow {
  message_id: number;
  address: string;
  domain: string;
  notify: string | null;
  orcpt: string | null;
}

/** Rows of `sql` on the relay's own database handle. */
export function query<T>(relay: TestRelay, sql: string, ...params: (string | number)[]): T[] {
  // Plain objects: node:sqlite rows have a null prototype, which deepEqual tells apart.
  return relay.store.database.raw.prepare(sql).all(...params).map((row) => ({ ...row })) as T[];
}

/** Every message in the queue, oldest first. */
export function allMessages(relay: TestRelay): MessageRow[] {
  return query<MessageRow>(relay, "SELECT * FROM messages ORDER BY id");
}

/** Every recipient in the queue, by id. */
export function allRecipients(relay: TestRelay): RecipientRow[] {
  return query<RecipientRow>(relay, "SELECT * FROM recipients ORDER BY id");
}

/** Number of queued messages. */
export function messageCount(relay: TestRelay): number {
  return query<{ n: number }>(relay, "SELECT count(*) AS n FROM messages")[0]!.n;
}

/** The stored body of message `id` as bytes. */
export function bodyBytes(relay: TestRelay, id: number): Uint8Array {
  const parts = [...relay.store.readBody(id)];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The stored body of message `id` as text (latin1, so every byte maps to one char). */
export function bodyText(relay: TestRelay, id: number): string {
  return new TextDecoder("latin1").decode(bodyBytes(relay, id));
}

/** The newest message id (or 0). */
export function lastMessageId(relay: TestRelay): number {
  return query<{ id: number | null }>(relay, "SELECT max(id) AS id FROM messages")[0]!.id ?? 0;
}

/** Splits a stored body into our Received header (possibly folded) and the rest. */
export function splitReceived(body: string): { received: string; rest: string } {
  if (!body.startsWith("Received: ")) {
    throw new Error(`body does not start with Received: ${body.slice(0, 80)}`);
  }
  let end = body.indexOf("\r\n");
  while (end !== -1 && (body[end + 2] === " " || body[end + 2] === "\t")) end = body.indexOf("\r\n", end + 2);
  return { received: body.slice(0, end + 2), rest: body.slice(end + 2) };
}
