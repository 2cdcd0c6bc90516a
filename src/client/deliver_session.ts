/**
 * Drains the queue for the granted domains over a connection handed over by the ODMR server after the
 * ATRN turn (RFC 2645 4; docs/design.md#delivery).
 *
 * Order of events: wait for the customer's greeting, EHLO, then page through the queue by message id
 * (keyset pagination) and send each message. A recipient is removed only after a 2xx to the final dot.
 * Outcomes are recorded in BATCHES (group commit, one transaction and one fsync for up to
 * `outcomeBatch.messages` messages or `outcomeBatch.ms` milliseconds, whichever comes first), and always
 * before the next page is fetched, before QUIT and when the session ends for any reason. A crash between
 * the customer's 250 and the flush re-delivers those messages later: a duplicate, which RFC 5321 6.1
 * accepts (at-least-once); it never loses one, because nothing is removed before the 250. When a page
 * comes back empty the queue has been looked at again, so mail that arrived during the session has gone
 * out too; deferred recipients are not retried in the same session (their message id is behind the
 * cursor). Then QUIT.
 *
 * If recording fails (disk full, database error) the session stops sending (QUIT), the failure is logged,
 * the unrecorded outcomes are tried once more at the end, and if that fails too their messages simply stay
 * queued (counted as deferred): delivered again later, never lost.
 *
 * Any connection loss, timeout (RFC 5321 4.5.3.2 per command, `atrnSessionTimeout` overall) or protocol
 * violation ends the session: the in-flight message's unconfirmed recipients are recorded deferred with a
 * 4.4.2-style note and stay queued; messages not yet attempted are not touched at all.
 *
 * @module
 */

import { type Clock, systemClock } from "../clock.ts";
import type { Config } from "../config/fields.ts";
import type { Logger } from "../log/logger.ts";
import type { Connection } from "../net/connection.ts";
import type {
  DeliverableMessage as QueuedMessage,
  Queue,
  RecipientOutcome as RecordedOutcome,
} from "../queue/queue.ts";

/** What a delivery session reads and writes in the queue. */
export type DeliveryQueue = Pick<Queue, "nextDeliverable" | "readBody" | "recordOutcomesMany">;
import { type AbortKind, DeliveryAbort } from "./errors.ts";
import { type ClientTimeouts, SmtpClient } from "./smtp_client.ts";
import type { DeliverableMessage, RecipientOutcome } from "./types.ts";
import type { NewMailSignal } from "../queue/new_mail.ts";
import { needsDsn } from "../dsn/policy.ts";
import { WATCH_KEYWORD } from "../smtp/ehlo.ts";

/** The configuration fields the delivery session reads (all durations in milliseconds). */
export type DeliveryConfig = Pick<
  Config,
  | "atrnGreetingTimeout"
  | "atrnCommandTimeout"
  | "atrnDataInitTimeout"
  | "atrnDataBlockTimeout"
  | "atrnDataTermTimeout"
  | "atrnSessionTimeout"
  | "atrnPipelining"
>;

/** Options of {@linkcode deliverQueued}. */
export interface DeliverOptions {
  /** The turned connection (same socket and read buffer as the ODMR session). */
  conn: Connection;
  /** The queue. */
  store: DeliveryQueue;
  /** Granted domains, lower-case (only their recipients are sent). */
  domains: readonly string[];
  /** Our name for EHLO (an address literal is used when it is empty). */
  hostname: string;
  /** Timeouts and the pipelining policy. */
  config: DeliveryConfig;
  /** Logger (a child with the connection id is a good choice). */
  logger?: Logger;
  /** The clock of the session's start/end times and the watch deadline (default: the system clock). */
  clock?: Clock;
  /**
   * Aborting ends the session at once; unconfirmed recipients stay queued. The relay passes none (at
   * shutdown the listener closes the connection, which ends the session the same way); it is for callers
   * that run the client themselves (test/client/deliver_session_test.ts).
   */
  signal?: AbortSignal;
  /** Messages fetched per queue page. Default 50. */
  pageSize?: number;
  /** Caps on reply size; defaults 100 lines of 512 octets. */
  maxReplyLines?: number;
  /** Longest reply line in octets including CRLF. Default 512. */
  maxReplyLineLength?: number;
  /** Most RCPTs per transaction. Default 100. */
  maxRecipientsPerTransaction?: number;
  /**
   * Group commit of outcomes: flush after this many messages (default 64) or this many milliseconds after
   * the oldest unrecorded one (default 200). `{ messages: 1 }` records after every message.
   */
  outcomeBatch?: { messages?: number; ms?: number };
  /** Told after outcomes were recorded (so failures are reported without waiting for the session's end). */
  afterRecord?: () => void;
  /** Push delivery: keep the session open while the customer asks for it (see {@linkcode WatchOptions}). */
  watch?: WatchOptions;
  /**
   * Renews the session's domain lease; false when another session holds it now. Called before each queue
   * page, so a session whose lease lapsed (a node whose heartbeats did not reach a shared database) stops
   * before a second session could deliver the same mail (RFC 2645 5: one session per domain).
   */
  renewLease?: () => Promise<boolean>;
}

