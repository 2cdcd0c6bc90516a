/**
 * New mail wakes a watching delivery session (`pull --watch`) through an in-process event, not by
 * polling the database. Each domain has a counter that every commit for it increments; a session notes
 * the counters before it looks at the queue and waits for any of them to move, so mail committed between
 * its last look and its wait is never missed.
 *
 * @module
 */

/** The counters a session saw, by domain. */
export type MailMark = ReadonlyMap<string, number>;

interface Waiter {
  domains: ReadonlySet<string>;
  wake: () => void;
}

/** New-mail notifications by domain (A-label keys). */
export class NewMailSignal {
  readonly #counters = new Map<string, number>();
  readonly #waiters = new Set<Waiter>();

  /** Mail for `domains` was committed. */
  notify(domains: Iterable<string>): void {
    const touched = new Set<string>();
    for (const domain of domains) {
      this.#counters.set(domain, (this.#counters.get(domain) ?? 0) + 1);
      touched.add(domain);
    }
    for (const waiter of this.#waiters) {
      for (const domain of touched) {
        if (waiter.domains.has(domain)) {
          waiter.wake();
          break;
        }
      }
    }
  }

  /** The current counters of `domains`; take it before looking at the queue. */
  mark(domains: readonly string[]): MailMark {
    return new Map(domains.map((d) => [d, this.#counters.get(d) ?? 0]));
  }

  /**
   * Waits until mail for a domain of `since` arrives after that mark (true), or `timeoutMs` passes or
   * `signal` aborts (false).
   */
  wait(since: MailMark, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    for (const [domain, seen] of since) {
      if ((this.#counters.get(domain) ?? 0) !== seen) return Promise.resolve(true);
    }
    if (signal?.aborted) return Promise.resolve(false);
    const waiters = this.#waiters;
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = { domains: new Set(since.keys()), wake: () => finish(true) };
      const timer = setTimeout(() => finish(false), timeoutMs);
      const onAbort = () => finish(false);
      signal?.addEventListener("abort", onAbort, { once: true });
      waiters.add(waiter);
      function finish(woken: boolean): void {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        waiters.delete(waiter);
        resolve(woken);
      }
    });
  }

  /** Sessions waiting (for tests). */
  get waiting(): number {
    return this.#waiters.size;
  }
}
