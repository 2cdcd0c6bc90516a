/**
 * The shared queue's PostgreSQL schema, declared for drizzle-kit (`drizzle.postgres.config.ts` generates
 * migrations/postgres/ from it). It mirrors the SQLite schema (src/queue/schema.ts) table for table and
 * column for column, with the same names, so one set of queries and `migrate --to` carry over unchanged:
 *
 * - SQLite INTEGER is 64-bit, so every integer column is `bigint` (ids `bigserial`), read as a JavaScript
 *   number (src/queue/pg/database.ts parses int8; times in ms, sizes and counts stay far below 2^53).
 * - Booleans are `boolean` (SQLite keeps 0/1), blobs `bytea`.
 * - The per-domain and whole-queue counters are kept by triggers, as in SQLite
 *   (migrations/postgres/0001_queue_counters.sql mirrors migrations/sqlite/0001_queue_counters.sql).
 *
 * Two tables exist only here, because only several nodes on one database need them: `domain_leases`
 * (one ATRN session per domain across every node, src/queue/pg/pg_leases.ts) and `nodes` (who is in
 * the cluster, for /status). `schema_migrations` is made by src/queue/pg/migrate.ts itself.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  boolean,
  customType,
  index,
  pgTable,
  primaryKey,
  text,
} from "drizzle-orm/pg-core";
import { RECIPIENT_STATUSES } from "../schema.ts";

/** A 64-bit integer read as a number (SQLite INTEGER). */
const int = (name: string) => bigint(name, { mode: "number" });

/** A 64-bit auto-increment id (SQLite `INTEGER PRIMARY KEY AUTOINCREMENT`). */
const id = (name: string) => bigserial(name, { mode: "number" });

/** Binary data (SQLite BLOB): written from any Uint8Array, read as a Buffer like SQLite's blob buffer mode. */
const bytea = customType<{ data: Uint8Array; driverData: Buffer }>({
  dataType: () => "bytea",
  toDriver: (value) =>
    Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength),
  fromDriver: (value) => value,
});

/** Customer accounts: who may AUTH on the ODMR port. */
export const accounts = pgTable("accounts", {
  id: id("id").primaryKey(),
  username: text("username").notNull().unique(),
  /** Dovecot `{CRAM-MD5}` HMAC-MD5 contexts: verifies CRAM-MD5 without storing the secret (RFC 2195). */
  cramMd5Secret: text("cram_md5_secret").notNull(),
  /** Self-describing scrypt hash for PLAIN/LOGIN under TLS. */
  passwordHash: text("password_hash").notNull(),
  disabled: boolean("disabled").notNull().default(false),
  createdAt: int("created_at").notNull(),
});

/** Hosted domains: what the intake accepts mail for and what the owning account may ATRN. */
export const domains = pgTable("domains", {
  name: text("name").primaryKey(),
  accountId: int("account_id").notNull().references(() => accounts.id),
  /** A held domain keeps its mail queued; ATRN for it answers as if there were no mail. */
  hold: boolean("hold").notNull().default(false),
  /** true: every local part is accepted; false: only those in `domain_mailboxes`. */
  catchAll: boolean("catch_all").notNull().default(true),
  /** Queue lifetime override for this domain, ms (null: the global `queueLifetime`). */
  retentionMs: int("retention_ms"),
  /** Maximum queued bytes for this domain (null: unlimited). */
  quotaBytes: int("quota_bytes"),
  /** Accept local parts that look like routing (`a%b@d`, `b!a@d`, `"a@b"@d`); see src/queue/schema.ts. */
  allowRoutingSyntax: boolean("allow_routing_syntax").notNull().default(false),
  createdAt: int("created_at").notNull(),
  queuedRecipients: int("queued_recipients").notNull().default(0),
  queuedBytes: int("queued_bytes").notNull().default(0),
  lastAtrnAt: int("last_atrn_at"),
  lastAtrnPeer: text("last_atrn_peer"),
  lastAtrnDelivered: int("last_atrn_delivered"),
  lastFailureAt: int("last_failure_at"),
  lastFailureText: text("last_failure_text"),
  /** Where to tell the customer that mail is waiting uncollected (an address outside the domain). */
  notifyAddress: text("notify_address"),
  /** How long mail may wait without an ATRN before that notice, ms (null: the default, 24 h). */
  notifyAfterMs: int("notify_after_ms"),
  /** When the last such notice was queued. */
  notifiedAt: int("notified_at"),
});

