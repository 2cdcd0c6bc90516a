/**
 * One MAIL transaction over the client's connection: MAIL, the RCPTs and DATA, pipelined (RFC 2920) or
 * one command at a time, then the content and the reply to the final dot. Every reply is mapped to the
 * recipients it concerns (src/client/outcome.ts); recipients refused with "too many recipients" are
 * handed back for a new transaction (RFC 5321 4.5.3.1.10).
 *
 * It runs through a {@linkcode TransactionLink}, the few operations of `SmtpClient` it needs, so the
 * reply reading, tracing and abort handling stay in one place (src/client/smtp_client.ts).
 *
 * @module
 */

import type { DeliverableMessage } from "./types.ts";
import { Code354StartInput, Code451LocalError, Code452TooManyRecipients, isPositive } from "../smtp/codes.ts";
import type { Capabilities } from "../smtp/ehlo.ts";
import type { ParsedReply } from "../smtp/reply.ts";
import { toAsyncIterator } from "./body_writer.ts";
import { mailCommand, rcptCommand } from "./commands.ts";
import { isTemporary552, outcomeOfReply, type Recipient, recordReply, type SetOutcome } from "./outcome.ts";

/** Per-command client timeouts in milliseconds (RFC 5321 4.5.3.2). */
export interface ClientTimeouts {
  /** Wait for the 220 greeting (4.5.3.2.1: 5 minutes). */
  greetingMs: number;
  /** Wait for replies to EHLO, MAIL, RCPT, RSET, QUIT (4.5.3.2.2/3: 5 minutes). */
  commandMs: number;
  /** Wait for the 354 reply to DATA (4.5.3.2.4: 2 minutes). */
  dataInitMs: number;
  /** Time for one block of content to be accepted by the socket (4.5.3.2.5: 3 minutes). */
  dataBlockMs: number;
  /** Wait for the reply to the final dot (4.5.3.2.6: 10 minutes). */
  dataTermMs: number;
}

/** A chunked message body; called again for a second transaction of the same message (452). */
export type BodyOpener = () => Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** A reply plus how it arrived. */
export interface Received extends ParsedReply {
  /** A multi-line reply whose continuation lines were not yet buffered when the previous line was read. */
  fragmented: boolean;
}

/** The state of the client session a transaction reads (as it is at the time). */
export interface SessionState {
  /** The customer's EHLO keywords. */
  readonly capabilities: Capabilities;
  /** Whether commands are pipelined in this session. */
  readonly pipelining: boolean;
}

/** What a transaction needs from the client session. */
export interface TransactionLink {
  /** The session's timeouts. */
  readonly timeouts: ClientTimeouts;
  /** The session (the `SmtpClient` itself). */
  readonly session: SessionState;
  /** Writes one command and reads its reply. */
  command(line: string, timeoutMs: number, what: string): Promise<Received>;
  /** Reads one reply. */
  readReply(timeoutMs: number, what: string): Promise<Received>;
  /** Writes commands (with CRLF) as one batch, or one record each in line-by-line mode. */
  writeBatch(commands: string[], timeoutMs: number): Promise<void>;
  /** Writes the content and the final dot. */
  writeBody(body: AsyncIterator<Uint8Array>, first: IteratorResult<Uint8Array>): Promise<void>;
  /** Wire trace of what is sent. */
  trace(line: string): void;
  /** Monotonic milliseconds (for the pacing of pipelined replies). */
  now(): number;
  /** Whether reply bytes are already buffered (read without waiting). */
  hasBufferedReply(): boolean;
  /**
   * A pipelined group's replies were read: the longest wait for a reply after the first that was not yet
   * buffered, and how many such waits there were.
   */
  pipelinedGroupRead(slowestGapMs: number, waits: number): void;
}

/**
 * One MAIL transaction for `batch`; records outcomes through `set` and returns the recipients to try
 * again in a new transaction (refused with 452 while the transaction delivered to others).
 */
export async function runTransaction(
  link: TransactionLink,
  message: DeliverableMessage,
  batch: Recipient[],
  openBody: BodyOpener,
  set: SetOutcome,
): Promise<Recipient[]> {
  // Open the body BEFORE the MAIL command: a message deleted meanwhile must not leave us inside DATA.
  let body: AsyncIterator<Uint8Array>;
  let first: IteratorResult<Uint8Array>;
  try {
    body = toAsyncIterator(openBody());
    first = await body.next();
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    for (const r of batch) {
      set(r, "deferred", Code451LocalError, `4.3.0 Stored message unavailable: ${why}`);
    }
    return [];
  }
  try {
    return await exchange(link, message, batch, body, first, set);
  } finally {
    await body.return?.();
  }
}

