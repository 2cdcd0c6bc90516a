/**
 * How the message content goes on the wire after `354` (RFC 5321 4.1.1.4, 4.5.2): dot-stuffed, with
 * backpressure, each block within the data block timeout (4.5.3.2.5), in one of two strategies.
 *
 * - Bulk (the default): slices of up to 64 KB; the last one is written together with the terminator,
 *   so small mail leaves in one segment.
 * - Line by line, for a customer that relays the session line by line over TLS (`SmtpClient.lineByLine`):
 *   every content line, and then the final dot, is its own write on its own event-loop turn, hence its
 *   own TLS record. fetchmail with `ssl` reads one line per wake-up and leaves the rest of a record
 *   unread until more data arrives (docs/protocol.md#fetchmail), so lines sharing the last record before
 *   we wait for a reply would stall the session.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type { Connection } from "../net/connection.ts";
import { LineSplitter } from "../net/line_buffer.ts";
import { DotStuffer } from "../smtp/dot_stuff.ts";
import { BodyReadError } from "./errors.ts";

/** Body writes are cut to this size so one write never holds more than ~2x of it after stuffing. */
const BODY_WRITE_SLICE = 64 * 1024;
/** Length of the terminator line `.` CRLF that {@linkcode DotStuffer.finish} ends with. */
const TERMINATOR_LENGTH = 3;

/** Where the writer writes: the connection's awaited, backpressured write. */
export type WriteTarget = Pick<Connection, "write">;

/** Options of {@linkcode writeBody}. */
export interface BodyWriteOptions {
  /** The data block timeout (RFC 5321 4.5.3.2.5) for each write. */
  timeoutMs: number;
  /** One write and one TLS record per line (see the module documentation). */
  lineByLine: boolean;
  /** Called once all content is written, just before the terminator (for the wire trace). */
  beforeTerminator?: () => void;
}

/**
 * Streams the stored (unstuffed, CRLF) content that `first` and then `body` yield, dot-stuffed, and the
 * final dot. A failing body read throws {@linkcode BodyReadError} before the final dot is ever sent: the
 * caller drops the connection, so a partial message is never delivered (at-least-once).
 */
export async function writeBody(
  conn: WriteTarget,
  body: AsyncIterator<Uint8Array>,
  first: IteratorResult<Uint8Array>,
  options: BodyWriteOptions,
): Promise<void> {
  const stuffer = new DotStuffer();
  const { timeoutMs, lineByLine } = options;
  const lines = lineByLine ? new LineSplitter() : null;
  let next = first;
  // The last block is held back and written together with the terminator: one segment for small mail.
  let held: Uint8Array | null = null;
  while (!next.done) {
    const chunk = next.value;
    for (let off = 0; off < chunk.length; off += BODY_WRITE_SLICE) {
      const out = stuffer.push(chunk.subarray(off, off + BODY_WRITE_SLICE));
      if (out.length === 0) continue;
      if (lines !== null) {
        for (const line of lines.push(out)) await writeRecord(conn, line, timeoutMs, true);
        continue;
      }
      // RFC 5321 4.5.3.2.5: each block must be accepted within the data block timeout.
      if (held !== null) await conn.write(held, { timeoutMs });
      held = out;
    }
    try {
      next = await body.next();
    } catch (err) {
      // Never send the final dot after a partial body: drop the connection instead (at-least-once).
      throw new BodyReadError(err);
    }
  }
  options.beforeTerminator?.();
  const tail = stuffer.finish();
  if (lines !== null) {
    // `tail` is the missing line end (if any) and ".\r\n": the rest of the content first, then the dot
    // alone in the last record, so fetchmail's one-line-per-wake-up relay reaches it.
    for (const line of lines.push(tail.subarray(0, tail.length - TERMINATOR_LENGTH))) {
      await writeRecord(conn, line, timeoutMs, true);
    }
    const rest = lines.rest();
    if (rest !== null) await writeRecord(conn, rest, timeoutMs, true);
    await writeRecord(conn, tail.subarray(tail.length - TERMINATOR_LENGTH), timeoutMs, true);
  } else if (held === null) {
    await conn.write(tail, { timeoutMs });
  } else {
    const last = new Uint8Array(held.length + tail.length);
    last.set(held);
    last.set(tail, held.length);
    await conn.write(last, { timeoutMs });
  }
}

/**
 * One write that must become its own TLS record in line-by-line mode: written, then the event loop is
 * given a turn, so the runtime encrypts and sends it before the next write is even issued. Deno and Bun
 * both coalesce writes made in the same turn into one record (measured: 50 awaited one-line writes gave
 * 4 records; with a turn between them, 50). Outside line-by-line mode it is a plain awaited write.
 */
export async function writeRecord(
  conn: WriteTarget,
  data: string | Uint8Array,
  timeoutMs: number,
  lineByLine: boolean,
): Promise<void> {
  await conn.write(data, { timeoutMs });
  if (lineByLine) await nextTurn();
}

/** A body source as an async iterator (a stored body may be read synchronously or not). */
export function toAsyncIterator(
  source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): AsyncIterator<Uint8Array> {
  if (Symbol.asyncIterator in source) return (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  const it = (source as Iterable<Uint8Array>)[Symbol.iterator]();
  return {
    next: () => Promise.resolve(it.next()),
    return: () => Promise.resolve(it.return?.() ?? { done: true, value: undefined }),
  };
}

/** Resolves on a later turn of the event loop (after pending I/O), so the previous write has gone out. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
