/**
 * The queue's SQLite schema, declared once for drizzle-orm (queries) and drizzle-kit (migrations).
 *
 * Times are integer milliseconds since the epoch. Domain names are stored lower-case; local parts
 * keep their case (RFC 5321 2.4). Per-domain queue counters (`queued_recipients`, `queued_bytes`)
 * are kept by triggers (see migrations/sqlite/0001_queue_counters.sql) so `/status` and `/metrics` never
 * scan the queue.
 */
import { sql } from "drizzle-orm";
import { blob, index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** Customer accounts: who may AUTH on the ODMR port. */
export const accounts = sqliteTable("accounts", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  username: text("username").notNull().unique(),
  /** Dovecot `{CRAM-MD5}` HMAC-MD5 contexts: verifies CRAM-MD5 without storing the secret (RFC 2195). */
  cramMd5Secret: text("cram_md5_secret").notNull(),
  /** Self-describing scrypt hash for PLAIN/LOGIN under TLS. */
  passwordHash: text("password_hash").notNull(),
  disabled: integer("disabled", { mode: "boolean" }).notNull().default(false),
  createdAt: integer("created_at").notNull(),
});

/** Hosted domains: what the intake accepts mail for and what the owning account may ATRN. */
export const domains = sqliteTable("domains", {
  name: text("name").primaryKey(),
  accountId: integer("account_id").notNull().references(() => accounts.id),
  /** A held domain keeps its mail queued; ATRN for it answers as if there were no mail. */
  hold: integer("hold", { mode: "boolean" }).notNull().default(false),
  /** true: every local part is accepted; false: only those in `domain_mailboxes`. */
  catchAll: integer("catch_all", { mode: "boolean" }).notNull().default(true),
  /** Queue lifetime override for this domain, ms (null: the global `queueLifetime`). */
  retentionMs: integer("retention_ms"),
  /** Maximum queued bytes for this domain (null: unlimited). */
  quotaBytes: integer("quota_bytes"),
  /**
   * Accept local parts that look like routing (`a%b@d`, `b!a@d`, `"a@b"@d`). Off by default: the
   * customer's MTA, trusting the loopback connection from fetchmail, might relay them onwards.
   */
  allowRoutingSyntax: integer("allow_routing_syntax", { mode: "boolean" }).notNull().default(false),
  createdAt: integer("created_at").notNull(),
  queuedRecipients: integer("queued_recipients").notNull().default(0),
  queuedBytes: integer("queued_bytes").notNull().default(0),
  lastAtrnAt: integer("last_atrn_at"),
  lastAtrnPeer: text("last_atrn_peer"),
  lastAtrnDelivered: integer("last_atrn_delivered"),
  lastFailureAt: integer("last_failure_at"),
  lastFailureText: text("last_failure_text"),
  /** Where to tell the customer that mail is waiting uncollected (an address outside the domain). */
  notifyAddress: text("notify_address"),
  /** How long mail may wait without an ATRN before that notice, ms (null: the default, 24 h). */
  notifyAfterMs: integer("notify_after_ms"),
  /** When the last such notice was queued. */
  notifiedAt: integer("notified_at"),
});

/** Accepted local parts for domains that are not catch-all (recipient validation at RCPT time). */
export const domainMailboxes = sqliteTable("domain_mailboxes", {
  domain: text("domain").notNull().references(() => domains.name, { onDelete: "cascade" }),
  localPart: text("local_part").notNull(),
}, (t) => [primaryKey({ columns: [t.domain, t.localPart] })]);

/** One row per accepted message. Small bodies live inline; large ones in `message_chunks`. */
export const messages = sqliteTable("messages", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  receivedAt: integer("received_at").notNull(),
  /** Reverse-path without angle brackets; "" is the null sender `<>`. */
  mailFrom: text("mail_from").notNull(),
  /** Stored size in octets, Received header included (RFC 1870 counting). */
  size: integer("size").notNull(),
  /** Body (CRLF lines, already dot-unstuffed) when it fits one chunk; null when chunked. */
  bodyInline: blob("body_inline", { mode: "buffer" }),
  chunkCount: integer("chunk_count").notNull().default(0),
  clientIp: text("client_ip").notNull(),
  clientHelo: text("client_helo").notNull(),
  tls: integer("tls", { mode: "boolean" }).notNull().default(false),
  /** RFC 6152 BODY= value as declared, or null. */
  bodyType: text("body_type"),
  smtputf8: integer("smtputf8", { mode: "boolean" }).notNull().default(false),
  /** The content holds octets > 127 (needs an 8BITMIME-capable customer). */
  eightBit: integer("eight_bit", { mode: "boolean" }).notNull().default(false),
  /** RFC 3461 ENVID (xtext-encoded, exactly as received) and RET. */
  envid: text("envid"),
  ret: text("ret"),
});

/** Body chunks of large messages, in order. */
export const messageChunks = sqliteTable("message_chunks", {
  messageId: integer("message_id").notNull().references(() => messages.id, { onDelete: "cascade" }),
  seq: integer("seq").notNull(),
  data: blob("data", { mode: "buffer" }).notNull(),
}, (t) => [primaryKey({ columns: [t.messageId, t.seq] })]);