/** Accepted local parts for domains that are not catch-all (recipient validation at RCPT time). */
export const domainMailboxes = pgTable("domain_mailboxes", {
  domain: text("domain").notNull().references(() => domains.name, { onDelete: "cascade" }),
  localPart: text("local_part").notNull(),
}, (t) => [primaryKey({ columns: [t.domain, t.localPart] })]);

/** One row per accepted message. Small bodies live inline; large ones in `message_chunks`. */
export const messages = pgTable("messages", {
  id: id("id").primaryKey(),
  receivedAt: int("received_at").notNull(),
  /** Reverse-path without angle brackets; "" is the null sender `<>`. */
  mailFrom: text("mail_from").notNull(),
  /** Stored size in octets, Received header included (RFC 1870 counting). */
  size: int("size").notNull(),
  /** Body (CRLF lines, already dot-unstuffed) when it fits one chunk; null when chunked. */
  bodyInline: bytea("body_inline"),
  chunkCount: int("chunk_count").notNull().default(0),
  clientIp: text("client_ip").notNull(),
  clientHelo: text("client_helo").notNull(),
  tls: boolean("tls").notNull().default(false),
  /** RFC 6152 BODY= value as declared, or null. */
  bodyType: text("body_type"),
  smtputf8: boolean("smtputf8").notNull().default(false),
  /** The content holds octets > 127 (needs an 8BITMIME-capable customer). */
  eightBit: boolean("eight_bit").notNull().default(false),
  /** RFC 3461 ENVID (xtext-encoded, exactly as received) and RET. */
  envid: text("envid"),
  ret: text("ret"),
});

/** Body chunks of large messages, in order. */
export const messageChunks = pgTable("message_chunks", {
  messageId: int("message_id").notNull().references(() => messages.id, { onDelete: "cascade" }),
  seq: int("seq").notNull(),
  data: bytea("data").notNull(),
}, (t) => [primaryKey({ columns: [t.messageId, t.seq] })]);

/** One row per recipient; the states are those of src/queue/schema.ts (`RECIPIENT_STATUSES`). */
export const recipients = pgTable("recipients", {
  id: id("id").primaryKey(),
  messageId: int("message_id").notNull().references(() => messages.id, { onDelete: "cascade" }),
  /** Forward-path as accepted (local part case preserved). */
  address: text("address").notNull(),
  /** Lower-case domain of `address`: the ATRN selection key. */
  domain: text("domain").notNull(),
  status: text("status", { enum: RECIPIENT_STATUSES }).notNull().default("queued"),
  /** Copy of the message's received_at, so "oldest queued per domain" is one index seek. */
  queuedAt: int("queued_at").notNull(),
  /** Copy of the message size, so per-domain byte counters need no join. */
  messageSize: int("message_size").notNull(),
  attempts: int("attempts").notNull().default(0),
  lastCode: int("last_code"),
  lastText: text("last_text"),
  lastAttemptAt: int("last_attempt_at"),
  /** RFC 3461 NOTIFY (comma list, upper-case) and ORCPT (`type;decoded`). */
  notify: text("notify"),
  orcpt: text("orcpt"),
  /** Why a failed recipient failed: customer-rejected | local-refusal | expired | operator-bounce. */
  failureKind: text("failure_kind"),
  /** The customer's server that gave the final answer (its greeting name), for the DSN's Remote-MTA. */
  remoteMta: text("remote_mta"),
  /** Delay warnings already sent for this recipient (steps of `dsnDelayWarnings`). */
  delayWarnings: int("delay_warnings").notNull().default(0),
}, (t) => [
  index("recipients_domain_status_queued_at").on(t.domain, t.status, t.queuedAt),
  index("recipients_message").on(t.messageId),
  // Only rows waiting for a DSN are in it, so it costs nothing on the intake path.
  index("recipients_dsn_pending").on(t.messageId).where(sql`status <> 'queued'`),
]);

