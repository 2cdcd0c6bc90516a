/**
 * Where to deliver mail for a domain (RFC 5321 5.1), with `node:dns` `promises.Resolver`.
 *
 * - An address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`) goes direct, without DNS (RFC 5321 5.1).
 * - MX records are sorted by preference, equal preferences in random order (RFC 5321 5.1); then each
 *   MX host's A and AAAA records are looked up (IPv4 addresses first, then IPv6).
 * - No MX records: the domain itself is the one host, at preference 0 ("implicit MX", RFC 5321 5.1).
 * - A null MX (`0 .`, RFC 7505 3) means the domain accepts no mail: a permanent failure, and no
 *   implicit-MX fallback (RFC 7505 4.1).
 * - "Not found" is permanent only once the address lookups say so too; anything else that fails
 *   (SERVFAIL, REFUSED, timeout, no DNS server reachable) is temporary.
 *
 * Runtimes (measured with Deno 2.9 and Bun 1.4): both report "the domain exists but has no MX"
 * (NOERROR/NODATA) as `ENOTFOUND`, exactly like NXDOMAIN, so an `ENOTFOUND` for MX always leads to the
 * A/AAAA lookups. Bun reports SERVFAIL and REFUSED as `ESERVFAIL`/`EREFUSED`; Deno reports them as
 * `ENOTFOUND` too, so on Deno a broken authoritative server is indistinguishable from a missing
 * domain (permanent). Bun also rounds the per-try `timeout` up to about one second. Every lookup is
 * therefore additionally bounded by one overall deadline of our own.
 *
 * Every result `reason` starts with an RFC 3463 enhanced status code, like the texts in src/client/.
 *
 * @module
 */

import { runtimeInfo } from "../runtime/runtime.ts";
import { promises as dnsPromises } from "node:dns";
import { domainToASCII } from "node:url";
import { isIpv4Address, isIpv6Address, isValidDomain } from "../smtp/domain.ts";

/** Per-try DNS timeout in milliseconds (the `Resolver` option `timeout`). */
export const DEFAULT_DNS_TIMEOUT_MS = 5000;
/** Tries per query and server (the `Resolver` option `tries`). */
export const DEFAULT_DNS_TRIES = 2;
/** Longest time one whole resolution (MX, then every host's A/AAAA) may take, in milliseconds. */
export const DEFAULT_DNS_DEADLINE_MS = 30_000;
/** MX hosts kept, best preference first (a domain with hundreds of MX records is not tried in full). */
export const DEFAULT_MAX_MX_HOSTS = 10;
/** Addresses kept per host. */
export const DEFAULT_MAX_ADDRESSES_PER_HOST = 8;

/** Error codes that mean "no such record" rather than "could not find out" (c-ares names). */
const NOT_FOUND_CODES = new Set(["ENOTFOUND", "ENODATA"]);

/** One host to try: its name, its addresses (IPv4 first) and its MX preference (0 for implicit MX). */
export interface MxHost {
  /** The MX exchange (or the domain itself, or the address literal), lower-case, no trailing dot. */
  name: string;
  /** IP addresses to connect to, in order. */
  addresses: string[];
  /** MX preference; lower is tried first. */
  preference: number;
}

/** Where to deliver, or why not. */
export type MxResult =
  /** Hosts in the order to try them (never empty). */
  | { kind: "hosts"; hosts: MxHost[] }
  /** Try again later: the DNS could not answer (SERVFAIL, timeout, refused). */
  | { kind: "temporary"; reason: string }
  /** Give up: no such domain, a null MX (`nullMx`), or no MX host has an address. */
  | { kind: "permanent"; reason: string; nullMx: boolean };

/** Options of {@linkcode resolveMx}. */
export interface MxResolverOptions {
  /**
   * "Not found" may also mean a failing DNS server, so it is temporary, not permanent. Default: true on
   * Deno, whose resolver reports SERVFAIL and REFUSED as ENOTFOUND like NXDOMAIN (measured).
   */
  notFoundIsAmbiguous?: boolean;
  /**
   * DNS servers to ask instead of the system's, as `Resolver.setServers()` takes them: `"192.0.2.53"`,
   * `"127.0.0.1:5353"`, `"[2001:db8::53]:53"`. Tests point this at a loopback fake server.
   */
  dnsServers?: readonly string[];
  /** Per-try timeout in milliseconds. Default 5000. */
  timeoutMs?: number;
  /** Tries per query. Default 2. */
  tries?: number;
  /** Deadline for the whole resolution in milliseconds. Default 30 s. */
  deadlineMs?: number;
  /** MX hosts kept. Default 10. */
  maxMxHosts?: number;
  /** Addresses kept per host. Default 8. */
  maxAddressesPerHost?: number;
  /** Random numbers in [0, 1) for ordering equal preferences. Default `Math.random`. */
  random?: () => number;
}