/**
 * Recipient states. `queued` waits for an ATRN. `failed` (could not be delivered) and `relayed`
 * (delivered, and NOTIFY=SUCCESS asked for a notice) wait for their DSN; once it is committed to the
 * outbound queue, or when none is due, the row is deleted (src/queue/bounces.ts).
 */
export const RECIPIENT_STATUSES = ["queued", "failed", "relayed"] as const;
export type RecipientStatus = typeof RECIPIENT_STATUSES[number];

export const recipients = sqliteTable("recipients", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  messageId: integer("message_id").notNull().references(() => messages.id, { onDelete: "cascade" }),
  /** Forward-path as accepted (local part case preserved). */
  address: text("address").notNull(),
  /** Lower-case domain of `address`: the ATRN selection key. */
  domain: text("domain").notNull(),
  status: text("status", { enum: RECIPIENT_STATUSES }).notNull().default("queued"),
  /** Copy of the message's received_at, so "oldest queued per domain" is one index seek. */
  queuedAt: integer("queued_at").notNull(),
  /** Copy of the message size, so per-domain byte counters need no join. */
  messageSize: integer("message_size").notNull(),
  attempts: integer("attempts").notNull().default(0),
  lastCode: integer("last_code"),
  lastText: text("last_text"),
  lastAttemptAt: integer("last_attempt_at"),
  /** RFC 3461 NOTIFY (comma list, upper-case) and ORCPT (`type;decoded`). */
  notify: text("notify"),
  orcpt: text("orcpt"),
  /** Why a failed recipient failed: customer-rejected | local-refusal | expired | operator-bounce. */
  failureKind: text("failure_kind"),
  /** The customer's server that gave the final answer (its greeting name), for the DSN's Remote-MTA. */
  remoteMta: text("remote_mta"),
  /** Delay warnings already sent for this recipient (steps of `dsnDelayWarnings`). */
  delayWarnings: integer("delay_warnings").notNull().default(0),
}, (t) => [
  index("recipients_domain_status_queued_at").on(t.domain, t.status, t.queuedAt),
  index("recipients_message").on(t.messageId),
  // Only rows waiting for a DSN are in it, so it costs nothing on the intake path.
  index("recipients_dsn_pending").on(t.messageId).where(sql`status <> 'queued'`),
]);

/** ATRN session history (RFC 2645): for `/status` and "last collected". */
export const atrnSessions = sqliteTable("atrn_sessions", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  accountId: integer("account_id"),
  username: text("username").notNull(),
  /** Comma-separated granted (or requested, when refused) domains. */
  domains: text("domains").notNull(),
  peer: text("peer").notNull(),
  tls: integer("tls", { mode: "boolean" }).notNull().default(false),
  startedAt: integer("started_at").notNull(),
  endedAt: integer("ended_at"),
  delivered: integer("delivered").notNull().default(0),
  deferred: integer("deferred").notNull().default(0),
  failed: integer("failed").notNull().default(0),
  /** turned | no-mail | refused | busy | error */
  outcome: text("outcome").notNull(),
  detail: text("detail"),
}, (t) => [index("atrn_sessions_started").on(t.startedAt)]);

/** Whole-queue counters, one row (id = 1), kept by triggers. */
export const queueTotals = sqliteTable("queue_totals", {
  id: integer("id").primaryKey(),
  messages: integer("messages").notNull().default(0),
  bytes: integer("bytes").notNull().default(0),
  recipients: integer("recipients").notNull().default(0),
});

/**
 * Mail this relay sends to the internet itself: DSNs to senders, notices to customers, postmaster
 * copies. Each row is one message to one recipient, retried with backoff until delivered or until
 * `expires_at`, when it is logged and dropped (never a DSN about a DSN).
 */
export const outbound = sqliteTable("outbound", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  createdAt: integer("created_at").notNull(),
  /** dsn | notice | postmaster */
  kind: text("kind").notNull(),
  /** Reverse-path; "" (the null sender) for DSNs and notices (RFC 3461 6.2). */
  mailFrom: text("mail_from").notNull(),
  rcpt: text("rcpt").notNull(),
  /** The recipient's domain in A-label form (the MX lookup key). */
  domain: text("domain").notNull(),
  /** The whole message, CRLF lines, not dot-stuffed. */
  body: blob("body", { mode: "buffer" }).notNull(),
  /** The body needs 8BITMIME (or SMTPUTF8 for a UTF-8 address). */
  eightBit: integer("eight_bit", { mode: "boolean" }).notNull().default(false),
  smtputf8: integer("smtputf8", { mode: "boolean" }).notNull().default(false),
  attempts: integer("attempts").notNull().default(0),
  nextAttemptAt: integer("next_attempt_at").notNull(),
  expiresAt: integer("expires_at").notNull(),
  lastError: text("last_error"),
  /** The queue message this is about (for logs), if any. */
  aboutMessageId: integer("about_message_id"),
}, (t) => [index("outbound_next_attempt").on(t.nextAttemptAt)]);

/** Small durable facts of the housekeeping jobs (for example how far the delay-warning scan got). */
export const housekeepingState = sqliteTable("housekeeping_state", {
  key: text("key").primaryKey(),
  value: integer("value").notNull(),
});