/**
 * Push delivery (`pull --watch`): a customer whose EHLO reply lists {@linkcode WATCH_KEYWORD} keeps the
 * turned session open after the queue is drained. New mail for the granted domains then goes out as soon
 * as it is committed (woken by `newMail`, no polling), and NOOP every `keepaliveMs` keeps the session and
 * the customer's own connection alive. After `maxMs` the relay says QUIT and the customer reconnects.
 */
export interface WatchOptions {
  newMail: NewMailSignal;
  maxMs: number;
  keepaliveMs: number;
  /** Takes a watching slot (`atrnMaxWatching`); false: the session ends as usual. */
  enter(): boolean;
  /** Gives the slot back. */
  leave(): void;
  /** Extends the domain lease (held all along: another ATRN gets 451); false when it was lost. */
  renew(): Promise<boolean>;
  /** The granted domains that may be delivered now (holds read again); null: end the watch. */
  currentDomains(): Promise<readonly string[] | null>;
  /** The session waits with nothing in flight (true) or delivers again (false). */
  idle(waiting: boolean): Promise<void>;
  /** Aborts the watch (shutdown): the relay says QUIT. */
  stop?: AbortSignal;
}

/** Default group-commit size for outcomes (messages per transaction). */
export const DEFAULT_OUTCOME_BATCH_MESSAGES = 64;
/** Default longest wait before unrecorded outcomes are flushed (milliseconds). */
export const DEFAULT_OUTCOME_BATCH_MS = 200;

/** How the session ended: `completed` after QUIT, otherwise why it stopped early. */
export type DeliveryOutcome = "completed" | AbortKind;

/** Counts for the ATRN session record. */
export interface DeliverResult {
  /** Recipients delivered (removed from the queue). */
  delivered: number;
  /** Recipients attempted and left queued (4xx, lost connection, timeout). */
  deferred: number;
  /** Recipients failed (5xx or refused locally); they wait for their DSN. */
  failed: number;
  /** Messages attempted. */
  messages: number;
  /** `completed`, or the kind of problem that ended the session. */
  outcome: DeliveryOutcome;
  /** Human-readable reason when the session ended early (also recorded on deferred recipients). */
  detail: string | null;
  /** Whether PIPELINING was used, and why. */
  pipelining: boolean;
  /** The reason for the pipelining decision. */
  pipeliningReason: string;
  /** Start and end of the session (from `now`). */
  startedAt: number;
  /** End of the session. */
  endedAt: number;
}

/** Client timeouts from the config fields (RFC 5321 4.5.3.2). */
export function clientTimeouts(config: DeliveryConfig): ClientTimeouts {
  return {
    greetingMs: config.atrnGreetingTimeout,
    commandMs: config.atrnCommandTimeout,
    dataInitMs: config.atrnDataInitTimeout,
    dataBlockMs: config.atrnDataBlockTimeout,
    dataTermMs: config.atrnDataTermTimeout,
  };
}

/**
 * Delivers queued mail for `domains` over the handed connection and returns the counts. Never throws for
 * anything the customer does; the connection is closed when it returns.
 */
