/**
 * Every configuration field: its type, default and a one-line doc. This table is the single source
 * for the typed `Config`, the file/env/flag readers, `check-config` and the README reference.
 *
 * Defaults are safe for a first run (unprivileged ports, data under ./data). A production MX sets
 * `smtpListen = "0.0.0.0:25"` and `odmrListen = "0.0.0.0:366"` (RFC 2645 4: port 366).
 */
import { hostname as osHostname } from "node:os";
import { isPostgresUrl, redactUrl } from "./database_url.ts";
import { formatDuration, formatSize, MAX_TIMER_MS, parseDuration, parseSize } from "./units.ts";

/** A host and port to listen on. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Describes one field: how to read it, its default, and what it is for. */
export interface Field<T> {
  readonly kind: string;
  readonly default: T;
  readonly doc: string;
  /** Turns a raw value (file, env or flag) into T, or throws an Error saying why not. */
  parse(raw: unknown): T;
  /** Writes a value the way a user would type it. */
  format(value: T): string;
}

function text(def: string, doc: string): Field<string> {
  return {
    kind: "string",
    default: def,
    doc,
    parse: (raw) => {
      if (typeof raw !== "string" || raw.trim() === "") throw new Error("must be a non-empty string");
      return raw.trim();
    },
    format: (v) => v,
  };
}

function optionalText(doc: string): Field<string | null> {
  return {
    kind: "string?",
    default: null,
    doc,
    parse: (raw) => {
      if (raw === null || raw === "") return null;
      if (typeof raw !== "string") throw new Error("must be a string");
      return raw;
    },
    format: (v) => v ?? "(none)",
  };
}

/** A secret: at least 16 printable characters without spaces. Never a flag (see SECRET_FIELDS). */
function secretToken(doc: string): Field<string | null> {
  return {
    kind: "secret",
    default: null,
    doc,
    parse: (raw) => {
      if (raw === null || raw === "") return null;
      if (typeof raw !== "string" || !/^[\x21-\x7e]{16,}$/.test(raw)) {
        throw new Error("must be at least 16 printable characters without spaces");
      }
      return raw;
    },
    format: (v) => (v === null ? "(none)" : "(set)"),
  };
}

/** A password for another server: any non-empty text, shown only as "(set)". Never a flag (see SECRET_FIELDS). */
function secretText(doc: string): Field<string | null> {
  return { ...optionalText(doc), kind: "secret", format: (v) => (v === null ? "(none)" : "(set)") };
}

/**
 * Where the queue lives: empty for the embedded SQLite in dataDir, or a `postgres://` URL. The URL may
 * carry a password, so it is shown with the password masked.
 */
function databaseUrl(doc: string): Field<string | null> {
  return {
    kind: "url?",
    default: null,
    doc,
    parse: (raw) => {
      if (raw === null || raw === "") return null;
      if (typeof raw !== "string") throw new Error("must be a postgres:// URL or empty");
      const url = raw.trim();
      if (!isPostgresUrl(url)) throw new Error("must be a postgres:// URL, or empty for SQLite in dataDir");
      try {
        new URL(url);
      } catch {
        throw new Error("is not a valid URL (percent-encode special characters of the password)");
      }
      return url;
    },
    format: (v) => (v === null ? "(SQLite in dataDir)" : redactUrl(v)),
  };
}

/** Fields that are never command-line flags: a flag's value is visible to every user in `ps`. */
export const SECRET_FIELDS: ReadonlySet<string> = new Set(["httpToken", "smarthostPassword"]);

function choice<T extends string>(options: readonly T[], def: T, doc: string): Field<T> {
  return {
    kind: options.join("|"),
    default: def,
    doc,
    parse: (raw) => {
      const value = String(raw).trim().toLowerCase();
      if (!(options as readonly string[]).includes(value)) {
        throw new Error(`must be one of ${options.join(", ")}`);
      }
      return value as T;
    },
    format: (v) => v,
  };
}

