-- Queue counters kept by triggers, exactly as in the SQLite queue (migrations/sqlite/0001_queue_counters.sql),
-- so /status and /metrics read O(domains) rows, never the queue. "queued" recipients are the ones waiting
-- for an ATRN; failed and relayed ones wait for their DSN and are not counted.
-- Hand-written (drizzle-kit generate --custom): each statement ends at a statement breakpoint, never at a
-- semicolon, because the PL/pgSQL bodies hold semicolons of their own (scripts/bundle_migrations.mjs).
INSERT INTO "queue_totals" ("id") VALUES (1);
--> statement-breakpoint
CREATE FUNCTION "queue_count_message_added"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE "queue_totals" SET "messages" = "messages" + 1, "bytes" = "bytes" + NEW."size" WHERE "id" = 1;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE FUNCTION "queue_count_message_removed"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE "queue_totals" SET "messages" = "messages" - 1, "bytes" = "bytes" - OLD."size" WHERE "id" = 1;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
-- NEW has just become a queued recipient (inserted queued, or put back to queued).
CREATE FUNCTION "queue_count_recipient_entered"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE "domains" SET "queued_recipients" = "queued_recipients" + 1, "queued_bytes" = "queued_bytes" + NEW."message_size"
    WHERE "name" = NEW."domain";
  UPDATE "queue_totals" SET "recipients" = "recipients" + 1 WHERE "id" = 1;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
-- OLD was a queued recipient and is no longer (deleted, or moved to failed or relayed).
CREATE FUNCTION "queue_count_recipient_left"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE "domains" SET "queued_recipients" = "queued_recipients" - 1, "queued_bytes" = "queued_bytes" - OLD."message_size"
    WHERE "name" = OLD."domain";
  UPDATE "queue_totals" SET "recipients" = "recipients" - 1 WHERE "id" = 1;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "messages_count_insert" AFTER INSERT ON "messages"
  FOR EACH ROW EXECUTE FUNCTION "queue_count_message_added"();
--> statement-breakpoint
CREATE TRIGGER "messages_count_delete" AFTER DELETE ON "messages"
  FOR EACH ROW EXECUTE FUNCTION "queue_count_message_removed"();
--> statement-breakpoint
CREATE TRIGGER "recipients_count_insert" AFTER INSERT ON "recipients"
  FOR EACH ROW WHEN (NEW."status" = 'queued') EXECUTE FUNCTION "queue_count_recipient_entered"();
--> statement-breakpoint
CREATE TRIGGER "recipients_count_delete" AFTER DELETE ON "recipients"
  FOR EACH ROW WHEN (OLD."status" = 'queued') EXECUTE FUNCTION "queue_count_recipient_left"();
--> statement-breakpoint
CREATE TRIGGER "recipients_count_leave" AFTER UPDATE OF "status" ON "recipients"
  FOR EACH ROW WHEN (OLD."status" = 'queued' AND NEW."status" <> 'queued') EXECUTE FUNCTION "queue_count_recipient_left"();
--> statement-breakpoint
CREATE TRIGGER "recipients_count_enter" AFTER UPDATE OF "status" ON "recipients"
  FOR EACH ROW WHEN (OLD."status" <> 'queued' AND NEW."status" = 'queued') EXECUTE FUNCTION "queue_count_recipient_entered"();