/** The outcome of one DNS query. */
type Lookup<T> =
  | { ok: true; records: T[] }
  | { ok: false; notFound: boolean; detail: string };

/** The addresses of one name, or why there are none. */
type Addresses = { ok: true; addresses: string[] } | { ok: false; notFound: boolean; detail: string };

/**
 * Resolves where mail for `domain` goes (RFC 5321 5.1). Never throws for anything the DNS does; every
 * wait is bounded by `deadlineMs`.
 */
export async function resolveMx(domain: string, options: MxResolverOptions = {}): Promise<MxResult> {
  const literal = addressLiteralHost(domain);
  if (literal !== undefined) return literal;
  const name = toLookupName(domain);
  if (name === null) {
    return permanent(`5.1.2 Invalid domain name ${JSON.stringify(domain)}`);
  }

  const resolver = new dnsPromises.Resolver({
    timeout: options.timeoutMs ?? DEFAULT_DNS_TIMEOUT_MS,
    tries: options.tries ?? DEFAULT_DNS_TRIES,
  });
  if (options.dnsServers !== undefined && options.dnsServers.length > 0) {
    resolver.setServers([...options.dnsServers]);
  }
  const deadlineMs = options.deadlineMs ?? DEFAULT_DNS_DEADLINE_MS;
  const deadline = new Deadline(deadlineMs, () => resolver.cancel());
  try {
    const result = await resolveWith(resolver, deadline, name, options);
    if (deadline.expired) {
      return temporary(`4.4.3 DNS lookups for ${name} took longer than ${deadlineMs} ms`);
    }
    return result;
  } finally {
    deadline.clear();
  }
}

async function resolveWith(
  resolver: dnsPromises.Resolver,
  deadline: Deadline,
  domain: string,
  options: MxResolverOptions,
): Promise<MxResult> {
  const maxAddresses = options.maxAddressesPerHost ?? DEFAULT_MAX_ADDRESSES_PER_HOST;
  const mx = await query(deadline, () => resolver.resolveMx(domain));

  if (!mx.ok && !mx.notFound) {
    return temporary(`4.4.3 MX lookup for ${domain} failed: ${mx.detail}`);
  }
  if (!mx.ok || mx.records.length === 0) {
    // RFC 5321 5.1: no MX records -> the domain itself is the only host ("implicit MX"). Deno and Bun
    // also say ENOTFOUND for NXDOMAIN, so only the address lookups can tell a missing domain apart.
    const own = await addressesOf(resolver, deadline, domain, maxAddresses);
    if (own.ok) return { kind: "hosts", hosts: [{ name: domain, addresses: own.addresses, preference: 0 }] };
    if (own.notFound) {
      // Deno reports SERVFAIL and REFUSED as ENOTFOUND too, so there "not found" may be a broken
      // resolver: retry (dsnLifetime ends it) rather than give up on a DSN that could still go out.
      if (options.notFoundIsAmbiguous ?? runtimeInfo().name === "deno") {
        return temporary(`4.4.3 Domain ${domain}: no MX and no address records found (or DNS failing)`);
      }
      return permanent(`5.4.4 Domain ${domain} has no MX and no address records`);
    }
    return temporary(`4.4.3 Address lookup for ${domain} failed: ${own.detail}`);
  }

  // RFC 7505 3 and 4.1: a null MX (exchange ".", which resolvers return as "") means "no mail at all";
  // it must not fall back to the implicit MX. A null MX among other records is treated the same way.
  if (mx.records.some((r) => normalizeName(r.exchange) === "")) {
    return permanent(`5.1.10 Domain ${domain} accepts no mail (null MX, RFC 7505)`, true);
  }

  const exchanges = orderMx(mx.records, options.random ?? Math.random)
    .slice(0, options.maxMxHosts ?? DEFAULT_MAX_MX_HOSTS);
  const looked = await Promise.all(
    exchanges.map(async (r) => ({
      ...r,
      found: await addressesOf(resolver, deadline, r.name, maxAddresses),
    })),
  );
  const hosts: MxHost[] = [];
  let trouble: string | null = null; // the first lookup that could not get an answer
  for (const h of looked) {
    if (h.found.ok) hosts.push({ name: h.name, addresses: h.found.addresses, preference: h.preference });
    else if (!h.found.notFound) trouble ??= `${h.name}: ${h.found.detail}`;
  }
  if (hosts.length > 0) return { kind: "hosts", hosts };
  // RFC 5321 5.1: MX records exist but none is usable; that is an error, never an implicit-MX fallback.
  if (trouble !== null) {
    return temporary(`4.4.3 Address lookup for the MX hosts of ${domain} failed: ${trouble}`);
  }
  if (options.notFoundIsAmbiguous ?? runtimeInfo().name === "deno") {
    return temporary(`4.4.3 No address found for the MX hosts of ${domain} (or DNS failing)`);
  }
  return permanent(`5.4.4 No MX host of ${domain} has an address record`);
}

