/**
 * Periodic queue maintenance: recipients older than the queue lifetime (per-domain override or
 * `queueLifetime`, RFC 5321 4.5.4.1: give up after 4-5 days) are marked failed with status
 * 4.4.7, and the reporting jobs (src/queue/reporting.ts) run after it: the DSN step reports them to the
 * sender, delay warnings and customer notices go out. Freed pages are returned to the file system a
 * little at a time. Every query is an index range per domain, never a queue scan.
 */
import type { Logger } from "../log/logger.ts";
import { type Clock, systemClock } from "../clock.ts";
import type { QueueStore } from "./store.ts";

/** RFC 3463 4.4.7: delivery time expired. */
export const EXPIRED_TEXT = "4.4.7 Delivery time expired: the customer did not collect the mail in time";

/**
 * Marks expired recipients failed; returns how many per domain. Domains in `busy` (being delivered in
 * an ATRN session right now) are left for the next round: the customer may be accepting that very
 * mail, and a recipient must not be reported failed and delivered too.
 */
export function expireRecipients(
  store: QueueStore,
  lifetimeMs: number,
  clock: Clock,
  busy: ReadonlySet<string> = new Set(),
): Map<string, number> {
  const now = clock.now();
  const expired = new Map<string, number>();
  for (const domain of store.expiryCandidates()) {
    if (busy.has(domain.name)) continue;
    const cutoff = now - (domain.retentionMs ?? lifetimeMs);
    const changes = store.transaction(() => store.expireQueued(domain.name, cutoff, EXPIRED_TEXT));
    if (changes > 0) expired.set(domain.name, changes);
  }
  return expired;
}

/** How long ATRN session history is kept (for /status and "last collected"). */
export const ATRN_HISTORY_MS = 30 * 86_400_000;

/** Deletes ATRN session records older than `keepMs`; returns how many. */
export function pruneAtrnHistory(store: QueueStore, keepMs: number, clock: Clock): number {
  return store.pruneAtrnHistory(clock.now() - keepMs);
}

/** Starts the periodic housekeeping; `tick` runs one round now (tests), `stop` ends it. */
export function startHousekeeping(
  store: QueueStore,
  options: {
    lifetimeMs: number;
    intervalMs?: number;
    logger: Logger;
    clock?: Clock;
    /** Runs after each tick's expiry (the reporting jobs: DSNs, delay warnings, notices). */
    afterTick?: () => void | Promise<void>;
    /** Domains being delivered right now (not expired in this tick). */
    busyDomains?: () => readonly string[];
  },
): { tick: () => Promise<void>; stop: () => void } {
  const clock = options.clock ?? systemClock;
  const tick = async () => {
    try {
      const busy = new Set(options.busyDomains?.() ?? []);
      for (const [domain, count] of expireRecipients(store, options.lifetimeMs, clock, busy)) {
        options.logger.warn("recipients expired", { domain, count });
      }
      await options.afterTick?.();
      pruneAtrnHistory(store, ATRN_HISTORY_MS, clock);
      // auto_vacuum=INCREMENTAL: give back up to 1000 free pages per tick without a full VACUUM.
      store.incrementalVacuum(1000);
    } catch (error) {
      options.logger.error("housekeeping failed", { error: String(error) });
    }
  };
  const timer = setInterval(() => void tick(), options.intervalMs ?? 60_000);
  (timer as { unref?: () => void }).unref?.();
  return { tick, stop: () => clearInterval(timer) };
}
