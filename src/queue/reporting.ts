/**
 * Runs the reporting jobs over the queue: the DSN step for failed and relayed recipients (soon after
 * something fails: `kick`), and on every housekeeping tick also the delay warnings, the notices to
 * customers and the forwarding of postmaster mail. Whatever they queue for the internet is then handed to the outbound worker (`onQueued`).
 *
 * @module
 */
import type { Logger } from "../log/logger.ts";
import { type BounceDeps, reportPendingDsns } from "./bounces.ts";
import { type DelayWarningDeps, sendDelayWarnings } from "./delay_warnings.ts";
import { sendWaitingNotices, type WaitingNoticeDeps } from "./waiting_notices.ts";

/** Batches of the DSN step run per call (50 messages each); the rest waits for the next call. */
const MAX_DSN_BATCHES = 20;

/** Options of {@linkcode Reporting}. */
export interface ReportingOptions {
  bounces: BounceDeps;
  /** Null when `dsnDelayWarnings` is empty. */
  warnings: DelayWarningDeps | null;
  notices: WaitingNoticeDeps;
  /** Moves the local postmaster mailbox to an outside postmasterAddress; null when there is none. */
  forwardPostmaster: (() => number) | null;
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
   * The DSN step now; resolves with the messages handled. Batches of 50 messages, one transaction each,
   * with a turn of the event loop between them, so sessions are not kept waiting.
   */
  async reportFailures(): Promise<number> {
    let handled = 0;
    try {
      for (let i = 0; i < MAX_DSN_BATCHES && !this.#stopped; i++) {
        const n = reportPendingDsns(this.#o.bounces);
        handled += n;
        if (n > 0) this.#o.onQueued();
        if (n < 50) break;
        await new Promise((r) => setTimeout(r, 0));
      }
    } catch (error) {
      this.#o.logger.error("DSN step failed", { error: String(error) });
    }
    return handled;
  }

  /** Everything: the DSN step, delay warnings and notices (a housekeeping tick). */
  async runAll(): Promise<void> {
    await this.reportFailures();
    let queued = 0;
    try {
      if (this.#o.warnings) queued += sendDelayWarnings(this.#o.warnings);
      queued += sendWaitingNotices(this.#o.notices);
      queued += this.#o.forwardPostmaster?.() ?? 0;
    } catch (error) {
      this.#o.logger.error("reporting failed", { error: String(error) });
    }
    if (queued > 0) this.#o.onQueued();
  }

  /** No more runs. */
  stop(): void {
    this.#stopped = true;
  }
}
