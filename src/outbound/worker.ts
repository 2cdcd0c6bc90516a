/**
 * The outbound worker: sends what the outbound queue holds (DSNs, notices, postmaster mail) with
 * `sendOutbound`, at most `concurrency` at a time, and records each result:
 * - delivered: the row goes;
 * - failed (a 5xx, a null MX, no such domain): logged and dropped. A DSN that cannot be delivered is
 *   never reported on: no DSN about a DSN (RFC 3461 6.2, RFC 5321 6.1);
 * - deferred: tried again after a backoff (1 min, doubling, at most 4 h), until the row's lifetime
 *   (`dsnLifetime`) has passed, when it is logged and dropped.
 *
 * Rows are read from the queue's database through an {@linkcode OutboundStore} (SQLite, or PostgreSQL
 * shared by several nodes, where `due` claims rows so that two nodes never send one row at once), so a
 * restart picks up where the last run stopped; a row being sent when the process dies is simply sent
 * again (at-least-once, RFC 5321 6.1 accepts the duplicate).
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { Logger } from "../log/logger.ts";
import type { OutboundCounts, OutboundRow } from "../queue/outbound_queue.ts";
import type { OutboundDestination, OutboundResult, SendOutboundOptions } from "./send.ts";
import { sendOutbound } from "./send.ts";

/** First retry after a temporary failure; each further one waits twice as long. */
export const FIRST_RETRY_MS = 60_000;
/** Longest wait between two attempts. */
export const MAX_RETRY_MS = 4 * 3_600_000;
/** Longest sleep between two looks at the queue when nothing is due sooner. */
const IDLE_LOOK_MS = 60_000;

/** Answers that mean the smarthost will refuse every message now: credentials or TLS (src/outbound/dial.ts). */
const SMARTHOST_TROUBLE =
  /refused AUTH|Not sending credentials|offers no AUTH mechanism|does not offer (AUTH|STARTTLS)/;

/** The wait before attempt number `attempts + 1`, after `attempts` failed ones. */
export function retryDelayMs(attempts: number): number {
  return Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(Math.max(attempts - 1, 0), 20));
}

/** Sends one row (tests may replace it; default: `sendOutbound`). */
export type Sender = (options: SendOutboundOptions) => Promise<OutboundResult>;

/** The outbound rows as the worker uses them; each write is one committed transaction. */
export interface OutboundStore {
  /**
   * Up to `limit` rows due now, oldest first, none of those in `exclude` (being sent by this worker).
   * A store shared by several nodes claims the rows it returns for a while, so no other node sends them.
   */
  due(limit: number, exclude: ReadonlySet<number>): Promise<OutboundRow[]>;
  /**
   * Delivered, or given up: the row goes. False when this worker no longer holds the row (another node
   * claimed it after this one's claim lapsed): that node now owns its outcome, and nothing is changed.
   */
  remove(id: number): Promise<boolean>;
  /** A temporary failure: one more attempt counted, the next at `nextAttemptAt`; false as for `remove`. */
  defer(id: number, nextAttemptAt: number, error: string): Promise<boolean>;
  /** When the next row is due (ms), or null when there is none. */
  nextDueAt(): Promise<number | null>;
  /** Pending rows by kind and the oldest (for /status and /metrics). */
  counts(): Promise<OutboundCounts>;
  /**
   * Longest one attempt may take, ms: a shared store's claim on a row lasts only so long, after which
   * another node may send it, so the attempt is cut off (and deferred) before then. None: unbounded
   * beyond the RFC 5321 4.5.3.2 timeouts of each step.
   */
  readonly attemptLimitMs?: number;
}

/** Options of {@linkcode OutboundWorker}. */
export interface OutboundWorkerOptions {
  queue: OutboundStore;
  /** Where a row goes: the smarthost, or the MX of its domain. */
  destination: (row: OutboundRow) => OutboundDestination;
  /** Everything `sendOutbound` takes besides the message (hostname, DNS, timeouts, logger). */
  send: Omit<SendOutboundOptions, "destination" | "mailFrom" | "recipients" | "size" | "body" | "signal">;
  /** Rows sent at the same time. */
  concurrency: number;
  clock: Clock;
  logger: Logger;
  /**
   * Told when a row is delivered, dropped or deferred, with the last answer (metrics, bounces); the
   * attempt is over when what it returns has settled.
   */
  onResult?: (
    row: OutboundRow,
    outcome: "delivered" | "dropped" | "deferred",
    answer: { code: number; text: string; remoteMta: string | null },
  ) => void | Promise<void>;
  sender?: Sender;
}

/** Drains the outbound queue in the background. */
export class OutboundWorker {
  readonly #o: OutboundWorkerOptions;
  readonly #inFlight = new Map<number, Promise<void>>();
  readonly #stop = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The look that has not started yet (many kicks share it), and the last one queued. */
  #nextLook: Promise<void> | null = null;
  #lastLook: Promise<void> = Promise.resolve();
  /** After the smarthost refused our credentials (or TLS), nothing is tried before this time. */
  #pausedUntil = 0;
  /** After such a pause one row probes the smarthost; the others wait for it to succeed. */
  #probing = false;

  constructor(options: OutboundWorkerOptions) {
    this.#o = options;
  }

  /** Starts sending what is due now and keeps looking. */
  start(): void {
    this.kick();
  }

