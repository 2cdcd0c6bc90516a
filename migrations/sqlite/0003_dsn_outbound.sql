CREATE TABLE `housekeeping_state` (
	`key` text PRIMARY KEY NOT NULL,
	`value` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `outbound` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`created_at` integer NOT NULL,
	`kind` text NOT NULL,
	`mail_from` text NOT NULL,
	`rcpt` text NOT NULL,
	`domain` text NOT NULL,
	`body` blob NOT NULL,
	`eight_bit` integer DEFAULT false NOT NULL,
	`smtputf8` integer DEFAULT false NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`next_attempt_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`last_error` text,
	`about_message_id` integer
);
--> statement-breakpoint
CREATE INDEX `outbound_next_attempt` ON `outbound` (`next_attempt_at`);--> statement-breakpoint
ALTER TABLE `domains` ADD `notify_address` text;--> statement-breakpoint
ALTER TABLE `domains` ADD `notify_after_ms` integer;--> statement-breakpoint
ALTER TABLE `domains` ADD `notified_at` integer;--> statement-breakpoint
ALTER TABLE `recipients` ADD `failure_kind` text;--> statement-breakpoint
ALTER TABLE `recipients` ADD `remote_mta` text;--> statement-breakpoint
ALTER TABLE `recipients` ADD `delay_warnings` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX `recipients_dsn_pending` ON `recipients` (`message_id`) WHERE status <> 'queued';