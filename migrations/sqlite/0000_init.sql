CREATE TABLE `accounts` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`username` text NOT NULL,
	`cram_md5_secret` text NOT NULL,
	`password_hash` text NOT NULL,
	`disabled` integer DEFAULT false NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `accounts_username_unique` ON `accounts` (`username`);--> statement-breakpoint
CREATE TABLE `atrn_sessions` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`account_id` integer,
	`username` text NOT NULL,
	`domains` text NOT NULL,
	`peer` text NOT NULL,
	`tls` integer DEFAULT false NOT NULL,
	`started_at` integer NOT NULL,
	`ended_at` integer,
	`delivered` integer DEFAULT 0 NOT NULL,
	`deferred` integer DEFAULT 0 NOT NULL,
	`failed` integer DEFAULT 0 NOT NULL,
	`outcome` text NOT NULL,
	`detail` text
);
--> statement-breakpoint
CREATE INDEX `atrn_sessions_started` ON `atrn_sessions` (`started_at`);--> statement-breakpoint
CREATE TABLE `domain_mailboxes` (
	`domain` text NOT NULL,
	`local_part` text NOT NULL,
	PRIMARY KEY(`domain`, `local_part`),
	FOREIGN KEY (`domain`) REFERENCES `domains`(`name`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `domains` (
	`name` text PRIMARY KEY NOT NULL,
	`account_id` integer NOT NULL,
	`hold` integer DEFAULT false NOT NULL,
	`catch_all` integer DEFAULT true NOT NULL,
	`retention_ms` integer,
	`quota_bytes` integer,
	`created_at` integer NOT NULL,
	`queued_recipients` integer DEFAULT 0 NOT NULL,
	`queued_bytes` integer DEFAULT 0 NOT NULL,
	`last_atrn_at` integer,
	`last_atrn_peer` text,
	`last_atrn_delivered` integer,
	`last_failure_at` integer,
	`last_failure_text` text,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE TABLE `message_chunks` (
	`message_id` integer NOT NULL,
	`seq` integer NOT NULL,
	`data` blob NOT NULL,
	PRIMARY KEY(`message_id`, `seq`),
	FOREIGN KEY (`message_id`) REFERENCES `messages`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `messages` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`received_at` integer NOT NULL,
	`mail_from` text NOT NULL,
	`size` integer NOT NULL,
	`body_inline` blob,
	`chunk_count` integer DEFAULT 0 NOT NULL,
	`client_ip` text NOT NULL,
	`client_helo` text NOT NULL,
	`tls` integer DEFAULT false NOT NULL,
	`body_type` text,
	`smtputf8` integer DEFAULT false NOT NULL,
	`eight_bit` integer DEFAULT false NOT NULL,
	`envid` text,
	`ret` text
);
--> statement-breakpoint
CREATE TABLE `queue_totals` (
	`id` integer PRIMARY KEY NOT NULL,
	`messages` integer DEFAULT 0 NOT NULL,
	`bytes` integer DEFAULT 0 NOT NULL,
	`recipients` integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE `recipients` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`message_id` integer NOT NULL,
	`address` text NOT NULL,
	`domain` text NOT NULL,
	`status` text DEFAULT 'queued' NOT NULL,
	`queued_at` integer NOT NULL,
	`message_size` integer NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`last_code` integer,
	`last_text` text,
	`last_attempt_at` integer,
	`notify` text,
	`orcpt` text,
	FOREIGN KEY (`message_id`) REFERENCES `messages`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `recipients_domain_status_queued_at` ON `recipients` (`domain`,`status`,`queued_at`);--> statement-breakpoint
CREATE INDEX `recipients_message` ON `recipients` (`message_id`);