function flag(def: boolean, doc: string): Field<boolean> {
  return {
    kind: "boolean",
    default: def,
    doc,
    parse: (raw) => {
      if (typeof raw === "boolean") return raw;
      const value = String(raw).trim().toLowerCase();
      if (["true", "yes", "on", "1"].includes(value)) return true;
      if (["false", "no", "off", "0"].includes(value)) return false;
      throw new Error("must be true or false");
    },
    format: (v) => String(v),
  };
}

function count(def: number, min: number, doc: string, why = ""): Field<number> {
  return {
    kind: "integer",
    default: def,
    doc,
    parse: (raw) => {
      const value = typeof raw === "number" ? raw : Number(String(raw).trim());
      if (!Number.isSafeInteger(value)) throw new Error("must be a whole number");
      if (value < min) throw new Error(`must be at least ${min}${why ? ` (${why})` : ""}`);
      return value;
    },
    format: (v) => String(v),
  };
}

function duration(def: string, min: number, doc: string, why = "", allowLong = false): Field<number> {
  return {
    kind: "duration",
    default: parseDuration(def)!,
    doc,
    parse: (raw) => {
      const value = parseDuration(raw as string | number);
      if (value === null) throw new Error('must be a duration such as "90s", "5m", "4h" or "5d"');
      if (value < min) throw new Error(`must be at least ${formatDuration(min)}${why ? ` (${why})` : ""}`);
      // Timers clamp longer delays to 1 ms, which would turn a long timeout into none at all.
      if (value > MAX_TIMER_MS && !allowLong) throw new Error("must be at most 24d (the longest timer)");
      return value;
    },
    format: formatDuration,
  };
}

function size(def: string, min: number, doc: string, why = ""): Field<number> {
  return {
    kind: "size",
    default: parseSize(def)!,
    doc,
    parse: (raw) => {
      const value = parseSize(raw as string | number);
      if (value === null) throw new Error('must be a size such as "64MiB", "512KiB" or a number of bytes');
      if (value < min) throw new Error(`must be at least ${min} bytes${why ? ` (${why})` : ""}`);
      return value;
    },
    format: formatSize,
  };
}

/** A host to connect to: `HOST:PORT` or `[v6]:PORT`; the port is required. */
export interface HostPort {
  host: string;
  port: number;
}

/** Parses "host:port" or "[v6]:port" (a name or an address; the port is required). */
export function parseHostPort(raw: string): HostPort {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(raw.trim());
  if (!match) throw new Error('must be "host:port" or "[ipv6]:port"');
  const port = Number(match[3]);
  if (port < 1 || port > 65535) throw new Error("port must be 1-65535");
  return { host: match[1] ?? match[2]!, port };
}

function hostPort(doc: string): Field<HostPort | null> {
  return {
    kind: "host:port?",
    default: null,
    doc,
    parse: (raw) => (raw === null || raw === "" ? null : parseHostPort(String(raw))),
    format: (
      v,
    ) => (v === null ? "(none)" : v.host.includes(":") ? `[${v.host}]:${v.port}` : `${v.host}:${v.port}`),
  };
}

/** A comma-separated list of DNS servers: `IP` or `IP:PORT` (`[v6]:PORT`). Empty: the system's. */
function dnsServerList(doc: string): Field<string[]> {
  return {
    kind: "list",
    default: [],
    doc,
    parse: (raw) => {
      const items = (Array.isArray(raw) ? raw.map(String) : String(raw ?? "").split(","))
        .map((s) => s.trim()).filter((s) => s !== "");
      for (const item of items) {
        if (
          !/^(?:\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?|\[[0-9a-fA-F:.]+\](?::\d{1,5})?|[0-9a-fA-F:]+)$/.test(
            item,
          )
        ) {
          throw new Error(`"${item}" is not an IP address, IP:PORT or [IPv6]:PORT`);
        }
      }
      return items;
    },
    format: (v) => v.join(","),
  };
}

/** A comma-separated list of durations, in increasing order (a schedule); empty turns it off. */
function durationList(def: string, doc: string): Field<number[]> {
  const parse = (raw: unknown): number[] => {
    const items = (Array.isArray(raw) ? raw.map(String) : String(raw ?? "").split(","))
      .map((s) => s.trim()).filter((s) => s !== "");
    const values = items.map((item) => {
      const value = parseDuration(item);
      if (value === null || value < MINUTE) throw new Error(`"${item}" is not a duration of at least 1m`);
      return value;
    });
    if (values.some((v, i) => i > 0 && v <= values[i - 1]!)) throw new Error("must be in increasing order");
    return values;
  };
  return {
    kind: "durations",
    default: parse(def),
    doc,
    parse,
    format: (v) => v.map(formatDuration).join(","),
  };
}

