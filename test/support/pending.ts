/** Waiting checks for tests that order transactions on real locks. */
import { setTimeout as delay } from "node:timers/promises";

/**
 * Whether `promise` is still pending after `ms`: an ordering check (it is waiting on a lock), not a
 * timing one; the wait is bounded by `ms`.
 */
export async function pendingAfter(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  void promise.then(() => (settled = true), () => (settled = true));
  await delay(ms);
  return !settled;
}
