CREATE TABLE "audit_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"hub" text NOT NULL,
	"event" text NOT NULL,
	"client_id" text,
	"actor" text,
	"remote_address" text,
	"reason_code" integer,
	"detail" jsonb
);
--> statement-breakpoint
CREATE TABLE "deliveries" (
	"id" bigint PRIMARY KEY NOT NULL,
	"hub" text NOT NULL,
	"client_id" text NOT NULL,
	"message_id" bigint NOT NULL,
	"qos" smallint NOT NULL,
	"retain" boolean NOT NULL,
	"subscription_ids" integer[] NOT NULL,
	"share_key" text,
	"packet_id" integer NOT NULL,
	"state" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "inbound_qos2" (
	"hub" text NOT NULL,
	"client_id" text NOT NULL,
	"packet_id" integer NOT NULL,
	CONSTRAINT "inbound_qos2_hub_client_id_packet_id_pk" PRIMARY KEY("hub","client_id","packet_id")
);
--> statement-breakpoint
CREATE TABLE "messages" (
	"id" bigint PRIMARY KEY NOT NULL,
	"hub" text NOT NULL,
	"topic_name" text NOT NULL,
	"payload" "bytea" NOT NULL,
	"qos" smallint NOT NULL,
	"retain" boolean NOT NULL,
	"properties" jsonb,
	"expires_at_ms" bigint,
	"publisher_id" text,
	"created_at_ms" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "permissions" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"hub" text NOT NULL,
	"subject_kind" text NOT NULL,
	"subject" text NOT NULL,
	"permission" text NOT NULL,
	"target" text,
	"granted_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "retained_messages" (
	"hub" text NOT NULL,
	"topic_name" text NOT NULL,
	"message_id" bigint NOT NULL,
	"payload" "bytea" NOT NULL,
	"qos" smallint NOT NULL,
	"properties" jsonb,
	"expires_at_ms" bigint,
	"publisher_id" text,
	"created_at_ms" bigint NOT NULL,
	CONSTRAINT "retained_messages_hub_topic_name_pk" PRIMARY KEY("hub","topic_name")
);
--> statement-breakpoint
CREATE TABLE "sessions" (
	"hub" text NOT NULL,
	"client_id" text NOT NULL,
	"protocol_version" smallint NOT NULL,
	"expiry_interval_sec" bigint NOT NULL,
	"connected_at_ms" bigint,
	"disconnected_at_ms" bigint,
	"node_id" text NOT NULL,
	CONSTRAINT "sessions_hub_client_id_pk" PRIMARY KEY("hub","client_id")
);
--> statement-breakpoint
CREATE TABLE "subscriptions" (
	"hub" text NOT NULL,
	"client_id" text NOT NULL,
	"topic_filter" text NOT NULL,
	"qos" smallint NOT NULL,
	"no_local" boolean NOT NULL,
	"retain_as_published" boolean NOT NULL,
	"retain_handling" smallint NOT NULL,
	"subscription_id" integer,
	CONSTRAINT "subscriptions_hub_client_id_topic_filter_pk" PRIMARY KEY("hub","client_id","topic_filter")
);
--> statement-breakpoint
CREATE TABLE "wills" (
	"hub" text NOT NULL,
	"client_id" text NOT NULL,
	"topic_name" text NOT NULL,
	"payload" "bytea" NOT NULL,
	"qos" smallint NOT NULL,
	"retain" boolean NOT NULL,
	"properties" jsonb,
	"delay_interval_sec" bigint NOT NULL,
	"message_expiry_interval_sec" bigint,
	"created_at_ms" bigint NOT NULL,
	CONSTRAINT "wills_hub_client_id_pk" PRIMARY KEY("hub","client_id")
);
--> statement-breakpoint
CREATE INDEX "audit_events_at_idx" ON "audit_events" USING btree ("at");--> statement-breakpoint
CREATE INDEX "audit_events_client_idx" ON "audit_events" USING btree ("hub","client_id","at");--> statement-breakpoint
CREATE INDEX "audit_events_event_idx" ON "audit_events" USING btree ("event","at");--> statement-breakpoint
CREATE INDEX "deliveries_session_idx" ON "deliveries" USING btree ("hub","client_id");--> statement-breakpoint
CREATE INDEX "deliveries_message_idx" ON "deliveries" USING btree ("message_id");--> statement-breakpoint
CREATE INDEX "permissions_subject_idx" ON "permissions" USING btree ("hub","subject_kind","subject");