/** Parses "host:port", "[v6]:port" or ":port" (all IPv4 interfaces); "off" or "" disables. */
export function parseListen(raw: string): ListenAddress | null {
  const value = raw.trim();
  if (value === "" || value.toLowerCase() === "off") return null;
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(value);
  if (!match) throw new Error('must be "host:port", "[ipv6]:port", ":port" or "off"');
  const port = Number(match[3]);
  if (port > 65535) throw new Error("port must be 0-65535");
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

/** Formats a listen address the way parseListen reads it. */
export function formatListen(address: ListenAddress | null): string {
  if (!address) return "off";
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

function listen(def: string, doc: string): Field<ListenAddress | null> {
  return {
    kind: "listen",
    default: parseListen(def),
    doc,
    parse: (raw) => parseListen(String(raw)),
    format: formatListen,
  };
}

const MINUTE = 60_000;

/** The configuration table, in the order the README documents it. */
export const CONFIG_FIELDS = {
  // General
  hostname: text(osHostname(), "Name used in greetings, Received headers, DSNs and CRAM-MD5 challenges"),
  dataDir: text("./data", "Directory for the queue database and spool files (created when missing)"),
  queueCacheSize: size(
    "16MiB",
    1024 * 1024,
    "SQLite page cache of the serving relay's queue; keeps /status and ATRN flat as the queue grows",
  ),
  database: databaseUrl(
    "Queue database: empty for SQLite in dataDir; a postgres:// URL for one queue shared by several nodes",
  ),
  nodeName: text(osHostname(), "This node's name in /status, /metrics and the shared queue's lease rows"),
  databasePoolSize: count(
    10,
    2,
    "Most PostgreSQL connections this node opens (the LISTEN and heartbeat ones not counted)",
  ),
  clusterLeaseTtl: duration(
    "30s",
    3000,
    "How long a stopped node's domain leases and jobs stay held on a shared queue (heartbeat every third)",
  ),
  logFormat: choice(["logfmt", "json"] as const, "logfmt", "Log line format on stderr"),
  logLevel: choice(["error", "warn", "info", "debug", "trace"] as const, "info", "Lowest level logged"),
  logWire: flag(false, "Log every SMTP line at level trace (AUTH and DATA content redacted)"),

  // Listeners and TLS
  smtpListen: listen("0.0.0.0:2525", 'Intake MX listener; production: "0.0.0.0:25"; "off" disables'),
  odmrListen: listen("0.0.0.0:3366", 'ODMR listener (RFC 2645 4); production: "0.0.0.0:366"'),
  odmrsListen: listen("0.0.0.0:3367", "ODMR with implicit TLS (for fetchmail's `ssl`); needs a certificate"),
  httpListen: listen("127.0.0.1:8025", "HTTP status API; a non-loopback address requires httpToken"),
  httpToken: secretToken("Bearer token for the HTTP API (file or environment only: flags show in `ps`)"),
  tlsCertFile: optionalText("PEM certificate chain for STARTTLS and implicit TLS (none: TLS off)"),
  tlsKeyFile: optionalText("PEM private key matching tlsCertFile"),
  tlsHandshakeTimeout: duration(
    "10s",
    1000,
    "Longest TLS handshake (STARTTLS and implicit TLS) before close",
  ),

  // Intake (port 25) limits
  smtpMaxLineLength: count(2048, 1036, "Longest SMTP command line in octets incl. CRLF", "RFC 3461 5.4"),
  smtpMaxDataLineLength: count(
    10000,
    1000,
    "Longest message line in octets incl. CRLF",
    "RFC 5321 4.5.3.1.6",
  ),
  smtpMaxMessageSize: size(
    "64MiB",
    65536,
    "Largest message accepted; advertised in SIZE",
    "RFC 5321 4.5.3.1.7",
  ),
  smtpMaxRecipients: count(1000, 100, "Recipients per message; more get 452 4.5.3", "RFC 5321 4.5.3.1.8"),
  smtpMaxConnections: count(500, 1, "Simultaneous intake connections in total"),
  smtpMaxConnectionsPerIp: count(20, 1, "Simultaneous intake connections from one IP address"),
  smtpMaxErrors: count(20, 1, "Error replies in one session before 421 4.7.0 and close"),
  smtpMaxJunkCommands: count(100, 1, "Unknown/NOOP/RSET/VRFY/HELP commands in one session before 421"),
  smtpIdleTimeout: duration("5m", MINUTE, "Wait for the next command line", "RFC 5321 4.5.3.2.7"),
  smtpDataTimeout: duration("5m", MINUTE, "Wait for the next block of message data", "RFC 5321 4.5.3.2"),
  smtpSessionTimeout: duration("1h", MINUTE, "Longest intake session, whatever it does"),
  smtpMaxReceivedHeaders: count(
    100,
    10,
    "Received headers that mean a mail loop (554 5.4.6)",
    "RFC 5321 6.3",
  ),
  smtpMinFreeSpace: size("256MiB", 0, "Free disk below which MAIL is refused with 452 4.3.1"),
  postmasterAddress: optionalText(
    "The operator's address: bare RCPT TO:<Postmaster> goes there (unset: the relay's own postmaster mailbox)",
  ),
  postmasterMailboxQuota: size(
    "100MiB",
    0,
    "Most bytes the relay's own postmaster mailbox holds; more get 452 4.2.2 until an operator deletes some",
  ),
  smtpGreetingDelay: duration("0s", 0, "Pause before the 220 greeting to catch early talkers"),

  // ODMR (port 366) and ATRN
  odmrMaxConnections: count(100, 1, "Simultaneous ODMR connections in total"),
  odmrMaxConnectionsPerIp: count(10, 1, "Simultaneous ODMR connections from one IP address"),
  odmrIdleTimeout: duration("5m", MINUTE, "Wait for the next command before ATRN", "RFC 5321 4.5.3.2.7"),
  odmrSessionTimeout: duration(
    "15m",
    MINUTE,
    "Longest ODMR session before ATRN turns it (then atrnSessionTimeout)",
  ),
  odmrMaxErrors: count(10, 3, "Error replies before ATRN in one session before 421 and close", "RFC 4954 4"),
  odmrMaxJunkCommands: count(20, 1, "NOOP/RSET/HELP/unknown commands in one ODMR session before 421"),
  odmrPreAuthTimeout: duration(
    "60s",
    5000,
    "Time from connect to a successful AUTH before 421 (frees slots held by idle strangers)",
  ),
  odmrAllowCramMd5WithoutTls: flag(true, "Offer CRAM-MD5 on plaintext connections (fetchmail needs it)"),
  odmrAllowPlainWithoutTls: flag(false, "Offer PLAIN/LOGIN on plaintext connections (not recommended)"),
  authMaxFailuresPerIp: count(10, 3, "Failed AUTHs from one IP per window before refusing", "RFC 4954 4"),
  authMaxFailuresPerAccountIp: count(
    5,
    3,
    "Failed AUTHs for one account from one IP per window before that IP is locked out of it",
    "RFC 4954 4",
  ),
  authFailureWindow: duration("15m", 1000, "Window over which AUTH failures are counted"),
  atrnMaxDomains: count(100, 1, "Domains accepted in one ATRN command"),
  atrnMaxPerMinute: count(10, 1, "ATRN commands per account per minute; more are answered 450 4.7.0"),
  atrnSessionTimeout: duration("1h", MINUTE, "Longest reversed (delivery) session after ATRN"),
  atrnGreetingTimeout: duration(
    "5m",
    1000,
    "Wait for the customer's 220 after the turn",
    "RFC 5321 4.5.3.2.1",
  ),
  atrnCommandTimeout: duration("5m", 1000, "Wait for replies to EHLO, MAIL, RCPT", "RFC 5321 4.5.3.2.2"),
  atrnDataInitTimeout: duration("2m", 1000, "Wait for the 354 reply to DATA", "RFC 5321 4.5.3.2.4"),
  atrnDataBlockTimeout: duration("3m", 1000, "Wait for a block of data to be sent", "RFC 5321 4.5.3.2.5"),
  atrnDataTermTimeout: duration("10m", 1000, "Wait for the reply to the final dot", "RFC 5321 4.5.3.2.6"),
  atrnMaxWatching: count(
    50,
    0,
    "Most sessions watching for new mail at once (pull --watch; below odmrMaxConnections); 0 turns push off",
  ),
  atrnMaxWatchingPerAccount: count(2, 1, "Most watching sessions of one account"),
  atrnWatchMaxDuration: duration(
    "1h",
    MINUTE,
    "Longest watching (push) session; then QUIT, and the customer reconnects",
  ),
  atrnWatchKeepalive: duration(
    "2m",
    1000,
    "NOOP interval in a watching session (well under the usual 5-minute server timeout)",
    "RFC 5321 4.5.3.2.7",
  ),
  atrnPipelining: choice(
    ["auto", "always", "never"] as const,
    "auto",
    "Pipeline after the turn (auto: only to prompt customers)",
  ),

  // Queue
  queueLifetime: duration(
    "5d",
    MINUTE,
    "Age after which undelivered mail expires (RFC 5321 4.5.4.1: 4-5 days)",
    "",
    true, // an age compared with timestamps, not a timer: may exceed 24 days
  ),
  shutdownGrace: duration("30s", 0, "On SIGTERM, time given to sessions in DATA to finish"),

  // DSNs and the outbound path (the only mail this relay sends to the internet)
  dsnLifetime: duration("2d", MINUTE, "How long a DSN or notice is retried before it is logged and dropped"),
  dsnDelayWarnings: durationList(
    "24h",
    'Queue ages at which senders get a delay warning (RFC 3464 "delayed"); "" turns them off',
  ),
  dsnMaxFullSize: size("1MiB", 0, "Largest original returned whole for RET=FULL; larger ones return headers"),
  dsnCopyToPostmaster: flag(false, "Send a copy of every failure DSN to postmasterAddress"),
  domainNotifyAfter: duration(
    "24h",
    MINUTE,
    "Default wait without an ATRN before a domain's notifyAddress is told mail is waiting",
  ),
  smarthost: hostPort("Send DSNs and notices through this host (HOST:PORT) instead of the recipients' MX"),
  smarthostTls: choice(
    ["required", "opportunistic"] as const,
    "required",
    "STARTTLS to the smarthost: required (verified certificate) or opportunistic",
  ),
  smarthostCaFile: optionalText("Extra CA certificates (PEM) to trust for the smarthost"),
  smarthostUsername: optionalText("AUTH PLAIN/LOGIN user name for the smarthost (only sent under TLS)"),
  smarthostPassword: secretText("Password for smarthostUsername (file or environment only)"),
  dnsServers: dnsServerList(
    "DNS servers for MX lookups (IP or IP:PORT, comma-separated); empty: the system's",
  ),
  outboundConcurrency: count(4, 1, "Outbound messages sent at the same time"),
  outboundConnectTimeout: duration("30s", 1000, "Wait for an outbound TCP connection"),
  outboundMxPort: count(25, 1, "Port of MX hosts for direct delivery (25; other values only for tests)"),
} as const;

type FieldValue<F> = F extends Field<infer T> ? T : never;

/** The complete, typed configuration. */
export type Config = { -readonly [K in keyof typeof CONFIG_FIELDS]: FieldValue<typeof CONFIG_FIELDS[K]> };

/** A configuration key. */
export type ConfigKey = keyof typeof CONFIG_FIELDS;

/** "smtpMaxLineLength" -> "smtp-max-line-length". */
export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** "smtpMaxLineLength" -> "ODMR_RELAY_SMTP_MAX_LINE_LENGTH". */
export function envName(key: string): string {
  return `ODMR_RELAY_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** The defaults as a Config. */
export function defaultConfig(): Config {
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(CONFIG_FIELDS)) out[key] = field.default;
  return out as Config;
}
