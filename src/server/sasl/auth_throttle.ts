/**
 * Authentication failure tracking: growing delays, per-IP blocks and per-(name, IP) locks. Pure and
 * clock-injected, so tests never sleep.
 *
 * The policy, and why (docs/security.md):
 * - **Per IP** (an IPv6 /64): failures from one address within the window count towards
 *   `maxFailuresPerIp`; at the limit AUTH from it answers `454 4.7.0`, checked both when AUTH starts and
 *   again just before a response is verified (so challenges fetched in parallel cannot overrun it). A
 *   success clears only the successful name's own failures from that address: failures against other
 *   names keep counting, so logging into one's own account between rounds of guesses gains nothing.
 * - **Per (name, IP)**: `maxFailuresPerAccountIp` failures naming one user from one address lock that
 *   pair: from there the secret is no longer even checked, and the answer is the same `535 5.7.8` as a
 *   wrong secret, recorded the same way (no oracle). The owner connecting from any other address is not
 *   affected: nobody without the secret can lock a customer out (RFC 4954 4 only asks servers to slow
 *   guessing down).
 * - **Per name, from anywhere**: failures naming a user make every further attempt with that name wait
 *   longer (`baseDelayMs`, doubling, up to `maxDelayMs`) BEFORE its response is verified, right or wrong,
 *   which slows a guesser spread over many addresses and cannot be skipped by hanging up early.
 * - Names are the exact typed username, whether or not such an account exists: usernames are matched
 *   exactly everywhere, so failures naming `DAVE` never touch `dave`, and an unknown name waits and
 *   counts exactly like a real one (no oracle for which accounts exist).
 *
 * Windows are sliding: each failure counts until `windowMs` after it happened. Memory is bounded: at most
 * `maxTrackedKeys` keys in each map, least recently touched evicted first, and a fixed number of
 * failures per key.
 *
 * @module
 */

import type { Clock } from "../../clock.ts";
import { addressKey } from "../../net/address_key.ts";

/** Kept for callers that name it after the throttle; see `addressKey`. */
export const throttleKeyForIp: (ip: string) => string = addressKey;

/** Tunables; every field has a default. */
export interface AuthThrottleOptions {
  /** Sliding window in which failures count, in ms (default 15 min). */
  readonly windowMs?: number;
  /** Failures from one IP (or IPv6 /64) within the window that block it (default 10). */
  readonly maxFailuresPerIp?: number;
  /** Failures naming one user from one IP within the window that lock that pair (default 5). */
  readonly maxFailuresPerAccountIp?: number;
  /** Delay after the first failure, in ms; doubles with each further one (default 1000). */
  readonly baseDelayMs?: number;
  /** Upper bound of the delay, in ms (default 16000). */
  readonly maxDelayMs?: number;
  /** Most IP keys, and separately most account keys, kept in memory (default 10000). */
  readonly maxTrackedKeys?: number;
  /** Failed AUTHs in one session before the server should disconnect; at least 3 (default 3). */
  readonly sessionFailuresBeforeDisconnect?: number;
}

/** The defaults behind {@link AuthThrottleOptions}. */
export const DEFAULT_AUTH_THROTTLE_OPTIONS: Required<AuthThrottleOptions> = {
  windowMs: 15 * 60 * 1000,
  maxFailuresPerIp: 10,
  maxFailuresPerAccountIp: 5,
  baseDelayMs: 1000,
  maxDelayMs: 16000,
  maxTrackedKeys: 10000,
  sessionFailuresBeforeDisconnect: 3,
};

// RFC 4954 4: "SHOULD NOT" drop before three failed attempts.
const MIN_SESSION_FAILURES = 3;

/** One failure: when, and the name it gave (null: no name, a malformed response). */
interface Failure {
  at: number;
  name: string | null;
}

/** Failure tracker; one instance per process, shared by all listeners. */
export class AuthThrottle {
  readonly #clock: Clock;
  readonly #opts: Required<AuthThrottleOptions>;
  readonly #maxStamps: number;
  // Insertion order doubles as recency order: touching a key re-inserts it at the end.
  readonly #ips = new Map<string, Failure[]>();
  readonly #pairs = new Map<string, Failure[]>();
  readonly #names = new Map<string, Failure[]>();

  /** Create a tracker reading time from `clock`. Throws `RangeError` on nonsensical options. */
  constructor(clock: Clock, options: AuthThrottleOptions = {}) {
    this.#clock = clock;
    const o = { ...DEFAULT_AUTH_THROTTLE_OPTIONS, ...options };
    for (const [name, value] of Object.entries(o)) {
      if (!Number.isFinite(value) || value < 0) {
        throw new RangeError(`Auth throttle option ${name} must be >= 0`);
      }
    }
    if (o.maxTrackedKeys < 1) throw new RangeError("Auth throttle option maxTrackedKeys must be >= 1");
    o.sessionFailuresBeforeDisconnect = Math.max(MIN_SESSION_FAILURES, o.sessionFailuresBeforeDisconnect);
    this.#opts = o;
    // Room for every limit, the delay cap, and verifications already under way when a limit was
    // reached (a few times the limit): nothing that counts is ever pushed out by newer failures.
    const stepsToCap = o.baseDelayMs > 0
      ? Math.ceil(Math.log2(Math.max(1, o.maxDelayMs / o.baseDelayMs))) + 1
      : 1;
    this.#maxStamps = Math.max(4 * o.maxFailuresPerIp, 4 * o.maxFailuresPerAccountIp, stepsToCap, 1);
  }