export async function deliverQueued(options: DeliverOptions): Promise<DeliverResult> {
  const { conn, store, domains, config } = options;
  const clock = options.clock ?? systemClock;
  const now = () => clock.now();
  const log = options.logger;
  const startedAt = now();
  const clientOptions: ConstructorParameters<typeof SmtpClient>[1] = {
    timeouts: clientTimeouts(config),
    pipelining: config.atrnPipelining,
  };
  if (log !== undefined) clientOptions.logger = log;
  if (options.maxReplyLines !== undefined) clientOptions.maxReplyLines = options.maxReplyLines;
  if (options.maxReplyLineLength !== undefined) clientOptions.maxReplyLineLength = options.maxReplyLineLength;
  if (options.maxRecipientsPerTransaction !== undefined) {
    clientOptions.maxRecipientsPerTransaction = options.maxRecipientsPerTransaction;
  }
  const client = new SmtpClient(conn, clientOptions);

  const counts = { delivered: 0, deferred: 0, failed: 0, messages: 0 };
  // The overall session limit and cancellation destroy the connection; the pending read then fails with
  // the abort's text, so the in-flight message is deferred with it.
  const timer = setTimeout(() => {
    client.abort(
      new DeliveryAbort("timeout", `4.4.2 Session time limit of ${config.atrnSessionTimeout} ms reached`),
    );
  }, config.atrnSessionTimeout);
  const onCancel = (): void =>
    client.abort(new DeliveryAbort("cancelled", "4.3.2 Delivery session cancelled"));
  if (options.signal?.aborted) onCancel();
  else options.signal?.addEventListener("abort", onCancel, { once: true });

  const batch = new OutcomeBatch(store, log, options.outcomeBatch);
  let abort: DeliveryAbort | null = null;
  let watching: WatchOptions | null = null;
  try {
    const greeting = await client.readGreeting();
    // RFC 5321 4.2: the greeting starts with the server's name; it is the DSN's Remote-MTA.
    const remoteMta = greeting.lines[0]?.split(/\s+/, 1)[0] || null;
    await client.hello(options.hostname);
    // RFC 3461 5.2: with NOTIFY=SUCCESS and a customer that cannot report success itself (no DSN
    // extension), the relay reports "relayed" once the customer has accepted the message.
    const reportsSuccess = client.capabilities.has("DSN");
    let afterId = 0;
    const watch = options.watch && client.capabilities.has(WATCH_KEYWORD) && options.watch.enter()
      ? options.watch
      : null;
    const watchUntil = watch ? now() + watch.maxMs : 0;
    // Ends the wait at once when the customer hangs up or the relay stops, so the lease goes with it.
    const watchEnd = new AbortController();
    if (watch) {
      watching = watch;
      void conn.closed.then(() => watchEnd.abort());
      if (watch.stop?.aborted) watchEnd.abort();
      else watch.stop?.addEventListener("abort", () => watchEnd.abort(), { once: true });
      log?.info("watching", { maxMs: watch.maxMs, keepaliveMs: watch.keepaliveMs });
    }
    let mark = watch?.newMail.mark(domains);
    let active: readonly string[] = domains;
    let idleBefore = false;
    drain: for (;;) {
      if (watch) {
        // Holds, releases and a disabled account take effect in a watch too (read again each time).
        const current = await watch.currentDomains();
        if (current === null) break drain;
        active = current;
      }
      pages: for (;;) {
        // Record first, so the next look at the queue (and the "look again before QUIT") sees every outcome.
        if (!(await batch.flush())) break;
        if (watch && now() >= watchUntil) break drain;
        // Keyset pagination: each page starts after the last message attempted, so a deferred message is not
        // tried twice and mail that arrived meanwhile (higher ids) is found by the next look.
        // The mark is taken right before each look: mail committed after it wakes the watch, and the
        // wait never sees "new" mail that this look has already found (no busy loop).
        if (watch) mark = watch.newMail.mark(domains);
        if (!watch && options.renewLease && !(await options.renewLease())) {
          abort = new DeliveryAbort("local", "4.3.0 Domain lease lost");
          break drain;
        }
        const page = (await store.nextDeliverable(active, afterId, options.pageSize ?? 50)).map(
          toClientMessage,
        );
        if (page.length === 0) break;
        for (const message of page) {
          if (!client.usable) {
            // Closed between messages (customer hung up, session limit): nothing more is attempted.
            abort = client.abortReason ??
              new DeliveryAbort("lost", "4.4.2 Connection closed by the customer");
            break pages;
          }
          if (batch.failed) break pages;
          if (watch && !(await watch.renew())) {
            // A watch may drain far longer than one session's lease: keep it before every message, or
            // stop before a second session could take the domains and deliver the same mail.
            abort = new DeliveryAbort("local", "4.3.0 Domain lease lost");
            break drain;
          }
          afterId = message.id;
          counts.messages++;
          const result = await client.sendMessage(message, () => store.readBody(message.id));
          // Queued for the next group commit; nothing was removed before the customer's 250 (docs/design.md#delivery).
          await batch.add(message.id, forTheRecord(message, result.outcomes, remoteMta, reportsSuccess));
          counts.delivered += result.delivered;
          counts.deferred += result.deferred;
          counts.failed += result.failed;
          log?.info("message attempted", {
            msgId: message.id,
            delivered: result.delivered,
            deferred: result.deferred,
            failed: result.failed,
          });
          if (result.abort !== null) {
            abort = result.abort;
            break pages;
          }
        }
      }
      if (!watch || abort !== null || batch.failed) break drain;
      // Drained: record, then wait for new mail (or the keepalive) while the customer watches.
      if (!(await batch.flush())) break drain;
      options.afterRecord?.();
      try {
        if (!idleBefore) {
          // From here the watch's own limit holds, not the whole-session cap. A first NOOP at once tells
          // the customer that the session really is watching (pull reconnects at once only then).
          clearTimeout(timer);
          idleBefore = true;
          await client.noop();
        }
        for (;;) {
          const left = watchUntil - now();
          if (left <= 0 || watchEnd.signal.aborted || !client.usable) break drain;
          // Waiting, nothing in flight: expiry and operator bounces may touch these domains meanwhile.
          await watch.idle(true);
          const woken = await watch.newMail.wait(mark!, Math.min(left, watch.keepaliveMs), watchEnd.signal);
          await watch.idle(false);
          if (!client.usable) break drain;
          if (!(await watch.renew())) throw new DeliveryAbort("local", "4.3.0 Domain lease lost");
          if (woken) continue drain;
          if (now() >= watchUntil || watchEnd.signal.aborted) break drain;
          // RFC 5321 4.5.3.2.7: servers time out idle clients after 5 minutes; NOOP well before that.
          await client.noop();
          // A look after each keepalive from the start of the queue: mail deferred earlier in this
          // watch is tried again, and mail no commit announced (a released hold) is found.
          afterId = 0;
          continue drain;
        }
      } catch (err) {
        abort = err instanceof DeliveryAbort ? err : new DeliveryAbort("lost", "4.4.2 Watch ended");
        break drain;
      }
    }
    if (abort === null && !client.usable) {
      abort = client.abortReason ?? new DeliveryAbort("lost", "4.4.2 Connection closed by the customer");
    }
    if (abort === null && await batch.flush()) {
      await client.quit();
    } else if (abort === null) {
      // Outcomes cannot be recorded: stop sending (every further delivery would be a later duplicate).
      abort = new DeliveryAbort("local", `4.3.0 Queue update failed: ${batch.errorText}`);
      await client.quit();
    }
  } catch (err) {
    abort = err instanceof DeliveryAbort ? err : client.abortReason ??
      new DeliveryAbort("local", `4.3.0 Local error: ${err instanceof Error ? err.message : String(err)}`);
    if (!(err instanceof DeliveryAbort)) {
      log?.error("delivery session failed", {
        error: err instanceof Error ? err.stack ?? err.message : String(err),
      });
    }
  } finally {
    watching?.leave();
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onCancel);
    // Whatever ended the session, what the customer confirmed is recorded now (or stays queued).
    const lost = await batch.close();
    for (const o of lost) {
      if (o.result === "delivered" || o.result === "relayed") counts.delivered--;
      else if (o.result === "failed") counts.failed--;
      else continue;
      counts.deferred++;
    }
    // A refusing customer was already sent QUIT and closed politely; every other abort drops the link.
    if (abort !== null && abort.kind !== "refused") conn.destroy();
  }

  return {
    ...counts,
    outcome: abort === null ? "completed" : abort.kind,
    detail: abort === null ? null : abort.text,
    pipelining: client.pipelining,
    pipeliningReason: client.pipeliningDecision.reason,
    startedAt,
    endedAt: now(),
  };
}

