/**
 * Authentication failure tracking: growing delays, per-IP blocks and per-(account, IP) locks. Pure and
 * clock-injected, so tests never sleep.
 *
 * The policy, and why (docs/security.md):
 * - **Per IP:** failures from one IP (an IPv6 /64) within the window count towards `maxFailuresPerIp`
 *   whatever else that IP does; at the limit AUTH from it answers `454 4.7.0`. A success clears only the
 *   successful account's own failures from that IP, so logging into one's own account between rounds of
 *   guesses does not reset the budget for guessing at others (password spraying).
 * - **Per (account, IP):** `maxFailuresPerAccountIp` failures against one EXISTING account from one IP
 *   lock that pair: the right secret from there gets the same `535 5.7.8` as a wrong one (no oracle).
 *   The owner connecting from any other address is not affected: nobody without the secret can lock a
 *   customer out of collecting mail (RFC 4954 4 only asks servers to slow guessing down).
 * - **Per account, from anywhere:** failures against one existing account make every further failed
 *   attempt on it wait longer (`baseDelayMs`, doubling, up to `maxDelayMs`), which slows a distributed
 *   guesser; it never refuses a correct secret.
 * - Accounts are identified by the caller with the canonical key of an account that EXISTS (its id or
 *   exact username). A name that matches no account counts only against the IP, so failures naming
 *   `DAVE` can never touch the real `dave`.
 *
 * How the server uses the verdicts:
 * - before answering a failed AUTH with `535 5.7.8`, wait {@link AuthThrottle.delayMsFor};
 * - {@link AuthThrottle.isBlocked} at AUTH time: `454 4.7.0`;
 * - {@link AuthThrottle.isLocked} for a verified secret: the same `535 5.7.8` as a wrong secret;
 * - {@link AuthThrottle.shouldDisconnect} with the session's failure count: `421 4.7.0` and close;
 *   RFC 4954 4 says not before 3 failures, which the option enforces.
 *
 * Windows are sliding: each failure's timestamp counts until `windowMs` after it happened. Memory is
 * bounded: at most `maxTrackedKeys` keys in each map, least recently touched evicted first, and at most a
 * fixed number of timestamps per key.
 *
 * @module
 */

import type { Clock } from "../../clock.ts";

/** Tunables; every field has a default. */
export interface AuthThrottleOptions {
  /** Sliding window in which failures count, in ms (default 15 min). */
  readonly windowMs?: number;
  /** Failures from one IP (or IPv6 /64) within the window that block it (default 10). */
  readonly maxFailuresPerIp?: number;
  /** Failures against one account from one IP within the window that lock that pair (default 5). */
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

/**
 * Reduce an address to the unit an attacker controls: IPv4 as is (IPv4-mapped IPv6 unwrapped), IPv6 to its
 * /64 prefix, because one host usually owns a whole /64 and could otherwise rotate addresses freely.
 * Anything unparseable is returned lower-cased, unchanged.
 */
export function throttleKeyForIp(ip: string): string {
  let addr = ip.trim().toLowerCase();
  if (addr.startsWith("[") && addr.endsWith("]")) addr = addr.slice(1, -1);
  const zone = addr.indexOf("%");
  if (zone >= 0) addr = addr.slice(0, zone);
  if (!addr.includes(":")) return addr;
  const mapped = /^(?:0{0,4}:){0,4}:?(?:0{0,4}:)?ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(addr);
  if (mapped) return mapped[1]!;
  const halves = addr.split("::");
  if (halves.length > 2) return addr;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return addr;
  const groups = [...head, ...new Array<string>(missing).fill("0"), ...tail];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return addr;
  return groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":") + "::/64";
}

/** One failure: when, and against which existing account (null: no such account or none named). */
interface Failure {
  at: number;
  account: string | null;
}

