-- The counter triggers of 0001 fire at COMMIT instead of at each row (constraint triggers, DEFERRABLE
-- INITIALLY DEFERRED; the same functions, the same conditions). Fired per row, the first INSERT of an
-- intake transaction took the one `queue_totals` row and held it until COMMIT, while the body's chunks
-- were still being sent: every other commit of the cluster, for any domain, waited for the slowest
-- upload. Now that row is taken only for the COMMIT itself. A transaction's own counters are therefore
-- updated only when it commits; no statement of this backend reads them back before that.
-- Hand-written (drizzle-kit generate --custom), one statement per breakpoint.
DROP TRIGGER "messages_count_insert" ON "messages";
--> statement-breakpoint
DROP TRIGGER "messages_count_delete" ON "messages";
--> statement-breakpoint
DROP TRIGGER "recipients_count_insert" ON "recipients";
--> statement-breakpoint
DROP TRIGGER "recipients_count_delete" ON "recipients";
--> statement-breakpoint
DROP TRIGGER "recipients_count_leave" ON "recipients";
--> statement-breakpoint
DROP TRIGGER "recipients_count_enter" ON "recipients";
--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "messages_count_insert" AFTER INSERT ON "messages"
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION "queue_count_message_added"();
--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "messages_count_delete" AFTER DELETE ON "messages"
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION "queue_count_message_removed"();
--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "recipients_count_insert" AFTER INSERT ON "recipients"
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW."status" = 'queued') EXECUTE FUNCTION "queue_count_recipient_entered"();
--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "recipients_count_delete" AFTER DELETE ON "recipients"
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (OLD."status" = 'queued') EXECUTE FUNCTION "queue_count_recipient_left"();
--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "recipients_count_leave" AFTER UPDATE OF "status" ON "recipients"
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (OLD."status" = 'queued' AND NEW."status" <> 'queued') EXECUTE FUNCTION "queue_count_recipient_left"();
--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "recipients_count_enter" AFTER UPDATE OF "status" ON "recipients"
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (OLD."status" <> 'queued' AND NEW."status" = 'queued') EXECUTE FUNCTION "queue_count_recipient_entered"();