// The queue meets the client here, and only here: queue rows become the client's messages, and the
// client's outcomes become what the queue records. Field by field, so a change on either side shows.

/** A queue row as the message the client sends. */
function toClientMessage(m: QueuedMessage): DeliverableMessage {
  return {
    id: m.id,
    mailFrom: m.mailFrom,
    size: m.size,
    bodyType: m.bodyType,
    smtputf8: m.smtputf8,
    eightBit: m.eightBit,
    envid: m.envid,
    ret: m.ret,
    receivedAt: m.receivedAt,
    recipients: m.recipients.map((r) => ({ id: r.id, address: r.address, notify: r.notify, orcpt: r.orcpt })),
  };
}

/**
 * The outcomes as the queue records them: who answered (for a DSN's Remote-MTA), and "relayed" for a
 * delivered recipient whose sender asked for NOTIFY=SUCCESS when the customer will not report it.
 */
function forTheRecord(
  message: DeliverableMessage,
  outcomes: readonly RecipientOutcome[],
  remoteMta: string | null,
  customerReportsSuccess: boolean,
): RecordedOutcome[] {
  const notify = new Map(message.recipients.map((r) => [r.id, r.notify]));
  return outcomes.map((o) => {
    if (o.result === "failed" && !o.local) return { ...recorded(o), remoteMta };
    // The DSN step's own policy (src/dsn/policy.ts): never for `<>`, only with NOTIFY=SUCCESS.
    const relayed = o.result === "delivered" && needsDsn({
      sender: message.mailFrom,
      notify: notify.get(o.id) ?? null,
      action: "relayed",
      nextHopHasDsn: customerReportsSuccess,
    });
    if (relayed) {
      return { ...recorded(o), result: "relayed", remoteMta };
    }
    return recorded(o);
  });
}

