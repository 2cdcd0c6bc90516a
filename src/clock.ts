/**
 * The one clock type: everything that reads the time takes a `Clock`, so tests control time and never
 * sleep (docs/design.md#seams, 9).
 *
 * @module
 */

/** A source of wall-clock time in milliseconds since the epoch. */
export interface Clock {
  now(): number;
}

/** The real clock. */
export const systemClock: Clock = { now: () => Date.now() };

/**
 * A clock that moves only when told to: the one test clock. Tests set or advance it, then let the code
 * under test read it, instead of sleeping.
 */
export class ManualClock implements Clock {
  #ms: number;

  /** Starts at `startMs` (default: the real time now, so dates stay plausible). */
  constructor(startMs: number = Date.now()) {
    this.#ms = startMs;
  }

  now(): number {
    return this.#ms;
  }

  /** Moves to `ms`. */
  set(ms: number): void {
    this.#ms = ms;
  }

  /** Moves forward by `ms`; returns the new time. */
  advance(ms: number): number {
    return this.#ms += ms;
  }
}
