/**
 * A sliding-window rate limit per key (for example ATRN polls per account), pure and clock-injected.
 * Memory is bounded: at most `maxKeys` keys, the least recently used dropped first, and at most
 * `limit` timestamps per key.
 *
 * @module
 */
import type { Clock } from "../clock.ts";

/** Limits of a {@linkcode SlidingWindowLimit}. */
export interface SlidingWindowOptions {
  /** Events allowed per key within the window. */
  limit: number;
  /** The window in milliseconds. */
  windowMs: number;
  /** Most keys kept (default 10,000). */
  maxKeys?: number;
}

/** Counts events per key over a sliding window. */
export class SlidingWindowLimit {
  readonly #clock: Clock;
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  // Insertion order is recency: a key touched is re-inserted at the end.
  readonly #events = new Map<string, number[]>();

  constructor(clock: Clock, options: SlidingWindowOptions) {
    if (!(options.limit >= 1) || !(options.windowMs > 0)) {
      throw new RangeError("Rate limit needs limit >= 1 and windowMs > 0");
    }
    this.#clock = clock;
    this.#limit = options.limit;
    this.#windowMs = options.windowMs;
    this.#maxKeys = Math.max(1, options.maxKeys ?? 10_000);
  }

  /** Records an event for `key` and returns true, or returns false (recording nothing) when over the limit. */
  tryTake(key: string): boolean {
    const now = this.#clock.now();
    const cutoff = now - this.#windowMs;
    const stamps = (this.#events.get(key) ?? []).filter((t) => t > cutoff);
    if (stamps.length >= this.#limit) {
      this.#events.set(key, stamps);
      return false;
    }
    stamps.push(now);
    this.#events.delete(key);
    this.#events.set(key, stamps);
    while (this.#events.size > this.#maxKeys) {
      const oldest = this.#events.keys().next();
      if (oldest.done) break;
      this.#events.delete(oldest.value);
    }
    return true;
  }

  /** Keys currently held (for tests). */
  get size(): number {
    return this.#events.size;
  }
}
