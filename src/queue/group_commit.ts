/**
 * Group commit for the intake: messages whose DATA ends in the same turn of the event loop are
 * committed in ONE transaction, so they share one fsync (SQLite WAL, synchronous=FULL). SQLite
 * runs synchronously on the one event loop, so one fsync at a time is all the relay can do; with
 * many sessions the messages that finished during that fsync simply ride on the next one.
 *
 * Durability is unchanged: each caller's promise settles only after the COMMIT that contains its
 * message has returned, and the intake sends 250 only then (RFC 5321 4.1.1.4). Each message is in
 * its own SAVEPOINT, so a message that fails is rolled back alone (its session answers 451).
 */
import { setImmediate } from "node:timers";
import type { BodySource, IncomingMessage, QueueStore } from "./store.ts";

interface Pending {
  item: { message: IncomingMessage; body: BodySource };
  resolve: (id: number) => void;
  reject: (error: Error) => void;
}

/** Batches enqueues into shared transactions. */
export class GroupCommitter {
  readonly #store: QueueStore;
  readonly #maxBatch: number;
  #pending: Pending[] = [];
  #scheduled = false;
  /** Commits done and messages committed (for the benchmark notes and tests). */
  commits = 0;
  committed = 0;

  constructor(store: QueueStore, options: { maxBatch?: number } = {}) {
    this.#store = store;
    this.#maxBatch = options.maxBatch ?? 256;
  }

  /** Resolves with the message id once it is committed; rejects when it was not stored. */
  enqueue(message: IncomingMessage, body: BodySource): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.#pending.push({ item: { message, body }, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    // setImmediate runs after the current poll phase: every session whose final dot arrived in
    // the same batch of socket reads has queued its message by then.
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#pending.splice(0, this.#maxBatch);
    if (this.#pending.length > 0) this.#schedule();
    if (batch.length === 0) return;
    let results: (number | Error)[];
    try {
      results = batch.length === 1
        ? [this.#store.enqueue(batch[0]!.item.message, batch[0]!.item.body)]
        : this.#store.enqueueMany(batch.map((p) => p.item));
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
