-- Queue counters kept by triggers, so /status and /metrics read O(domains) rows, never the queue.
-- "queued" recipients are the ones waiting for an ATRN; failed ones wait for their DSN and are not counted.
INSERT INTO `queue_totals` (`id`) VALUES (1);
--> statement-breakpoint
CREATE TRIGGER `messages_count_insert` AFTER INSERT ON `messages` BEGIN
  UPDATE `queue_totals` SET `messages` = `messages` + 1, `bytes` = `bytes` + NEW.`size` WHERE `id` = 1;
END;
--> statement-breakpoint
CREATE TRIGGER `messages_count_delete` AFTER DELETE ON `messages` BEGIN
  UPDATE `queue_totals` SET `messages` = `messages` - 1, `bytes` = `bytes` - OLD.`size` WHERE `id` = 1;
END;
--> statement-breakpoint
CREATE TRIGGER `recipients_count_insert` AFTER INSERT ON `recipients` WHEN NEW.`status` = 'queued' BEGIN
  UPDATE `domains` SET `queued_recipients` = `queued_recipients` + 1, `queued_bytes` = `queued_bytes` + NEW.`message_size`
    WHERE `name` = NEW.`domain`;
  UPDATE `queue_totals` SET `recipients` = `recipients` + 1 WHERE `id` = 1;
END;
--> statement-breakpoint
CREATE TRIGGER `recipients_count_delete` AFTER DELETE ON `recipients` WHEN OLD.`status` = 'queued' BEGIN
  UPDATE `domains` SET `queued_recipients` = `queued_recipients` - 1, `queued_bytes` = `queued_bytes` - OLD.`message_size`
    WHERE `name` = OLD.`domain`;
  UPDATE `queue_totals` SET `recipients` = `recipients` - 1 WHERE `id` = 1;
END;
--> statement-breakpoint
CREATE TRIGGER `recipients_count_leave` AFTER UPDATE OF `status` ON `recipients`
  WHEN OLD.`status` = 'queued' AND NEW.`status` <> 'queued' BEGIN
  UPDATE `domains` SET `queued_recipients` = `queued_recipients` - 1, `queued_bytes` = `queued_bytes` - OLD.`message_size`
    WHERE `name` = OLD.`domain`;
  UPDATE `queue_totals` SET `recipients` = `recipients` - 1 WHERE `id` = 1;
END;
--> statement-breakpoint
CREATE TRIGGER `recipients_count_enter` AFTER UPDATE OF `status` ON `recipients`
  WHEN OLD.`status` <> 'queued' AND NEW.`status` = 'queued' BEGIN
  UPDATE `domains` SET `queued_recipients` = `queued_recipients` + 1, `queued_bytes` = `queued_bytes` + NEW.`message_size`
    WHERE `name` = NEW.`domain`;
  UPDATE `queue_totals` SET `recipients` = `recipients` + 1 WHERE `id` = 1;
END;
