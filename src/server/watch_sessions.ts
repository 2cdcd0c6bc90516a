/**
 * Watching sessions (push delivery, `pull --watch`): the turned sessions a customer keeps open so that
 * new mail goes out as soon as it is committed. This holds the limits (`atrnMaxWatching`,
 * `atrnWatchMaxDuration`, `atrnWatchKeepalive`), the in-process new-mail signal the intake raises, the
 * stop signal for shutdown, and the list of who is watching for /status and /metrics.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { WatchOptions } from "../client/deliver_session.ts";
import type { NewMailSignal } from "../queue/new_mail.ts";
import type { TurnedSession } from "./odmr.ts";

/** One watching session, as /status shows it. */
export interface WatchingSession {
  cid: string;
  username: string;
  domains: readonly string[];
  since: number;
}

/** Limits of push delivery (config). */
export interface WatchLimits {
  maxSessions: number;
  /** Watching sessions of one account: watchers are authenticated, so eviction never frees their slots. */
  maxPerAccount: number;
  maxMs: number;
  keepaliveMs: number;
}

/** The relay's watching sessions. */
export class WatchSessions {
  readonly #watching = new Map<string, WatchingSession>();
  readonly #stop = new AbortController();

  constructor(readonly newMail: NewMailSignal, readonly limits: WatchLimits, readonly clock: Clock) {}

  /** The watch options for one turned session (it watches only if its customer asks). */
  optionsFor(session: TurnedSession, domains: readonly string[]): WatchOptions {
    return {
      newMail: this.newMail,
      maxMs: this.limits.maxMs,
      keepaliveMs: this.limits.keepaliveMs,
      stop: this.#stop.signal,
      renew: () => session.renewLease(),
      currentDomains: () => session.currentDomains(),
      idle: (waiting) => session.setIdle(waiting),
      enter: () => {
        if (this.#stop.signal.aborted || this.#watching.size >= this.limits.maxSessions) return false;
        const mine = [...this.#watching.values()].filter((w) => w.username === session.username).length;
        if (mine >= this.limits.maxPerAccount) return false;
        this.#watching.set(session.cid, {
          cid: session.cid,
          username: session.username,
          domains: [...domains],
          since: this.clock.now(),
        });
        return true;
      },
      leave: () => void this.#watching.delete(session.cid),
    };
  }

  /** True while another session may start watching (push is on, not full, not shutting down). */
  accepting(): boolean {
    return !this.#stop.signal.aborted && this.#watching.size < this.limits.maxSessions;
  }

  /** Who is watching now. */
  list(): WatchingSession[] {
    return [...this.#watching.values()];
  }

  /** Shutdown: every watching session says QUIT now. */
  stopAll(): void {
    this.#stop.abort();
  }
}
