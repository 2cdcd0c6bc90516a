/**
 * Group commit for the intake: messages whose DATA ends in the same turn of the event loop are
 * committed in ONE transaction, so they share one fsync (SQLite WAL, synchronous=FULL). SQLite
 * runs synchronously on the one event loop, so one fsync at a time is all the relay can do; with
 * many sessions the messages that finished during that fsync simply ride on the next one.
 *
 * Adaptive wait: the intake tells the committer when a session starts receiving DATA
 * (`beginData`). While other sessions are still inside DATA, a submitted message waits up to
 * `maxWaitMs` for them so they share the fsync; when nobody else is receiving, it is committed on
 * the next turn of the event loop, so a lone sender pays no extra latency.
 *
 * Durability is unchanged: each caller's promise settles only after the COMMIT that contains its
 * message has returned, and the intake sends 250 only then (RFC 5321 4.1.1.4). Each message is in
 * its own SAVEPOINT, so a message that fails is rolled back alone (its session answers 451).
 */
import { clearTimeout, setImmediate, setTimeout } from "node:timers";
import type { BodySource, IncomingMessage, Queue } from "./queue.ts";

interface Pending {
  item: { message: IncomingMessage; body: BodySource };
  resolve: (id: number) => void;
  reject: (error: Error) => void;
}

/** Batches enqueues into shared transactions. */
export class GroupCommitter {
  readonly #store: Queue;
  readonly #maxBatch: number;
  readonly #maxWaitMs: number;
  #pending: Pending[] = [];
  #scheduled = false;
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** Sessions inside DATA that have not submitted their message yet. */
  #receiving = 0;
  /** Commits done and messages committed (for the benchmark notes and tests). */
  commits = 0;
  committed = 0;

  constructor(store: Queue, options: { maxBatch?: number; maxWaitMs?: number } = {}) {
    this.#store = store;
    this.#maxBatch = options.maxBatch ?? 256;
    this.#maxWaitMs = options.maxWaitMs ?? 1;
  }

  /** A session started receiving a message; it will call `enqueue` or `abandonData` later. */
  beginData(): void {
    this.#receiving++;
  }

  /** A session that called `beginData` ends without submitting (refused, aborted, closed). */
  abandonData(): void {
    this.#receiving = Math.max(0, this.#receiving - 1);
    if (this.#receiving === 0 && this.#pending.length > 0) this.#schedule();
  }

  /**
   * Resolves with the message id once it is committed; rejects when it was not stored. A caller
   * that used `beginData` is counted out of the receiving sessions here.
   */
  enqueue(message: IncomingMessage, body: BodySource, options: { fromData?: boolean } = {}): Promise<number> {
    if (options.fromData) this.#receiving = Math.max(0, this.#receiving - 1);
    return new Promise<number>((resolve, reject) => {
      this.#pending.push({ item: { message, body }, resolve, reject });
      if (this.#receiving === 0 || this.#pending.length >= this.#maxBatch) this.#schedule();
      else if (this.#timer === null) {
        // Others are mid-DATA: give them a moment to share this commit's fsync.
        this.#timer = setTimeout(() => {
          this.#timer = null;
          this.#schedule();
        }, this.#maxWaitMs);
      }
    });
  }

  #schedule(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#scheduled) return;
    this.#scheduled = true;
    // setImmediate runs after the current poll phase: every session whose final dot arrived in
    // the same batch of socket reads has queued its message by then.
    setImmediate(() => void this.#flush());
  }

  /**
   * Commits one batch. SQLite has committed by the time `enqueueMany` returns; PostgreSQL's commit is a
   * round trip, during which the next batch may already go out on another pooled connection.
   */
  async #flush(): Promise<void> {
    this.#scheduled = false;
    const batch = this.#pending.splice(0, this.#maxBatch);
    if (this.#pending.length > 0) this.#schedule();
    if (batch.length === 0) return;
    let results: (number | Error)[];
    try {
      results = batch.length === 1
        ? [await this.#store.enqueue(batch[0]!.item.message, batch[0]!.item.body)]
        : await this.#store.enqueueMany(batch.map((p) => p.item));
    } catch (error) {
      // The COMMIT (or BEGIN) failed: none of the batch is stored.
      const failure = error instanceof Error ? error : new Error(String(error));
      for (const p of batch) p.reject(failure);
      return;
    }
    this.commits++;
    results.forEach((result, i) => {
      const p = batch[i]!;
      if (result instanceof Error) p.reject(result);
      else {
        this.committed++;
        p.resolve(result);
      }
    });
  }
}
