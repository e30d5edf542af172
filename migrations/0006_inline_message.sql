-- A message that only one delivery references when it is committed is stored inside that
-- delivery's row (message_* columns, payload not null) instead of in a messages row: one row per
-- durable QoS 1/2 message to a single persistent session instead of two. tern_apply_hot takes
-- those deliveries as their own arrays (i_*) besides the plain ones (d_*), and the commit-order locks
-- of two batches written at once (o_*).
ALTER TABLE "deliveries" ADD COLUMN "message_topic_name" text;--> statement-breakpoint
ALTER TABLE "deliveries" ADD COLUMN "message_payload" "bytea";--> statement-breakpoint
ALTER TABLE "deliveries" ADD COLUMN "message_qos" smallint;--> statement-breakpoint
ALTER TABLE "deliveries" ADD COLUMN "message_retain" boolean;--> statement-breakpoint
ALTER TABLE "deliveries" ADD COLUMN "message_properties" jsonb;--> statement-breakpoint
ALTER TABLE "deliveries" ADD COLUMN "message_expires_at_ms" bigint;--> statement-breakpoint
ALTER TABLE "deliveries" ADD COLUMN "message_publisher_id" text;--> statement-breakpoint
ALTER TABLE "deliveries" ADD COLUMN "message_created_at_ms" bigint;--> statement-breakpoint
DROP FUNCTION IF EXISTS tern_apply_hot(bigint[], text[], text[], bytea, int[], smallint[], boolean[], jsonb[], bigint[], text[], bigint[],
  bigint[], bigint[], text[], text[], bigint[], smallint[], boolean[], text[], text[], int[], text[], bigint[], int[], text[],
  text[], text[], int[], text[], text[], int[]);
--> statement-breakpoint
CREATE OR REPLACE FUNCTION tern_apply_hot(
  m_id bigint[], m_hub text[], m_topic text[], m_payload bytea, m_plen int[], m_qos smallint[], m_retain boolean[],
  m_props jsonb[], m_expires bigint[], m_publisher text[], m_created bigint[],
  d_delete bigint[],
  d_id bigint[], d_hub text[], d_client text[], d_message bigint[], d_qos smallint[], d_retain boolean[],
  d_sids text[], d_share text[], d_packet int[], d_state text[],
  i_id bigint[], i_hub text[], i_client text[], i_message bigint[], i_qos smallint[], i_retain boolean[],
  i_sids text[], i_share text[], i_packet int[], i_state text[],
  i_topic text[], i_payload bytea, i_plen int[], i_mqos smallint[], i_mretain boolean[], i_props jsonb[], i_expires bigint[],
  i_publisher text[], i_created bigint[],
  u_id bigint[], u_packet int[], u_state text[],
  q_del_hub text[], q_del_client text[], q_del_packet int[],
  q_add_hub text[], q_add_client text[], q_add_packet int[],
  o_space int, o_lock int, o_after int
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  -- Commit order of batches written at once: hold this batch's lock until the transaction ends
  IF o_lock IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock(o_space, o_lock);
  END IF;
  IF cardinality(m_id) > 0 THEN
    INSERT INTO messages (id, hub, topic_name, payload, qos, retain, properties, expires_at_ms, publisher_id, created_at_ms)
    SELECT u.id, u.hub, u.topic, substring(m_payload FROM (u.off - u.len + 1)::int FOR u.len), u.qos, u.retain, u.props,
      u.expires, u.publisher, u.created
    FROM (
      SELECT t.*, sum(t.len) OVER (ORDER BY t.ord) AS off
      FROM unnest(m_id, m_hub, m_topic, m_plen, m_qos, m_retain, m_props, m_expires, m_publisher, m_created) WITH ORDINALITY
        AS t(id, hub, topic, len, qos, retain, props, expires, publisher, created, ord)
    ) u
    ON CONFLICT (id) DO NOTHING;
  END IF;
  IF cardinality(d_delete) > 0 THEN
    DELETE FROM deliveries WHERE id = ANY(d_delete);
  END IF;
  IF cardinality(d_id) > 0 THEN
    INSERT INTO deliveries (id, hub, client_id, message_id, qos, retain, subscription_ids, share_key, packet_id, state)
    SELECT d.id, d.hub, d.client_id, d.message_id, d.qos, d.retain, d.sids::int[], d.share_key, d.packet_id, d.state
    FROM unnest(d_id, d_hub, d_client, d_message, d_qos, d_retain, d_sids, d_share, d_packet, d_state)
      AS d(id, hub, client_id, message_id, qos, retain, sids, share_key, packet_id, state)
    ON CONFLICT (id) DO UPDATE SET packet_id = excluded.packet_id, state = excluded.state;
  END IF;
  IF cardinality(i_id) > 0 THEN
    INSERT INTO deliveries (id, hub, client_id, message_id, qos, retain, subscription_ids, share_key, packet_id, state,
      message_topic_name, message_payload, message_qos, message_retain, message_properties, message_expires_at_ms,
      message_publisher_id, message_created_at_ms)
    SELECT u.id, u.hub, u.client_id, u.message_id, u.qos, u.retain, u.sids::int[], u.share_key, u.packet_id, u.state,
      u.topic, substring(i_payload FROM (u.off - u.len + 1)::int FOR u.len), u.mqos, u.mretain, u.props, u.expires,
      u.publisher, u.created
    FROM (
      SELECT t.*, sum(t.len) OVER (ORDER BY t.ord) AS off
      FROM unnest(i_id, i_hub, i_client, i_message, i_qos, i_retain, i_sids, i_share, i_packet, i_state,
        i_topic, i_plen, i_mqos, i_mretain, i_props, i_expires, i_publisher, i_created) WITH ORDINALITY
        AS t(id, hub, client_id, message_id, qos, retain, sids, share_key, packet_id, state,
          topic, len, mqos, mretain, props, expires, publisher, created, ord)
    ) u
    ON CONFLICT (id) DO UPDATE SET packet_id = excluded.packet_id, state = excluded.state;
  END IF;
  IF cardinality(u_id) > 0 THEN
    UPDATE deliveries t SET packet_id = u.packet_id, state = u.state
    FROM unnest(u_id, u_packet, u_state) AS u(id, packet_id, state) WHERE t.id = u.id;
  END IF;
  IF cardinality(q_del_hub) > 0 THEN
    DELETE FROM inbound_qos2 t USING unnest(q_del_hub, q_del_client, q_del_packet) AS d(hub, client_id, packet_id)
    WHERE t.hub = d.hub AND t.client_id = d.client_id AND t.packet_id = d.packet_id;
  END IF;
  IF cardinality(q_add_hub) > 0 THEN
    INSERT INTO inbound_qos2 (hub, client_id, packet_id) SELECT * FROM unnest(q_add_hub, q_add_client, q_add_packet)
    ON CONFLICT DO NOTHING;
  END IF;
  -- ... and commit only once the batch written before this one has ended (its lock is free then)
  IF o_after IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock_shared(o_space, o_after);
  END IF;
END
$$;