/** One client outcome as a queue outcome. */
function recorded(o: RecipientOutcome): RecordedOutcome {
  return {
    id: o.id,
    result: o.result,
    code: o.code,
    text: o.text,
    ...(o.local !== undefined ? { local: o.local } : {}),
    ...(o.remoteMta !== undefined ? { remoteMta: o.remoteMta } : {}),
  };
}

type PendingOutcomes = { messageId: number; outcomes: readonly RecordedOutcome[] };

/**
 * Group commit of delivery outcomes: `add` queues one message's outcomes; they are written with
 * `recordOutcomesMany` (one transaction, one fsync) when `messages` are pending, `ms` after the first
 * pending one (timer), or when `flush`/`close` is called. A failed write keeps the entries pending and
 * sets `failed`; `close` tries once more and returns the outcomes that could not be recorded (their
 * recipients are still queued in the store).
 */
class OutcomeBatch {
  readonly #store: DeliveryQueue;
  readonly #log: Logger | undefined;
  readonly #max: number;
  readonly #ms: number;
  #pending: PendingOutcomes[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #error: unknown = null;
  #writing: Promise<boolean> | null = null;

  constructor(store: DeliveryQueue, log: Logger | undefined, options: DeliverOptions["outcomeBatch"] = {}) {
    this.#store = store;
    this.#log = log;
    this.#max = Math.max(1, options.messages ?? DEFAULT_OUTCOME_BATCH_MESSAGES);
    this.#ms = Math.max(0, options.ms ?? DEFAULT_OUTCOME_BATCH_MS);
  }

  /** A flush failed; the session should stop sending. */
  get failed(): boolean {
    return this.#error !== null;
  }

  /** The last flush error as text. */
  get errorText(): string {
    const e = this.#error;
    return e instanceof Error ? e.message : String(e);
  }

  /**
   * Queues one message's outcomes; when that fills the batch, resolves only after the batch is written,
   * so a failed write is known (`failed`) before the next message goes out.
   */
  async add(messageId: number, outcomes: readonly RecordedOutcome[]): Promise<void> {
    this.#pending.push({ messageId, outcomes });
    if (this.#pending.length >= this.#max) await this.flush();
    else if (this.#error === null) this.#timer ??= setTimeout(() => void this.flush(), this.#ms);
  }

  /**
   * Writes every pending outcome in one transaction; `false` (logged, entries kept) when it failed now or
   * before (after a failure only `close` tries again). Flushes run one at a time: a flush called while
   * another is writing waits for it, then writes what was added meanwhile.
   */
  flush(): Promise<boolean> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const previous = this.#writing ?? Promise.resolve(true);
    const next = previous.then(() => this.#write());
    this.#writing = next;
    void next.finally(() => {
      if (this.#writing === next) this.#writing = null;
    });
    return next;
  }

  async #write(): Promise<boolean> {
    if (this.#error !== null) return false;
    if (this.#pending.length === 0) return true;
    const entries = this.#pending;
    this.#pending = [];
    try {
      await this.#store.recordOutcomesMany(entries);
      return true;
    } catch (err) {
      // Kept, in order, ahead of anything added while the write was out.
      this.#pending = [...entries, ...this.#pending];
      this.#error = err;
      this.#log?.error("recording delivery outcomes failed; those messages stay queued", {
        messages: entries.length,
        msgIds: entries.map((e) => e.messageId).join(","),
        error: err instanceof Error ? err.message : String(err),
      });
      return false;
    }
  }

  /** Final flush (one more try after a failure); returns the outcomes left unrecorded. */
  async close(): Promise<RecordedOutcome[]> {
    await this.#writing;
    const retry = this.#error !== null;
    this.#error = null;
    await this.flush();
    if (this.#pending.length === 0) {
      if (retry) this.#log?.info("delivery outcomes recorded on the final try");
      return [];
    }
    const lost = this.#pending.flatMap((e) => [...e.outcomes]);
    this.#log?.error("delivery outcomes not recorded; the messages stay queued and go out again later", {
      messages: this.#pending.length,
      msgIds: this.#pending.map((e) => e.messageId).join(","),
    });
    this.#pending = [];
    return lost;
  }
}
