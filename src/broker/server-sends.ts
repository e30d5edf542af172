// Messages the server sends (REST API, tools): one message builder and one topic check for a
// publish on a topic, a Web PubSub send to chosen sessions on `$webpubsub/server/messages`, and
// a send to a group. Server sends wait while the store is behind, as MQTT publishers do.
import type { Message, QoS } from '../mqtt/packet.ts';
import { isValidHubName } from '../mqtt/hub-name.ts';
import { isTopicWithinLimits, isValidTopicName } from '../mqtt/topic.ts';
import type { Hub, Hubs } from './hub.ts';
import type { IdSource } from './ids.ts';
import type { BrokerOptions } from './options.ts';
import type { Clock, Store } from './ports.ts';
import type { PublishPath } from './publish-path.ts';
import type { Target } from './router.ts';
import type { Session } from './session.ts';

/** What the REST API sees of a session when it selects receivers (Web PubSub connection). */
export interface SessionView {
  readonly clientId: string;
  readonly userId: string | undefined;
  /** Its subscriptions by topic filter: the groups it is in (a live view; copy the keys before changing them). */
  readonly groups: ReadonlyMap<string, unknown>;
  readonly connected: boolean;
}

/** A message the server sends (Web PubSub REST sends). */
export interface ServerMessage {
  payload: Buffer;
  /** MQTT 5 Content Type (text/plain, application/json, application/octet-stream). */
  contentType?: string;
  /** Payload Format Indicator 1 (UTF-8 text). */
  utf8?: boolean;
  /** Message Expiry Interval in seconds; 0 or undefined: never. */
  expirySec?: number;
}

/** A publish on behalf of the server on any topic (admin API, tools). */
export interface ServerPublish {
  hub: string;
  topicName: string;
  payload: Buffer;
  qos: QoS;
  retain?: boolean;
  messageExpiryIntervalSec?: number;
  properties?: Message['properties'];
}

/** Topic on which MQTT clients receive the server's messages (Web PubSub sendToAll / User / Connection). */
export const SERVER_MESSAGES_TOPIC = '$webpubsub/server/messages';

export function sessionView(s: Session): SessionView {
  return { clientId: s.clientId, userId: s.userId, groups: s.subscriptions, connected: s.isConnected };
}

/** Whom a server message on `$webpubsub/server/messages` is for: every session of the hub, one session or a user's sessions. */
export type Receivers = 'all' | { clientId: string } | { userId: string };

export interface ServerSendsDeps {
  readonly options: BrokerOptions;
  readonly store: Store;
  readonly clock: Clock;
  readonly hubs: Hubs;
  readonly ids: IdSource;
  readonly publishing: PublishPath;
}

export class ServerSends {
  readonly #d: ServerSendsDeps;

  constructor(deps: ServerSendsDeps) {
    this.#d = deps;
  }

  /** Publish on a topic: QoS ≤ 2, no publisher id. Throws RangeError for a bad topic or hub, or over the retained caps. */
  async publish(input: ServerPublish): Promise<number> {
    this.#checkTopic(input.topicName, 'invalid topic name');
    if (!isValidHubName(input.hub)) throw new RangeError(`invalid hub name: ${input.hub.slice(0, 100)}`);
    if (input.retain && this.#d.publishing.isOverRetainedCaps(input)) {
      throw new RangeError(`retained message limit of hub ${input.hub} reached`);
    }
    return this.#d.publishing.publish(this.#message(this.#d.hubs.get(input.hub), input.topicName, input.qos, input.payload, {
      retain: input.retain ?? false, properties: input.properties, expirySec: input.messageExpiryIntervalSec,
    }));
  }

  /**
   * Send on `$webpubsub/server/messages` at QoS 1 to `to` in `hub`, leaving out the sessions
   * `accept` refuses (connected or not: an offline persistent session gets it queued, as durable
   * as an MQTT publish). Resolves with the number of sessions, once committed. Only a send to all
   * walks the hub; one session or a user's sessions are found by their indexes.
   */
  async toSessions(hub: Hub, to: Receivers, m: ServerMessage, accept?: (s: SessionView) => boolean): Promise<number> {
    const targets: Target[] = [];
    const add = (s: Session): void => {
      if (!accept || accept(sessionView(s))) targets.push({ session: s, qos: 1, retain: false, subscriptionIds: undefined, shareKey: undefined });
    };
    if (to === 'all') {
      for (const s of hub.sessions.values()) add(s);
    } else if ('clientId' in to) {
      const s = hub.sessions.get(to.clientId);
      if (s) add(s);
    } else {
      for (const s of hub.sessionsOfUser(to.userId)) add(s);
    }
    if (targets.length === 0) return 0;
    await this.#whenStoreKeepsUp();
    return this.#d.publishing.publish(this.#fromRest(hub, SERVER_MESSAGES_TOPIC, m), undefined, { targets });
  }

  /**
   * Send to a group: routed as a QoS 1 PUBLISH to topic `group` (subscribers get it at their
   * granted QoS), leaving out the sessions `accept` refuses.
   */
  async toGroup(hub: Hub, group: string, m: ServerMessage, accept?: (s: SessionView) => boolean): Promise<number> {
    await this.#whenStoreKeepsUp();
    return this.#d.publishing.publish(this.#fromRest(hub, group, m), undefined, accept ? { accept: (s) => accept(sessionView(s)) } : {});
  }

  /** Throws RangeError unless `group` can be a topic here (a group name a message is sent to). */
  checkGroup(group: string): void {
    this.#checkTopic(group, 'a group a message is sent to must be a valid topic name');
  }

  #checkTopic(topicName: string, what: string): void {
    const o = this.#d.options;
    if (!isValidTopicName(topicName) || !isTopicWithinLimits(topicName, o.maxTopicBytes, o.maxTopicLevels)) {
      throw new RangeError(`${what}: ${topicName.slice(0, 100)}`);
    }
  }

  /** A REST send as a message: QoS 1, its content type and text flag as MQTT 5 properties. */
  #fromRest(hub: Hub, topicName: string, m: ServerMessage): Message {
    const properties: NonNullable<Message['properties']> = {};
    if (m.contentType !== undefined) properties.contentType = m.contentType;
    if (m.utf8) properties.payloadFormatIndicator = true;
    return this.#message(hub, topicName, 1, m.payload, {
      retain: false, properties: Object.keys(properties).length > 0 ? properties : undefined, expirySec: m.expirySec,
    });
  }

  #message(hub: Hub, topicName: string, qos: QoS, payload: Buffer, o: { retain: boolean; properties: Message['properties']; expirySec: number | undefined }): Message {
    const now = this.#d.clock.now();
    return {
      id: this.#d.ids.next(), hub: hub.name, topicName, payload, qos, retain: o.retain, properties: o.properties, createdAtMs: now,
      expiresAtMs: o.expirySec ? now + o.expirySec * 1000 : undefined,
    };
  }

  /**
   * Server sends wait while the store is behind, as MQTT publishers are held back then
   * (PublishPath.throttleIfBehind): REST callers must not grow the backlog without bound.
   */
  async #whenStoreKeepsUp(): Promise<void> {
    const { options: o, store } = this.#d;
    if (store.backlogUnits > o.maxStoreBacklogUnits || store.backlogBytes > o.maxStoreBacklogBytes) {
      await store.whenBacklogBelow(o.maxStoreBacklogUnits / 2, o.maxStoreBacklogBytes / 2);
    }
  }
}
