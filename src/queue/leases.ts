/**
 * One ATRN session per domain at a time (docs/design.md#delivery; docs/protocol.md#atrn-decisions): an in-process
 * lease per domain, taken for ALL of a session's domains at once or not at all. The relay is one process,
 * so memory is the right place: a crash frees every lease with the process. Each lease also
 * expires (longer than the longest session), so a session that somehow never releases cannot
 * block a domain forever.
 */

import { type Clock, systemClock } from "../clock.ts";

/** A lease table keyed by domain. */
export class DomainLeases {
  readonly #held = new Map<string, { owner: string; expiresAt: number; idle: boolean }>();
  readonly #clock: Clock;

  constructor(clock: Clock = systemClock) {
    this.#clock = clock;
  }

  /** Takes every domain for `owner`, or none when any is held by another live session. */
  tryAcquire(domains: readonly string[], owner: string, ttlMs: number): boolean {
    const now = this.#clock.now();
    for (const domain of domains) {
      const lease = this.#held.get(domain);
      if (lease && lease.owner !== owner && lease.expiresAt > now) return false;
    }
    for (const domain of domains) {
      // Only a renewal by the same owner keeps the idle mark; a new owner starts busy.
      const previous = this.#held.get(domain);
      const idle = previous?.owner === owner ? previous.idle : false;
      this.#held.set(domain, { owner, expiresAt: now + ttlMs, idle });
    }
    return true;
  }

  /** Releases every domain `owner` holds. */
  release(owner: string): void {
    for (const [domain, lease] of this.#held) if (lease.owner === owner) this.#held.delete(domain);
  }

  /**
   * Marks `owner`'s leases as idle (a watching session waiting, nothing in flight) or busy again. An idle
   * lease still keeps other sessions out, but expiry and operator bounces may touch its mail.
   */
  setIdle(owner: string, idle: boolean): void {
    for (const lease of this.#held.values()) if (lease.owner === owner) lease.idle = idle;
  }

  /** Domains being delivered right now (leased and not idle). */
  busyDomains(): string[] {
    const now = this.#clock.now();
    return [...this.#held].filter(([, l]) => l.expiresAt > now && !l.idle).map(([d]) => d);
  }
}