  /** Effective options (defaults filled in). */
  get options(): Readonly<Required<AuthThrottleOptions>> {
    return this.#opts;
  }

  /** Record a failed AUTH from `ip` that named the user `name` (undefined: no name could be read). */
  recordFailure(ip: string, name?: string): void {
    const failure: Failure = { at: this.#clock.now(), name: name || null };
    this.#push(this.#ips, addressKey(ip), failure);
    if (failure.name !== null) {
      this.#push(this.#pairs, pairKey(failure.name, ip), failure);
      this.#push(this.#names, failure.name, failure);
    }
  }

  /**
   * Record a successful AUTH as `name` from `ip`: forget that name's own failures from that IP (a
   * customer who mistyped once is not slowed later). Failures from the IP naming OTHER users keep
   * counting, and so does the name's counter from other IPs.
   */
  recordSuccess(ip: string, name: string): void {
    const ipKey = addressKey(ip);
    this.#pairs.delete(pairKey(name, ip));
    const rest = this.#live(this.#ips, ipKey)?.filter((f) => f.name !== name) ?? [];
    if (rest.length === 0) this.#ips.delete(ipKey);
    else this.#ips.set(ipKey, rest);
  }

  /** Failures from `ip` (its /64 for IPv6) within the window. */
  ipFailures(ip: string): number {
    return this.#count(this.#ips, addressKey(ip));
  }

  /** Failures naming `name` from anywhere within the window. */
  accountFailures(name: string): number {
    return this.#count(this.#names, name);
  }

  /** Failures naming `name` from `ip` within the window. */
  accountIpFailures(name: string, ip: string): number {
    return this.#count(this.#pairs, pairKey(name, ip));
  }

  /** True when `ip` has reached `maxFailuresPerIp`: refuse AUTH with `454 4.7.0`. */
  isBlocked(ip: string): boolean {
    const limit = this.#opts.maxFailuresPerIp;
    return limit > 0 && this.ipFailures(ip) >= limit;
  }

  /** True when `name` from `ip` has reached `maxFailuresPerAccountIp`: do not even check the secret. */
  isLocked(name: string, ip: string): boolean {
    const limit = this.#opts.maxFailuresPerAccountIp;
    return limit > 0 && this.accountIpFailures(name, ip) >= limit;
  }

  /**
   * How long to wait before verifying an AUTH response from `ip` naming `name`: 0 with no recent
   * failures, then `baseDelayMs`, doubling per failure up to `maxDelayMs`, using the larger of the IP's
   * and the name's counters.
   */
  delayMsFor(ip: string, name?: string): number {
    const n = Math.max(this.ipFailures(ip), name ? this.accountFailures(name) : 0);
    if (n === 0) return 0;
    // 2 ** 52 overflows nothing but is already far past any cap; clamp the exponent to stay exact.
    return Math.min(this.#opts.maxDelayMs, this.#opts.baseDelayMs * 2 ** Math.min(n - 1, 52));
  }

  /** True when a session with `sessionFailures` failed AUTHs should be closed with `421 4.7.0`. */
  shouldDisconnect(sessionFailures: number): boolean {
    return sessionFailures >= this.#opts.sessionFailuresBeforeDisconnect;
  }

  /** Drop every key whose failures have all expired. Optional: lookups prune lazily anyway. */
  prune(): void {
    const cutoff = this.#clock.now() - this.#opts.windowMs;
    for (const map of [this.#ips, this.#pairs, this.#names]) {
      for (const [key, stamps] of map) {
        if (stamps.length === 0 || stamps[stamps.length - 1]!.at <= cutoff) map.delete(key);
      }
    }
  }

  /** Number of keys with failures inside the window (for metrics and tests). */
  get size(): { ips: number; accounts: number; pairs: number } {
    this.prune();
    return { ips: this.#ips.size, accounts: this.#names.size, pairs: this.#pairs.size };
  }

  #push(map: Map<string, Failure[]>, key: string, failure: Failure): void {
    const stamps = this.#live(map, key) ?? [];
    stamps.push(failure);
    if (stamps.length > this.#maxStamps) stamps.splice(0, stamps.length - this.#maxStamps);
    map.delete(key);
    map.set(key, stamps);
    while (map.size > this.#opts.maxTrackedKeys) {
      const oldest = map.keys().next();
      if (oldest.done) break;
      map.delete(oldest.value);
    }
  }

  #count(map: Map<string, Failure[]>, key: string): number {
    return this.#live(map, key)?.length ?? 0;
  }

  // The key's failures still inside the window, dropping the key when none are left.
  #live(map: Map<string, Failure[]>, key: string): Failure[] | undefined {
    const stamps = map.get(key);
    if (stamps === undefined) return undefined;
    const cutoff = this.#clock.now() - this.#opts.windowMs;
    let drop = 0;
    while (drop < stamps.length && stamps[drop]!.at <= cutoff) drop++;
    if (drop > 0) stamps.splice(0, drop);
    if (stamps.length === 0) {
      map.delete(key);
      return undefined;
    }
    return stamps;
  }
}

// A username never contains NUL (usernames are printable ASCII), so the pair key is unambiguous.
function pairKey(name: string, ip: string): string {
  return `${name}\0${addressKey(ip)}`;
}