  /** Something was queued: look now instead of at the next timer. */
  kick(): void {
    if (this.#stop.signal.aborted) return;
    void this.#look();
  }

  /** Sends every row that is due now and waits until those attempts are over (tests, shutdown). */
  async runDue(): Promise<void> {
    await this.#look();
    await Promise.all(this.#inFlight.values());
  }

  /** Stops: no new attempts; attempts in progress are cancelled (their rows stay queued). */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#stop.abort();
    await this.#lastLook;
    await Promise.all(this.#inFlight.values());
  }

  /** Looks are serialised (one reads the store at a time); kicks during one share the next. */
  #look(): Promise<void> {
    if (this.#nextLook) return this.#nextLook;
    const look = this.#lastLook.then(async () => {
      this.#nextLook = null;
      await this.#lookOnce();
    });
    this.#nextLook = look;
    this.#lastLook = look;
    return look;
  }

  async #lookOnce(): Promise<void> {
    if (this.#stop.signal.aborted) return;
    try {
      const room = (this.#probing ? 1 : this.#o.concurrency) - this.#inFlight.size;
      if (room > 0 && this.#o.clock.now() >= this.#pausedUntil) {
        const rows = await this.#o.queue.due(room, new Set(this.#inFlight.keys()));
        // Stopped meanwhile: the rows stay queued (a claimed one is due again after its claim).
        if (this.#stop.signal.aborted) return;
        for (const row of rows.slice(0, room)) {
          if (this.#inFlight.has(row.id)) continue;
          const attempt = this.#attempt(row).finally(() => {
            this.#inFlight.delete(row.id);
            this.kick();
          });
          this.#inFlight.set(row.id, attempt);
        }
      }
    } catch (error) {
      this.#o.logger.error("outbound queue read failed", { error: String(error) });
    }
    await this.#schedule();
  }

  async #schedule(): Promise<void> {
    let next: number | null = null;
    try {
      next = await this.#o.queue.nextDueAt();
    } catch { /* the next look will log it */ }
    clearTimeout(this.#timer);
    if (this.#stop.signal.aborted) return;
    const due = next === null ? null : Math.max(next, this.#pausedUntil);
    const wait = due === null ? IDLE_LOOK_MS : Math.min(IDLE_LOOK_MS, Math.max(0, due - this.#o.clock.now()));
    // Rows being sent are "due" too; their end kicks the worker, so no busy loop here.
    this.#timer = setTimeout(() => void this.#look(), this.#inFlight.size > 0 ? Math.max(wait, 1000) : wait);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  async #attempt(row: OutboundRow): Promise<void> {
    const { logger, clock, queue } = this.#o;
    const log = logger.child({ outbound: row.id, kind: row.kind });
    let result: OutboundResult;
    try {
      result = await (this.#o.sender ?? sendOutbound)({
        ...this.#o.send,
        logger: log,
        destination: this.#o.destination(row),
        mailFrom: row.mailFrom,
        recipients: [row.rcpt],
        size: row.body.length,
        body: () => [row.body],
        eightBit: row.eightBit,
        smtputf8: row.smtputf8,
        signal: this.#o.queue.attemptLimitMs === undefined
          ? this.#stop.signal
          : AbortSignal.any([this.#stop.signal, AbortSignal.timeout(this.#o.queue.attemptLimitMs)]),
      });
    } catch (error) {
      log.error("outbound attempt failed", { error: String(error) });
      return;
    }
    const outcome = result.recipients[0];
    if (!outcome) return;
    const fields = {
      to: row.rcpt,
      code: outcome.code,
      reply: outcome.text,
      mta: outcome.remoteMta ?? undefined,
    };
    // This node's claim lapsed during a slow attempt and another node claimed the row: the outcome is
    // that node's to log and report, so a bounce is never sent twice (src/queue/pg/pg_outbound.ts).
    const claimLost = () => log.warn("outbound outcome dropped: another node claimed the row", fields);
    try {
      if (outcome.result === "delivered") {
        this.#probing = false;
        if (!await queue.remove(row.id)) return claimLost();
        log.info("outbound delivered", fields);
        await this.#o.onResult?.(row, "delivered", outcome);
      } else if (outcome.result === "failed") {
        if (!await queue.remove(row.id)) return claimLost();
        // Never a DSN about a DSN: a bounce that bounces is only logged.
        log.warn("outbound dropped: permanent failure", fields);
        await this.#o.onResult?.(row, "dropped", outcome);
      } else if (this.#stop.signal.aborted) {
        // Shutdown cancelled it: not an attempt that counts; it goes again after the restart.
      } else if (clock.now() >= row.expiresAt) {
        if (!await queue.remove(row.id)) return claimLost();
        log.warn("outbound dropped: lifetime over", { ...fields, attempts: row.attempts + 1 });
        await this.#o.onResult?.(row, "dropped", outcome);
      } else {
        const next = clock.now() + retryDelayMs(row.attempts + 1);
        // The same refusal awaits every row at this smarthost: one failed login per backoff, not one
        // per queued DSN (a storm of bad logins gets the relay's address banned).
        if (SMARTHOST_TROUBLE.test(outcome.text)) {
          this.#pausedUntil = Math.max(this.#pausedUntil, next);
          this.#probing = true;
        }
        if (!await queue.defer(row.id, Math.min(next, row.expiresAt), outcome.text)) return claimLost();
        log.info("outbound deferred", {
          ...fields,
          attempts: row.attempts + 1,
          retryAt: new Date(next).toISOString(),
        });
        await this.#o.onResult?.(row, "deferred", outcome);
      }
    } catch (error) {
      // The row stays as it was and is tried again: a duplicate at worst, never a loss.
      log.error("recording the outbound result failed", { error: String(error) });
    }
  }
}
