/**
 * Authentication failure tracking: growing delays, per-IP blocks and per-account locks (PROTOCOL.md 7
 * item 14, 4.5). Pure and clock-injected, so tests never sleep.
 *
 * How the server is expected to use the verdicts:
 * - before answering a failed AUTH with `535 5.7.8`, wait {@link AuthThrottle.delayMsFor};
 * - {@link AuthThrottle.isBlocked} at AUTH time → `454 4.7.0` (temporary; or `421 4.7.0` and close);
 * - {@link AuthThrottle.isAccountLocked} → the same `535 5.7.8` as a wrong secret, so a locked account is
 *   not distinguishable from a bad guess (or `454 4.7.0` if the operator prefers to tell);
 * - {@link AuthThrottle.shouldDisconnect} with the session's failure count → `421 4.7.0` and close; RFC 4954
 *   4 says not before 3 failures, which the option enforces.
 *
 * Windows are sliding: each failure's timestamp is kept and counts until `windowMs` after it happened.
 * Memory is bounded: at most `maxTrackedKeys` IPs and as many accounts, least recently touched evicted
 * first, and at most a fixed number of timestamps per key.
 *
 * @module
 */

/** A source of time in milliseconds (e.g. `{ now: () => Date.now() }`; tests use a fake). */
export interface Clock {
  /** Current time in milliseconds. */
  now(): number;
}

/** Tunables; every field has a default. */
export interface AuthThrottleOptions {
  /** Sliding window in which failures count, in ms (default 15 min). */
  readonly windowMs?: number;
  /** Failures from one IP (or IPv6 /64) within the window that block it (default 10). */
  readonly maxFailuresPerIp?: number;
  /** Failures against one account within the window that lock it, from any IP (default 20). */
  readonly maxFailuresPerAccount?: number;
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
  maxFailuresPerAccount: 20,
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

/** Failure tracker; one instance per process, shared by all listeners. */
export class AuthThrottle {
  readonly #clock: Clock;
  readonly #opts: Required<AuthThrottleOptions>;
  readonly #maxStamps: number;
  // Insertion order doubles as recency order: touching a key re-inserts it at the end.
  readonly #ips = new Map<string, number[]>();
  readonly #accounts = new Map<string, number[]>();

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
    this.#maxStamps = Math.max(o.maxFailuresPerIp, o.maxFailuresPerAccount, stepsToCap, 1);
  }

  /** Effective options (defaults filled in). */
  get options(): Readonly<Required<AuthThrottleOptions>> {
    return this.#opts;
  }

  /** Record a failed AUTH from `ip`, against `account` when the client named one. */
  recordFailure(ip: string, account?: string): void {
    const now = this.#clock.now();
    this.#push(this.#ips, throttleKeyForIp(ip), now);
    if (account !== undefined && account !== "") this.#push(this.#accounts, accountKey(account), now);
  }

  /**
   * Record a successful AUTH: forget the IP's failures (a customer who mistyped once is not slowed
   * later). The account's counter is kept: an owner's login must not reset a distributed guesser's budget.
   */
  recordSuccess(ip: string): void {
    this.#ips.delete(throttleKeyForIp(ip));
  }

  /** Failures from `ip` (its /64 for IPv6) within the window. */
  ipFailures(ip: string): number {
    return this.#count(this.#ips, throttleKeyForIp(ip));
  }

  /** Failures against `account` within the window. */
  accountFailures(account: string): number {
    return this.#count(this.#accounts, accountKey(account));
  }

  /** True when `ip` has reached `maxFailuresPerIp`: refuse AUTH with `454 4.7.0` (or `421 4.7.0`). */
  isBlocked(ip: string): boolean {
    const limit = this.#opts.maxFailuresPerIp;
    return limit > 0 && this.ipFailures(ip) >= limit;
  }

  /** True when `account` has reached `maxFailuresPerAccount`: refuse even a correct secret for now. */
  isAccountLocked(account: string): boolean {
    const limit = this.#opts.maxFailuresPerAccount;
    return limit > 0 && this.accountFailures(account) >= limit;
  }

  /**
   * How long to wait before answering an AUTH from `ip` (for `account`): 0 with no recent failures, then
   * `baseDelayMs`, doubling per failure up to `maxDelayMs`, using the larger of the two counters.
   */
  delayMsFor(ip: string, account?: string): number {
    const n = Math.max(
      this.ipFailures(ip),
      account === undefined || account === "" ? 0 : this.accountFailures(account),
    );
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
    for (const map of [this.#ips, this.#accounts]) {
      for (const [key, stamps] of map) {
        if (stamps.length === 0 || stamps[stamps.length - 1]! <= cutoff) map.delete(key);
      }
    }
  }

  /** Number of IP and account keys currently held (for metrics and tests). */
  get size(): { ips: number; accounts: number } {
    return { ips: this.#ips.size, accounts: this.#accounts.size };
  }

  #push(map: Map<string, number[]>, key: string, now: number): void {
    const stamps = this.#live(map, key) ?? [];
    stamps.push(now);
    if (stamps.length > this.#maxStamps) stamps.splice(0, stamps.length - this.#maxStamps);
    map.delete(key);
    map.set(key, stamps);
    while (map.size > this.#opts.maxTrackedKeys) {
      const oldest = map.keys().next();
      if (oldest.done) break;
      map.delete(oldest.value);
    }
  }

  #count(map: Map<string, number[]>, key: string): number {
    return this.#live(map, key)?.length ?? 0;
  }

  // The key's timestamps still inside the window, dropping the key when none are left.
  #live(map: Map<string, number[]>, key: string): number[] | undefined {
    const stamps = map.get(key);
    if (stamps === undefined) return undefined;
    const cutoff = this.#clock.now() - this.#opts.windowMs;
    let drop = 0;
    while (drop < stamps.length && stamps[drop]! <= cutoff) drop++;
    if (drop > 0) stamps.splice(0, drop);
    if (stamps.length === 0) {
      map.delete(key);
      return undefined;
    }
    return stamps;
  }
}

// Usernames may be looked up case-insensitively by the account store; counting them the same way stops a
// guesser from dodging the per-account limit by varying case.
function accountKey(account: string): string {
  return account.toLowerCase();
}