async function exchange(
  link: TransactionLink,
  message: DeliverableMessage,
  batch: Recipient[],
  body: AsyncIterator<Uint8Array>,
  first: IteratorResult<Uint8Array>,
  set: SetOutcome,
): Promise<Recipient[]> {
  const t = link.timeouts;
  const mail = mailCommand(message, link.session.capabilities);
  const rcpts = batch.map((r) => rcptCommand(r, link.session.capabilities));
  let mailReply: Received;
  const rcptReplies: Received[] = [];
  let dataReply: Received | null = null;

  if (link.session.pipelining) {
    // RFC 2920 3.1: MAIL and RCPT may be grouped; DATA must be the last command of the group.
    const commands = [mail, ...rcpts, "DATA"].map((c) => `${c}\r\n`);
    link.trace(`${mail} +${rcpts.length} RCPT + DATA (pipelined)`);
    // RFC 2920 3.5: read replies while the batch is still being written, or both sides can block.
    // Line-by-line (TLS line relay, only when pipelining is forced): one record per command.
    const writing = link.writeBatch(commands, t.commandMs);
    writing.catch(() => {});
    // RFC 2920 3.1: replies are matched to commands by COUNT, never by code or text.
    mailReply = await link.readReply(t.commandMs, "MAIL");
    // How the replies after the first arrive tells a customer that writes them one at a time under
    // Nagle (src/client/pipelining.ts, PacedReplyDetector).
    let slowestGapMs = 0;
    let waits = 0;
    const paced = async (read: () => Promise<Received>) => {
      const buffered = link.hasBufferedReply();
      const started = link.now();
      const reply = await read();
      if (!buffered) {
        waits++;
        slowestGapMs = Math.max(slowestGapMs, link.now() - started);
      }
      return reply;
    };
    for (let i = 0; i < rcpts.length; i++) {
      rcptReplies.push(await paced(() => link.readReply(t.commandMs, "RCPT")));
    }
    dataReply = await paced(() => link.readReply(t.dataInitMs, "DATA"));
    await writing;
    link.pipelinedGroupRead(slowestGapMs, waits);
  } else {
    mailReply = await link.command(mail, t.commandMs, "MAIL");
    if (isPositive(mailReply)) {
      for (const cmd of rcpts) rcptReplies.push(await link.command(cmd, t.commandMs, "RCPT"));
    }
  }

  if (!isPositive(mailReply)) {
    // MAIL 4xx/5xx: the whole message deferred/failed (docs/protocol.md#reply-mapping), then RSET
    // (RFC 5321 4.1.1.5).
    for (const r of batch) outcomeOfReply(r, mailReply, set);
    if (dataReply?.code === Code354StartInput) await emptyData(link);
    await rset(link);
    return [];
  }

  const accepted: Recipient[] = [];
  const retry: { r: Recipient; reply: Received }[] = [];
  batch.forEach((r, i) => {
    const reply = rcptReplies[i]!;
    if (isPositive(reply)) {
      accepted.push(r); // RFC 5321 4.1.1.3: 250/251 -> pending on this transaction
    } else if (reply.code === Code452TooManyRecipients || isTemporary552(reply, accepted.length)) {
      retry.push({ r, reply });
    } else {
      outcomeOfReply(r, reply, set); // 4xx deferred, 5xx failed
    }
  });
  // Not retried after all (the transaction failed): they stay queued with the customer's reply.
  const deferRetries = () => {
    for (const { r, reply } of retry) set(r, "deferred", reply.code, recordReply(reply));
  };

  if (accepted.length === 0) {
    // RFC 2920 3.1: if DATA got 354 anyway, send a lone "." (the server must deliver nothing); then RSET.
    if (dataReply?.code === Code354StartInput) await emptyData(link);
    deferRetries();
    await rset(link);
    return [];
  }

  if (dataReply === null) dataReply = await link.command("DATA", t.dataInitMs, "DATA");
  if (dataReply.code !== Code354StartInput) {
    // DATA 4xx -> pending deferred, 5xx -> failed; a bogus 2xx/3xx is treated as 4xx
    // (docs/protocol.md#reply-mapping).
    for (const r of accepted) outcomeOfReply(r, dataReply, set);
    deferRetries();
    await rset(link);
    return [];
  }

  await link.writeBody(body, first);
  const final = await link.readReply(t.dataTermMs, "end of data");
  // End-of-data 2xx -> delivered (recorded by the caller right away), 4xx/5xx per class
  // (docs/protocol.md#reply-mapping).
  for (const r of accepted) outcomeOfReply(r, final, set, true);
  if (!isPositive(final)) {
    deferRetries();
    return [];
  }
  return retry.map(({ r }) => r);
}

/** RFC 2920 3.1: after a 354 with no accepted recipient, a lone "." ends the (empty) content. */
async function emptyData(link: TransactionLink): Promise<void> {
  await link.command(".", link.timeouts.dataTermMs, "end of data");
}

/** RSET (RFC 5321 4.1.1.5); its reply is read but only a 421 matters (thrown by readReply). */
async function rset(link: TransactionLink): Promise<void> {
  await link.command("RSET", link.timeouts.commandMs, "RSET");
}
