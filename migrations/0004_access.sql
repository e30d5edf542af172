CREATE TABLE "hub_settings" (
	"hub" text PRIMARY KEY NOT NULL,
	"anonymous_connect_policy" text,
	"max_keep_alive_sec" integer,
	"max_sessions" integer,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "permissions" ADD COLUMN "granted_by" text;--> statement-breakpoint
DELETE FROM "permissions" a USING "permissions" b WHERE a."id" > b."id" AND a."hub" = b."hub" AND a."subject_kind" = b."subject_kind" AND a."subject" = b."subject" AND a."permission" = b."permission" AND coalesce(a."target", '') = coalesce(b."target", '');--> statement-breakpoint
CREATE UNIQUE INDEX "permissions_grant_uq" ON "permissions" USING btree ("hub","subject_kind","subject","permission",coalesce("target", ''));