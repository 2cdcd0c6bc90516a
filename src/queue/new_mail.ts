/**
 * New mail wakes a watching delivery session (`pull --watch`) through an in-process event, not by
 * polling the database. Each domain has a counter that every commit for it increments; a session notes
 * the counters before it looks at the queue and waits for any of them to move, so mail committed between
 * its last look and its wait is never missed.
 *
 * With several nodes on one PostgreSQL queue, mail committed on another node arrives as a NOTIFY
 * (src/queue/pg/pg_new_mail.ts). When the listener was disconnected, notifications were lost, so it
 * wakes everyone (`notifyAll`): a woken session only re-checks the queue, which is the truth.
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
  /**
   * Moves with every `notifyAll`. A mark holds counter + epoch per domain: both only grow, so the sum
   * changes when either does, including for domains that never had a counter of their own.
   */
  #epoch = 0;

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

  /**
   * Mail may have been committed for any domain (the cross-node listener missed notifications while
   * it was reconnecting): every waiting session wakes, and every mark taken before is stale.
   */
  notifyAll(): void {
    this.#epoch++;
    for (const waiter of this.#waiters) waiter.wake();
  }

  /** The current counters of `domains`; take it before looking at the queue. */
  mark(domains: readonly string[]): MailMark {
    return new Map(domains.map((d) => [d, this.#current(d)]));
  }

  #current(domain: string): number {
    return (this.#counters.get(domain) ?? 0) + this.#epoch;
  }

  /**
   * Waits until mail for a domain of `since` arrives after that mark (true), or `timeoutMs` passes or
   * `signal` aborts (false).
   */
  wait(since: MailMark, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    for (const [domain, seen] of since) {
      if (this.#current(domain) !== seen) return Promise.resolve(true);
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
