// Internal packet model (what codec.ts produces and consumes) and the routed Message.
// Packets are wire-level; a Message is what the router and the store see.

export type QoS = 0 | 1 | 2;
export type ProtocolVersion = 4 | 5;
export type UserProperties = Record<string, string | string[]>;

/** Application-message properties that travel with a Message (MQTT 5 §3.3.2.3). */
export interface MessageProperties {
  payloadFormatIndicator?: boolean;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Buffer;
  userProperties?: UserProperties;
}

export interface ConnectPacket {
  type: 'connect';
  protocolName: string;
  protocolVersion: ProtocolVersion;
  clientId: string;
  cleanStart: boolean;
  keepAliveSec: number;
  username?: string;
  password?: Buffer;
  will?: {
    topicName: string;
    payload: Buffer;
    qos: QoS;
    retain: boolean;
    properties?: MessageProperties & { willDelayInterval?: number; messageExpiryInterval?: number };
  };
  properties?: {
    sessionExpiryInterval?: number;
    receiveMaximum?: number;
    maximumPacketSize?: number;
    topicAliasMaximum?: number;
    requestResponseInformation?: boolean;
    requestProblemInformation?: boolean;
    userProperties?: UserProperties;
    authenticationMethod?: string;
    authenticationData?: Buffer;
  };
}

export interface ConnackPacket {
  type: 'connack';
  sessionPresent: boolean;
  reasonCode: number;
  properties?: {
    sessionExpiryInterval?: number;
    receiveMaximum?: number;
    maximumQoS?: number;
    retainAvailable?: boolean;
    maximumPacketSize?: number;
    assignedClientIdentifier?: string;
    topicAliasMaximum?: number;
    reasonString?: string;
    userProperties?: UserProperties;
    wildcardSubscriptionAvailable?: boolean;
    subscriptionIdentifiersAvailable?: boolean;
    sharedSubscriptionAvailable?: boolean;
    serverKeepAlive?: number;
    responseInformation?: string;
    serverReference?: string;
    authenticationMethod?: string;
    authenticationData?: Buffer;
  };
}

export interface PublishPacket {
  type: 'publish';
  topicName: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  packetId?: number;
  properties?: MessageProperties & {
    messageExpiryInterval?: number;
    topicAlias?: number;
    subscriptionIdentifier?: number | number[];
  };
}

interface AckProperties {
  reasonString?: string;
  userProperties?: UserProperties;
}

export interface PubAckPacket { type: 'puback'; packetId: number; reasonCode: number; properties?: AckProperties }
export interface PubRecPacket { type: 'pubrec'; packetId: number; reasonCode: number; properties?: AckProperties }
export interface PubRelPacket { type: 'pubrel'; packetId: number; reasonCode: number; properties?: AckProperties }
export interface PubCompPacket { type: 'pubcomp'; packetId: number; reasonCode: number; properties?: AckProperties }

export interface SubscriptionRequest {
  topicFilter: string;
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
}

export interface SubscribePacket {
  type: 'subscribe';
  packetId: number;
  subscriptions: SubscriptionRequest[];
  properties?: { subscriptionIdentifier?: number; userProperties?: UserProperties };
}
export interface SubackPacket { type: 'suback'; packetId: number; reasonCodes: number[]; properties?: AckProperties }
export interface UnsubscribePacket {
  type: 'unsubscribe';
  packetId: number;
  topicFilters: string[];
  properties?: { userProperties?: UserProperties };
}
export interface UnsubackPacket { type: 'unsuback'; packetId: number; reasonCodes: number[]; properties?: AckProperties }
export interface PingreqPacket { type: 'pingreq' }
export interface PingrespPacket { type: 'pingresp' }
export interface DisconnectPacket {
  type: 'disconnect';
  reasonCode: number;
  properties?: { sessionExpiryInterval?: number; reasonString?: string; userProperties?: UserProperties; serverReference?: string };
}
export interface AuthPacket {
  type: 'auth';
  reasonCode: number;
  properties?: { authenticationMethod?: string; authenticationData?: Buffer; reasonString?: string; userProperties?: UserProperties };
}

/** Every packet a client may send to the server. */
export type InboundPacket =
  | ConnectPacket | PublishPacket | PubAckPacket | PubRecPacket | PubRelPacket | PubCompPacket
  | SubscribePacket | UnsubscribePacket | PingreqPacket | DisconnectPacket | AuthPacket;

/** Every packet the server may send to a client. */
export type OutboundPacket =
  | ConnackPacket | PublishPacket | PubAckPacket | PubRecPacket | PubRelPacket | PubCompPacket
  | SubackPacket | UnsubackPacket | PingrespPacket | DisconnectPacket | AuthPacket;

/** A routed application message: stored once, delivered to many sessions. */
export interface Message {
  /** Broker-assigned id, unique per node; deliveries reference it. */
  id: number;
  hub: string;
  topicName: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  properties?: MessageProperties;
  /** Absolute expiry time derived from Message Expiry Interval, if any. */
  expiresAtMs?: number;
  /** Client id of the publisher (for No Local), undefined for server-originated messages. */
  publisherId?: string;
  createdAtMs: number;
}