/** Failure tracker; one instance per process, shared by all listeners. */
export class AuthThrottle {
  readonly #clock: Clock;
  readonly #opts: Required<AuthThrottleOptions>;
  readonly #maxStamps: number;
  // Insertion order doubles as recency order: touching a key re-inserts it at the end.
  readonly #ips = new Map<string, Failure[]>();
  readonly #pairs = new Map<string, Failure[]>();
  readonly #accounts = new Map<string, Failure[]>();

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
    // Enough timestamps to reach every limit and the delay cap; more would never change a verdict.
    const stepsToCap = o.baseDelayMs > 0
      ? Math.ceil(Math.log2(Math.max(1, o.maxDelayMs / o.baseDelayMs))) + 1
      : 1;
    this.#maxStamps = Math.max(o.maxFailuresPerIp, o.maxFailuresPerAccountIp, stepsToCap, 1);
  }

  /** Effective options (defaults filled in). */
  get options(): Readonly<Required<AuthThrottleOptions>> {
    return this.#opts;
  }

  /**
   * Record a failed AUTH from `ip`. `account` is the key of an EXISTING account the client named
   * (undefined when the name matched none): only then does the failure count against that account.
   */
  recordFailure(ip: string, account?: string): void {
    const now = this.#clock.now();
    const failure: Failure = { at: now, account: account || null };
    this.#push(this.#ips, throttleKeyForIp(ip), failure);
    if (failure.account !== null) {
      this.#push(this.#pairs, pairKey(failure.account, ip), failure);
      this.#push(this.#accounts, failure.account, failure);
    }
  }

  /**
   * Record a successful AUTH for `account` from `ip`: forget that account's own failures from that IP (a
   * customer who mistyped once is not slowed later). Failures from the IP against OTHER accounts keep
   * counting, and so does the account's counter from other IPs.
   */
  recordSuccess(ip: string, account: string): void {
    const ipKey = throttleKeyForIp(ip);
    this.#pairs.delete(pairKey(account, ip));
    const rest = this.#live(this.#ips, ipKey)?.filter((f) => f.account !== account) ?? [];
    if (rest.length === 0) this.#ips.delete(ipKey);
    else this.#ips.set(ipKey, rest);
  }

  /** Failures from `ip` (its /64 for IPv6) within the window. */
  ipFailures(ip: string): number {
    return this.#count(this.#ips, throttleKeyForIp(ip));
  }

  /** Failures against `account` from anywhere within the window. */
  accountFailures(account: string): number {
    return this.#count(this.#accounts, account);
  }

  /** Failures against `account` from `ip` within the window. */
  accountIpFailures(account: string, ip: string): number {
    return this.#count(this.#pairs, pairKey(account, ip));
  }

  /** True when `ip` has reached `maxFailuresPerIp`: refuse AUTH with `454 4.7.0`. */
  isBlocked(ip: string): boolean {
    const limit = this.#opts.maxFailuresPerIp;
    return limit > 0 && this.ipFailures(ip) >= limit;
  }

  /** True when `account` from `ip` has reached `maxFailuresPerAccountIp`: refuse even a correct secret. */
  isLocked(account: string, ip: string): boolean {
    const limit = this.#opts.maxFailuresPerAccountIp;
    return limit > 0 && this.accountIpFailures(account, ip) >= limit;
  }

  /**
   * How long to wait before answering a failed AUTH from `ip` (for the existing `account`): 0 with no
   * recent failures, then `baseDelayMs`, doubling per failure up to `maxDelayMs`, using the larger of the
   * IP's and the account's counters.
   */
  delayMsFor(ip: string, account?: string): number {
    const n = Math.max(this.ipFailures(ip), account ? this.accountFailures(account) : 0);
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
    for (const map of [this.#ips, this.#pairs, this.#accounts]) {
      for (const [key, stamps] of map) {
        if (stamps.length === 0 || stamps[stamps.length - 1]!.at <= cutoff) map.delete(key);
      }
    }
  }

  /** Number of keys with failures inside the window (for metrics and tests). */
  get size(): { ips: number; accounts: number; pairs: number } {
    this.prune();
    return { ips: this.#ips.size, accounts: this.#accounts.size, pairs: this.#pairs.size };
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

// An account key never contains NUL (usernames are printable ASCII), so the pair key is unambiguous.
function pairKey(account: string, ip: string): string {
  return `${account}\0${throttleKeyForIp(ip)}`;
}
