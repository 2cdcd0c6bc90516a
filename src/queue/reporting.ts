/**
 * Runs the reporting jobs over the queue: the DSN step for failed and relayed recipients (soon after
 * something fails: `kick`), and on every housekeeping tick also the delay warnings, the notices to
 * customers and the forwarding of postmaster mail. Whatever they queue for the internet is then handed
 * to the outbound worker (`onQueued`). The jobs themselves belong to the queue's backend (SQLite:
 * src/relay_reporting.ts, synchronous; PostgreSQL: src/relay_reporting_pg.ts, promises); this class
 * only schedules them.
 *
 * @module
 */
import type { Logger } from "../log/logger.ts";

/** A reporting job: returns (or resolves with) how many messages it handled or queued. */
export type ReportJob = () => number | Promise<number>;

/** Recipients and messages waiting for their DSN (for /status and /metrics). */
export interface PendingDsnCounts {
  recipients: number;
  messages: number;
}

/** Batches of the DSN step run per call; the rest waits for the next call. */
const MAX_DSN_BATCHES = 20;

/** Options of {@linkcode Reporting}. */
export interface ReportingOptions {
  /** One batch of the DSN step; a result of `dsnBatchSize` means more may be pending. */
  dsnBatch: ReportJob;
  /** Messages per DSN batch (the SQLite step: 50, one transaction). */
  dsnBatchSize: number;
  /**
   * What else runs on a housekeeping tick, in order (delay warnings, notices, postmaster forwarding);
   * each returns how many messages it queued.
   */
  tickJobs: readonly { name: string; run: ReportJob }[];
  /** Recipients waiting for their DSN. */
  pendingCounts: () => PendingDsnCounts | Promise<PendingDsnCounts>;
  /** Something may have been put on the outbound queue. */
  onQueued: () => void;
  logger: Logger;
}

/** The reporting jobs; see the module documentation. */
export class Reporting {
  readonly #o: ReportingOptions;
  #scheduled = false;
  #stopped = false;

  constructor(options: ReportingOptions) {
    this.#o = options;
  }

  /** Recipients failed or were relayed: run the DSN step soon (once for many kicks). */
  kick(): void {
    if (this.#scheduled || this.#stopped) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      if (!this.#stopped) void this.reportFailures();
    }, 0);
  }

  /**
   * The DSN step now; resolves with the messages handled. Batch after batch, with a turn of the event
   * loop between them, so sessions are not kept waiting.
   */
  async reportFailures(): Promise<number> {
    let handled = 0;
    try {
      for (let i = 0; i < MAX_DSN_BATCHES && !this.#stopped; i++) {
        const n = await this.#o.dsnBatch();
        handled += n;
        if (n > 0) this.#o.onQueued();
        if (n < this.#o.dsnBatchSize) break;
        await new Promise((r) => setTimeout(r, 0));
      }
    } catch (error) {
      this.#o.logger.error("DSN step failed", { error: String(error) });
    }
    return handled;
  }

  /** Everything: the DSN step, then the tick jobs (a housekeeping tick). */
  async runAll(): Promise<void> {
    await this.reportFailures();
    let queued = 0;
    for (const job of this.#o.tickJobs) {
      if (this.#stopped) break;
      try {
        queued += await job.run();
      } catch (error) {
        // One job failing does not keep the others from their turn.
        this.#o.logger.error("reporting failed", { job: job.name, error: String(error) });
      }
    }
    if (queued > 0) this.#o.onQueued();
  }

  /** Recipients and messages waiting for their DSN (for /status and /metrics). */
  async pendingCounts(): Promise<PendingDsnCounts> {
    return await this.#o.pendingCounts();
  }

  /** No more runs. */
  stop(): void {
    this.#stopped = true;
  }
}
