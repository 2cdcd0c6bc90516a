/**
 * Every setting of the customer side (`odmr-relay pull`): its type, default and a one-line doc, in
 * the style of src/config/fields.ts. They live in the `[pull]` table of the same config file `serve`
 * reads (JSON: `"pull": {...}`), in `ODMR_RELAY_PULL_*` environment variables and in flags; this
 * table is the single source for the loader (src/customer/settings.ts), `pull --help`,
 * `check-config` and the README's customer section.
 *
 * The secret is not a setting: it comes from `passwordFile`, `--password-stdin` or
 * `ODMR_RELAY_PULL_SECRET`, never from a flag (a flag's value is visible to every user in `ps`).
 */
import { hostname as osHostname } from "node:os";
import { CONFIG_FIELDS, type Field, type HostPort, parseHostPort } from "./fields.ts";
import { formatDuration, MAX_TIMER_MS, parseDuration } from "./units.ts";

/** RFC 2645 4: the port set aside for ODMR, used when a provider is given without one. */
export const ODMR_PORT = 366;

/** The shortest `every`: short enough for tests, long enough not to spin. */
export const MIN_POLL_INTERVAL_MS = 1000;

function field<T>(kind: string, def: T, doc: string, parse: (raw: unknown) => T, format: (v: T) => string) {
  return { kind, default: def, doc, parse, format } satisfies Field<T>;
}

/** Splits a list given as a TOML/JSON array or as a comma-separated string. */
function listItems(raw: unknown): string[] {
  return (Array.isArray(raw) ? raw.map(String) : String(raw ?? "").split(","))
    .map((s) => s.trim()).filter((s) => s !== "");
}

/** "host", "host:port" or "[v6]:port"; a missing port is 366 (RFC 2645 4). */
export function parseProvider(raw: string): HostPort {
  const value = raw.trim();
  const bare = /^(?:[A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\])$/.test(value);
  return parseHostPort(bare ? `${value}:${ODMR_PORT}` : value);
}

/** Formats a host and port the way {@link parseProvider} reads it. */
export function formatHostPort(v: HostPort): string {
  return v.host.includes(":") ? `[${v.host}]:${v.port}` : `${v.host}:${v.port}`;
}

const hostPortList = (doc: string) =>
  field<HostPort[]>("list of host[:port]", [], doc, (raw) =>
    listItems(raw).map((item) => {
      try {
        return parseProvider(item);
      } catch (error) {
        throw new Error(`"${item}": ${(error as Error).message}`);
      }
    }), (v) => v.map(formatHostPort).join(","));

const hostPort = (def: string, doc: string) =>
  field<HostPort>("host:port", parseHostPort(def), doc, (raw) => parseHostPort(String(raw)), formatHostPort);

const text = (def: string, doc: string) =>
  field<string>("string", def, doc, (raw) => {
    if (typeof raw !== "string" || raw.trim() === "") throw new Error("must be a non-empty string");
    return raw.trim();
  }, (v) => v);

const optionalText = (doc: string) =>
  field<string | null>("string?", null, doc, (raw) => {
    if (raw === null || raw === "") return null;
    if (typeof raw !== "string") throw new Error("must be a string");
    return raw.trim();
  }, (v) => v ?? "(none)");

/** Domains for ATRN (RFC 2645 5.2.1: LDH labels, at least two, no spaces). */
const domainList = (doc: string) =>
  field<string[]>("list", [], doc, (raw) =>
    listItems(raw).map((d) => {
      if (
        !/^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$/.test(d)
      ) {
        throw new Error(`"${d}" is not a domain name (RFC 2645 5.2.1)`);
      }
      return d.toLowerCase();
    }), (v) => v.join(","));

const choice = <T extends string>(options: readonly T[], def: T, doc: string) =>
  field<T>(options.join("|"), def, doc, (raw) => {
    const value = String(raw).trim().toLowerCase();
    if (!(options as readonly string[]).includes(value)) {
      throw new Error(`must be one of ${options.join(", ")}`);
    }
    return value as T;
  }, (v) => v);

const yesNo = (def: boolean, doc: string) =>
  field<boolean>("boolean", def, doc, (raw) => {
    if (typeof raw === "boolean") return raw;
    const value = String(raw).trim().toLowerCase();
    if (["true", "yes", "on", "1"].includes(value)) return true;
    if (["false", "no", "off", "0"].includes(value)) return false;
    throw new Error("must be true or false");
  }, String);

function readDuration(raw: unknown, min: number): number {
  const value = parseDuration(raw as string | number);
  if (value === null) throw new Error('must be a duration such as "30s", "5m" or "1h"');
  if (value < min) throw new Error(`must be at least ${formatDuration(min)}`);
  // Timers clamp longer delays to 1 ms, which would turn a long wait into none at all.
  if (value > MAX_TIMER_MS) throw new Error("must be at most 24d (the longest timer)");
  return value;
}

