CREATE TABLE "accounts" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"username" text NOT NULL,
	"cram_md5_secret" text NOT NULL,
	"password_hash" text NOT NULL,
	"disabled" boolean DEFAULT false NOT NULL,
	"created_at" bigint NOT NULL,
	CONSTRAINT "accounts_username_unique" UNIQUE("username")
);
--> statement-breakpoint
CREATE TABLE "atrn_sessions" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"account_id" bigint,
	"username" text NOT NULL,
	"domains" text NOT NULL,
	"peer" text NOT NULL,
	"tls" boolean DEFAULT false NOT NULL,
	"started_at" bigint NOT NULL,
	"ended_at" bigint,
	"delivered" bigint DEFAULT 0 NOT NULL,
	"deferred" bigint DEFAULT 0 NOT NULL,
	"failed" bigint DEFAULT 0 NOT NULL,
	"outcome" text NOT NULL,
	"detail" text
);
--> statement-breakpoint
CREATE TABLE "domain_leases" (
	"domain" text PRIMARY KEY NOT NULL,
	"owner" text NOT NULL,
	"node" text NOT NULL,
	"expires_at" bigint NOT NULL,
	"idle" boolean DEFAULT false NOT NULL
);
--> statement-breakpoint
CREATE TABLE "domain_mailboxes" (
	"domain" text NOT NULL,
	"local_part" text NOT NULL,
	CONSTRAINT "domain_mailboxes_domain_local_part_pk" PRIMARY KEY("domain","local_part")
);
--> statement-breakpoint
CREATE TABLE "domains" (
	"name" text PRIMARY KEY NOT NULL,
	"account_id" bigint NOT NULL,
	"hold" boolean DEFAULT false NOT NULL,
	"catch_all" boolean DEFAULT true NOT NULL,
	"retention_ms" bigint,
	"quota_bytes" bigint,
	"allow_routing_syntax" boolean DEFAULT false NOT NULL,
	"created_at" bigint NOT NULL,
	"queued_recipients" bigint DEFAULT 0 NOT NULL,
	"queued_bytes" bigint DEFAULT 0 NOT NULL,
	"last_atrn_at" bigint,
	"last_atrn_peer" text,
	"last_atrn_delivered" bigint,
	"last_failure_at" bigint,
	"last_failure_text" text,
	"notify_address" text,
	"notify_after_ms" bigint,
	"notified_at" bigint
);
--> statement-breakpoint
CREATE TABLE "housekeeping_state" (
	"key" text PRIMARY KEY NOT NULL,
	"value" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "message_chunks" (
	"message_id" bigint NOT NULL,
	"seq" bigint NOT NULL,
	"data" "bytea" NOT NULL,
	CONSTRAINT "message_chunks_message_id_seq_pk" PRIMARY KEY("message_id","seq")
);
--> statement-breakpoint
CREATE TABLE "messages" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"received_at" bigint NOT NULL,
	"mail_from" text NOT NULL,
	"size" bigint NOT NULL,
	"body_inline" "bytea",
	"chunk_count" bigint DEFAULT 0 NOT NULL,
	"client_ip" text NOT NULL,
	"client_helo" text NOT NULL,
	"tls" boolean DEFAULT false NOT NULL,
	"body_type" text,
	"smtputf8" boolean DEFAULT false NOT NULL,
	"eight_bit" boolean DEFAULT false NOT NULL,
	"envid" text,
	"ret" text
);
--> statement-breakpoint
CREATE TABLE "nodes" (
	"id" text PRIMARY KEY NOT NULL,
	"hostname" text,
	"started_at" bigint,
	"heartbeat_at" bigint
);
--> statement-breakpoint
CREATE TABLE "outbound" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"created_at" bigint NOT NULL,
	"kind" text NOT NULL,
	"mail_from" text NOT NULL,
	"rcpt" text NOT NULL,
	"domain" text NOT NULL,
	"body" "bytea" NOT NULL,
	"eight_bit" boolean DEFAULT false NOT NULL,
	"smtputf8" boolean DEFAULT false NOT NULL,
	"attempts" bigint DEFAULT 0 NOT NULL,
	"next_attempt_at" bigint NOT NULL,
	"expires_at" bigint NOT NULL,
	"last_error" text,
	"about_message_id" bigint
);
--> statement-breakpoint
CREATE TABLE "queue_totals" (
	"id" bigint PRIMARY KEY NOT NULL,
	"messages" bigint DEFAULT 0 NOT NULL,
	"bytes" bigint DEFAULT 0 NOT NULL,
	"recipients" bigint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "recipients" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"message_id" bigint NOT NULL,
	"address" text NOT NULL,
	"domain" text NOT NULL,
	"status" text DEFAULT 'queued' NOT NULL,
	"queued_at" bigint NOT NULL,
	"message_size" bigint NOT NULL,
	"attempts" bigint DEFAULT 0 NOT NULL,
	"last_code" bigint,
	"last_text" text,
	"last_attempt_at" bigint,
	"notify" text,
	"orcpt" text,
	"failure_kind" text,
	"remote_mta" text,
	"delay_warnings" bigint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
ALTER TABLE "domain_mailboxes" ADD CONSTRAINT "domain_mailboxes_domain_domains_name_fk" FOREIGN KEY ("domain") REFERENCES "public"."domains"("name") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "domains" ADD CONSTRAINT "domains_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "message_chunks" ADD CONSTRAINT "message_chunks_message_id_messages_id_fk" FOREIGN KEY ("message_id") REFERENCES "public"."messages"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "recipients" ADD CONSTRAINT "recipients_message_id_messages_id_fk" FOREIGN KEY ("message_id") REFERENCES "public"."messages"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "atrn_sessions_started" ON "atrn_sessions" USING btree ("started_at");--> statement-breakpoint
CREATE INDEX "outbound_next_attempt" ON "outbound" USING btree ("next_attempt_at");--> statement-breakpoint
CREATE INDEX "recipients_domain_status_queued_at" ON "recipients" USING btree ("domain","status","queued_at");--> statement-breakpoint
CREATE INDEX "recipients_message" ON "recipients" USING btree ("message_id");--> statement-breakpoint
CREATE INDEX "recipients_dsn_pending" ON "recipients" USING btree ("message_id") WHERE status <> 'queued';