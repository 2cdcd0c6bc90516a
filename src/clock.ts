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
