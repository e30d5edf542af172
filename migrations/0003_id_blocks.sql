CREATE SEQUENCE "public"."id_blocks" INCREMENT BY 1048576 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1;--> statement-breakpoint
-- Ids used to come from each node's clock (Date.now() * 1000): the first block starts above every
-- id already stored (after setval(v), nextval returns v + increment).
SELECT setval('id_blocks', GREATEST(1,
  (SELECT max(id) FROM messages), (SELECT max(id) FROM deliveries), (SELECT max(message_id) FROM retained_messages)));
