/**
 * The one clock type: everything that reads the time takes a `Clock`, so tests control time and never
 * sleep (DESIGN.md 4, seam 9).
 *
 * @module
 */

/** A source of wall-clock time in milliseconds since the epoch. */
export interface Clock {
  now(): number;
}

/** The real clock. */
export const systemClock: Clock = { now: () => Date.now() };
