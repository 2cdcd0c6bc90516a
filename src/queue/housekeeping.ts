/**
 * Periodic queue maintenance: recipients older than the queue lifetime (per-domain override or
 * `queueLifetime`, RFC 5321 4.5.4.1: give up after 4-5 days) are marked failed with status
 * 4.4.7, and the reporting jobs (src/queue/reporting.ts) run after it: the DSN step reports them to the
 * sender, delay warnings and customer notices go out. Freed storage is returned a little at a time.
 * Every query is an index range per domain, never a queue scan. With several nodes on one database
 * the round runs on one node at a time: the one holding the `housekeeping` job lease.
 */
import type { Logger } from "../log/logger.ts";
import { type Clock, systemClock } from "../clock.ts";
import type { Queue } from "./queue.ts";

/** RFC 3463 4.4.7: delivery time expired. */
export const EXPIRED_TEXT = "4.4.7 Delivery time expired: the customer did not collect the mail in time";

/** The cluster-wide job lease of a housekeeping round. */
export const HOUSEKEEPING_JOB = "housekeeping";

/**
 * Marks expired recipients failed; returns how many per domain. Domains in `busy` (being delivered in
 * an ATRN session right now) are left for the next round: the customer may be accepting that very
 * mail, and a recipient must not be reported failed and delivered too.
 */
export async function expireRecipients(
  store: Pick<Queue, "expiryCandidates" | "expireQueued">,
  lifetimeMs: number,
  clock: Clock,
  busy: ReadonlySet<string> = new Set(),
): Promise<Map<string, number>> {
  const now = clock.now();
  const expired = new Map<string, number>();
  for (const domain of await store.expiryCandidates()) {
    if (busy.has(domain.name)) continue;
    const cutoff = now - (domain.retentionMs ?? lifetimeMs);
    const changes = await store.expireQueued(domain.name, cutoff, EXPIRED_TEXT);
    if (changes > 0) expired.set(domain.name, changes);
  }
  return expired;
}

/** How long ATRN session history is kept (for /status and "last collected"). */
export const ATRN_HISTORY_MS = 30 * 86_400_000;

/** Deletes ATRN session records older than `keepMs`; returns how many. */
export function pruneAtrnHistory(
  store: Pick<Queue, "pruneAtrnHistory">,
  keepMs: number,
  clock: Clock,
): Promise<number> {
  return store.pruneAtrnHistory(clock.now() - keepMs);
}

/** Starts the periodic housekeeping; `tick` runs one round now (tests), `stop` ends it. */
export function startHousekeeping(
  store: Queue,
  options: {
    lifetimeMs: number;
    intervalMs?: number;
    logger: Logger;
    clock?: Clock;
    /** Runs after each tick's expiry (the reporting jobs: DSNs, delay warnings, notices). */
    afterTick?: () => void | Promise<void>;
  },
): { tick: () => Promise<void>; stop: () => void } {
  const clock = options.clock ?? systemClock;
  const intervalMs = options.intervalMs ?? 60_000;
  const tick = async () => {
    try {
      // One node per round (the lease outlives the interval, so the holder keeps it round after round).
      if (!(await store.leases.claimJob(HOUSEKEEPING_JOB, 3 * intervalMs))) return;
      const busy = new Set(await store.leases.busyDomains());
      for (const [domain, count] of await expireRecipients(store, options.lifetimeMs, clock, busy)) {
        options.logger.warn("recipients expired", { domain, count });
      }
      await options.afterTick?.();
      await pruneAtrnHistory(store, ATRN_HISTORY_MS, clock);
      await store.maintain();
    } catch (error) {
      options.logger.error("housekeeping failed", { error: String(error) });
    }
  };
  const timer = setInterval(() => void tick(), intervalMs);
  (timer as { unref?: () => void }).unref?.();
  return { tick, stop: () => clearInterval(timer) };
}