/** ATRN session history (RFC 2645): for `/status` and "last collected". */
export const atrnSessions = pgTable("atrn_sessions", {
  id: id("id").primaryKey(),
  accountId: int("account_id"),
  username: text("username").notNull(),
  /** Comma-separated granted (or requested, when refused) domains. */
  domains: text("domains").notNull(),
  peer: text("peer").notNull(),
  tls: boolean("tls").notNull().default(false),
  startedAt: int("started_at").notNull(),
  endedAt: int("ended_at"),
  delivered: int("delivered").notNull().default(0),
  deferred: int("deferred").notNull().default(0),
  failed: int("failed").notNull().default(0),
  /** turned | no-mail | refused | busy | error */
  outcome: text("outcome").notNull(),
  detail: text("detail"),
}, (t) => [index("atrn_sessions_started").on(t.startedAt)]);

/** Whole-queue counters, one row (id = 1, inserted by the counters migration), kept by triggers. */
export const queueTotals = pgTable("queue_totals", {
  id: int("id").primaryKey(),
  messages: int("messages").notNull().default(0),
  bytes: int("bytes").notNull().default(0),
  recipients: int("recipients").notNull().default(0),
});

/** Mail this relay sends to the internet itself (DSNs, notices, postmaster copies); see src/queue/schema.ts. */
export const outbound = pgTable("outbound", {
  id: id("id").primaryKey(),
  createdAt: int("created_at").notNull(),
  /** dsn | notice | postmaster */
  kind: text("kind").notNull(),
  /** Reverse-path; "" (the null sender) for DSNs and notices (RFC 3461 6.2). */
  mailFrom: text("mail_from").notNull(),
  rcpt: text("rcpt").notNull(),
  /** The recipient's domain in A-label form (the MX lookup key). */
  domain: text("domain").notNull(),
  /** The whole message, CRLF lines, not dot-stuffed. */
  body: bytea("body").notNull(),
  /** The body needs 8BITMIME (or SMTPUTF8 for a UTF-8 address). */
  eightBit: boolean("eight_bit").notNull().default(false),
  smtputf8: boolean("smtputf8").notNull().default(false),
  attempts: int("attempts").notNull().default(0),
  nextAttemptAt: int("next_attempt_at").notNull(),
  expiresAt: int("expires_at").notNull(),
  lastError: text("last_error"),
  /** The queue message this is about (for logs), if any. */
  aboutMessageId: int("about_message_id"),
}, (t) => [index("outbound_next_attempt").on(t.nextAttemptAt)]);

/** Small durable facts of the housekeeping jobs (for example how far the delay-warning scan got). */
export const housekeepingState = pgTable("housekeeping_state", {
  key: text("key").primaryKey(),
  value: int("value").notNull(),
});

/**
 * Domain leases shared by every node (PostgreSQL only): one ATRN session per domain at a time across
 * the cluster (RFC 2645 5; docs/design.md#delivery). `expires_at` is in the database server's clock, so
 * clock skew between nodes cannot give one domain two owners; `idle` marks a session that holds the
 * lease but is not delivering. Cluster-wide jobs hold rows keyed `job:<name>` (src/queue/pg/pg_leases.ts).
 */
export const domainLeases = pgTable("domain_leases", {
  domain: text("domain").primaryKey(),
  /** The session (or job) holding the lease. */
  owner: text("owner").notNull(),
  /** The node of that session: its leases go when the node shuts down or stops its heartbeat. */
  node: text("node").notNull(),
  expiresAt: int("expires_at").notNull(),
  idle: boolean("idle").notNull().default(false),
});

/** The relay nodes using this database (PostgreSQL only), kept by each node's heartbeat, for /status. */
export const nodes = pgTable("nodes", {
  id: text("id").primaryKey(),
  hostname: text("hostname"),
  startedAt: int("started_at"),
  heartbeatAt: int("heartbeat_at"),
});