const duration = (def: string, min: number, doc: string) =>
  field<number>("duration", parseDuration(def)!, doc, (raw) => readDuration(raw, min), formatDuration);

/** A duration, or "off"/"" for none. */
const optionalDuration = (min: number, doc: string) =>
  field<number | null>("duration|off", null, doc, (raw) => {
    if (raw === null || raw === "" || String(raw).trim().toLowerCase() === "off") return null;
    return readDuration(raw, min);
  }, (v) => (v === null ? "off" : formatDuration(v)));

const fraction = (def: number, doc: string) =>
  field<number>("0..1", def, doc, (raw) => {
    const value = typeof raw === "number" ? raw : Number(String(raw).trim());
    if (!Number.isFinite(value) || value < 0 || value > 1) throw new Error("must be a number from 0 to 1");
    return value;
  }, String);

/** The customer settings, in the order the README documents them. */
export const PULL_FIELDS = {
  // Who to poll and what to ask for
  server: hostPortList(
    "Providers to poll, HOST[:PORT] (port 366, RFC 2645 4), comma-separated; each in turn",
  ),
  user: optionalText("Account name at the provider (the same on every provider)"),
  domains: domainList("Domains to ask for in ATRN, comma-separated; empty: every domain of the account"),
  passwordFile: optionalText(
    "File holding the secret (mode 0600); or ODMR_RELAY_PULL_SECRET, or --password-stdin",
  ),
  helo: text(osHostname(), "Name this host gives in EHLO"),

  // TLS to the provider
  tls: choice(
    ["starttls", "implicit", "none"] as const,
    "starttls",
    "STARTTLS (RFC 3207), TLS from the first byte, or plaintext (CRAM-MD5 protects the secret only)",
  ),
  ca: optionalText("PEM file of CA certificates to trust for the provider (a private CA)"),
  insecure: yesNo(
    false,
    "Do not verify the provider's certificate (warns; anyone on the path can read the mail)",
  ),

  // The local mail server
  smtp: hostPort("127.0.0.1:25", "The local mail server that receives the mail"),

  // Timing
  connectTimeout: duration("30s", 1000, "Wait for a TCP connection to the provider or the local mail server"),
  // RFC 5321 4.5.3.2.6: the provider may wait 10 minutes for the reply to the final dot, so the
  // default silence allowed in the bridged session outlasts it.
  timeout: duration("15m", 1000, "Longest silence from the provider (replies, then the bridged session)"),
  every: optionalDuration(
    MIN_POLL_INTERVAL_MS,
    'Poll this often and keep running (daemon); "off": poll each provider once and exit',
  ),
  watch: yesNo(
    false,
    "Push: ask the provider (XWATCH) to keep the session open and send new mail at once; runs as a daemon",
  ),
  jitter: fraction(0.1, "Each wait is longer by up to this fraction of it, at random (spreads the polls)"),
  backoff: duration("30s", 1000, "Wait after a failed poll; doubles with each further failure in a row"),
  backoffMax: duration("15m", 1000, "Longest wait after failures in a row"),
  shutdownGrace: duration(
    "30s",
    0,
    "On SIGTERM/SIGINT, time a delivering session gets to finish before it is cut",
  ),

  // Logs
  logFormat: CONFIG_FIELDS.logFormat,
  logLevel: CONFIG_FIELDS.logLevel,
} as const;

type FieldValue<F> = F extends Field<infer T> ? T : never;

/** The customer settings, typed. */
export type PullConfig = { -readonly [K in keyof typeof PULL_FIELDS]: FieldValue<typeof PULL_FIELDS[K]> };

/** A customer setting's key. */
export type PullKey = keyof typeof PULL_FIELDS;

/** "passwordFile" -> "ODMR_RELAY_PULL_PASSWORD_FILE". */
export function pullEnvName(key: string): string {
  return `ODMR_RELAY_PULL_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** The environment variable that holds the secret itself (never a flag). */
export const PULL_SECRET_ENV = "ODMR_RELAY_PULL_SECRET";

/** A setting's default as `--help` and the README show it. */
export function describePullDefault(key: PullKey): string {
  if (key === "helo") return "(this machine's name)";
  const field = PULL_FIELDS[key];
  return (field.format as (v: unknown) => string)(field.default) || "(none)";
}

/** The defaults as a PullConfig. */
export function defaultPullConfig(): PullConfig {
  const out: Record<string, unknown> = {};
  for (const [key, f] of Object.entries(PULL_FIELDS)) out[key] = f.default;
  return out as PullConfig;
}
