/**
 * When to poll a provider next: every `everyMs` after a poll that worked; after failures in a row,
 * `backoffMs` doubling up to `backoffMaxMs`, so a provider that is down or restarting is retried soon
 * and then less and less often. Jitter only ever lengthens a wait, by up to `jitter` of it, so many
 * customers started at the same moment spread out and none polls faster than it was told to (a
 * provider may limit ATRNs per minute, RFC 2645 5.2.1 lets it answer 450 to repeated requests).
 */

/** The settings a schedule is made of. */
export interface PollSchedule {
  everyMs: number;
  /** 0..1: a wait is longer by up to this fraction of it. */
  jitter: number;
  backoffMs: number;
  backoffMaxMs: number;
}

/**
 * The wait before the next poll of a provider whose last `failures` polls in a row failed (0: the
 * last one worked). `random` returns a number in [0, 1).
 */
export function nextWaitMs(
  schedule: PollSchedule,
  failures: number,
  random: () => number = Math.random,
): number {
  const base = failures === 0
    ? schedule.everyMs
    : Math.min(schedule.backoffMaxMs, schedule.backoffMs * 2 ** Math.min(failures - 1, 30));
  const wait = base * (1 + schedule.jitter * random());
  return Math.round(failures === 0 ? wait : Math.min(wait, schedule.backoffMaxMs));
}

/** Resolves after `ms`, or as soon as `signal` fires. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