/**
 * RFC 5321 5.1: ascending preference; records of equal preference in random order ("the sender-SMTP
 * MUST randomize them to spread the load"). Duplicate exchanges are kept once, at their best preference.
 */
export function orderMx(
  records: readonly { exchange: string; priority: number }[],
  random: () => number,
): { name: string; preference: number }[] {
  const keyed = records.map((r) => ({
    name: normalizeName(r.exchange),
    preference: r.priority,
    key: random(),
  }));
  keyed.sort((a, b) => a.preference - b.preference || a.key - b.key);
  const seen = new Set<string>();
  const out: { name: string; preference: number }[] = [];
  for (const r of keyed) {
    if (seen.has(r.name)) continue;
    seen.add(r.name);
    out.push({ name: r.name, preference: r.preference });
  }
  return out;
}

/** A and AAAA of one name, asked together; IPv4 first. Found if either has records. */
async function addressesOf(
  resolver: dnsPromises.Resolver,
  deadline: Deadline,
  name: string,
  max: number,
): Promise<Addresses> {
  const [v4, v6] = await Promise.all([
    query(deadline, () => resolver.resolve4(name)),
    query(deadline, () => resolver.resolve6(name)),
  ]);
  const addresses = [...(v4.ok ? v4.records : []), ...(v6.ok ? v6.records : [])];
  if (addresses.length > 0) return { ok: true, addresses: [...new Set(addresses)].slice(0, max) };
  const failures = [v4, v6].filter((l): l is Extract<Lookup<string>, { ok: false }> => !l.ok);
  const hard = failures.find((f) => !f.notFound);
  if (hard !== undefined) return { ok: false, notFound: false, detail: hard.detail };
  return { ok: false, notFound: true, detail: "no A or AAAA records" };
}

/** Runs one query within the deadline and classifies its error. */
async function query<T>(deadline: Deadline, ask: () => Promise<T[]>): Promise<Lookup<T>> {
  if (deadline.expired) return { ok: false, notFound: false, detail: "deadline reached" };
  try {
    return { ok: true, records: await deadline.race(ask()) };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const text = typeof code === "string" ? code : err instanceof Error ? err.message : String(err);
    return { ok: false, notFound: typeof code === "string" && NOT_FOUND_CODES.has(code), detail: text };
  }
}

/** One overall time limit: pending lookups lose the race once it expires (and the resolver is cancelled). */
class Deadline {
  expired = false;
  readonly #timer: ReturnType<typeof setTimeout>;
  readonly #expiry: Promise<never>;

  constructor(ms: number, onExpire: () => void) {
    let fire!: (err: Error) => void;
    this.#expiry = new Promise<never>((_, reject) => (fire = reject));
    this.#expiry.catch(() => {});
    this.#timer = setTimeout(() => {
      this.expired = true;
      fire(Object.assign(new Error("deadline reached"), { code: "ETIMEOUT" }));
      onExpire();
    }, ms);
  }

  race<T>(promise: Promise<T>): Promise<T> {
    promise.catch(() => {}); // a lookup settling after the deadline must not be unhandled
    return Promise.race([promise, this.#expiry]);
  }

  clear(): void {
    clearTimeout(this.#timer);
  }
}

/** `[192.0.2.1]` / `[IPv6:2001:db8::1]` as a single host (RFC 5321 4.1.3, 5.1), other literals refused. */
function addressLiteralHost(domain: string): MxResult | undefined {
  if (!domain.startsWith("[") || !domain.endsWith("]")) return undefined;
  const inner = domain.slice(1, -1);
  let address: string | undefined;
  if (isIpv4Address(inner)) address = inner;
  else if (/^ipv6:/i.test(inner) && isIpv6Address(inner.slice(5))) address = inner.slice(5);
  if (address === undefined) {
    return permanent(`5.1.2 Unsupported address literal ${domain}`);
  }
  return { kind: "hosts", hosts: [{ name: domain, addresses: [address], preference: 0 }] };
}

/** The ASCII (A-label, RFC 5890) form to look up, or `null` when the name is not a valid domain. */
function toLookupName(domain: string): string | null {
  const trimmed = normalizeName(domain);
  // deno-lint-ignore no-control-regex
  const ascii = /^[\x00-\x7f]*$/.test(trimmed) ? trimmed : domainToASCII(trimmed);
  return ascii !== "" && isValidDomain(ascii) ? ascii : null;
}

function permanent(reason: string, nullMx = false): MxResult {
  return { kind: "permanent", reason, nullMx };
}

function temporary(reason: string): MxResult {
  return { kind: "temporary", reason };
}

function normalizeName(name: string): string {
  return (name.endsWith(".") ? name.slice(0, -1) : name).toLowerCase();
}
