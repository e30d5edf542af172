-- deliveries_message_idx only for deliveries whose message is in messages (garbage collection and
-- start-up look them up by message); a delivery carrying its message (0006) needs no entry.
DROP INDEX "deliveries_message_idx";--> statement-breakpoint
CREATE INDEX "deliveries_message_idx" ON "deliveries" USING btree ("message_id") WHERE "deliveries"."message_payload" IS NULL;