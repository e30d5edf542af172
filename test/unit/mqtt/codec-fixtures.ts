// Shared MQTT packet fixtures (STYLE §8 "Codec fixtures"): one row per packet, with the exact
// bytes on the wire and the internal packet they decode to or are encoded from. Used by the codec
// round-trip tests and meant to be reused as expected output in channel tests.
import type {
  AuthPacket, ConnackPacket, ConnectPacket, DisconnectPacket, InboundPacket, OutboundPacket, PingreqPacket,
  PingrespPacket, ProtocolVersion, PubAckPacket, PubCompPacket, PublishPacket, PubRecPacket, PubRelPacket,
  SubackPacket, SubscribePacket, UnsubackPacket, UnsubscribePacket,
} from '../../../src/mqtt/packet.ts';

/** One fixture row; `bytes` is hex, whitespace ignored. */
export interface Fixture<P> {
  name: string;
  version: ProtocolVersion;
  bytes: string;
  packet: P;
}

/** Hex (whitespace ignored) to bytes. */
export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** CONNECTs that put a reader into each protocol version before a non-CONNECT fixture. */
export const connectBytes: Record<ProtocolVersion, string> = {
  4: '10 0e 0004 4d515454 04 02 003c 0002 6331',
  5: '10 0f 0004 4d515454 05 02 003c 00 0002 6335',
};

type ClientOnly = ConnectPacket | SubscribePacket | UnsubscribePacket | PingreqPacket;
type ServerOnly = ConnackPacket | SubackPacket | UnsubackPacket | PingrespPacket;
type Both = PublishPacket | PubAckPacket | PubRecPacket | PubRelPacket | PubCompPacket | DisconnectPacket | AuthPacket;

/** Packets only a client sends: decode only. */
export const clientFixtures: Fixture<ClientOnly>[] = [
  {
    name: 'CONNECT 3.1.1 minimal, clean session',
    version: 4,
    bytes: '10 0e 0004 4d515454 04 02 003c 0002 6331',
    packet: { type: 'connect', protocolName: 'MQTT', protocolVersion: 4, clientId: 'c1', cleanStart: true, keepAliveSec: 60 },
  },
  {
    name: 'CONNECT 3.1.1 with will (QoS 1, retain), username and password',
    version: 4,
    // flags 0xec: username, password, will retain, will QoS 1, will flag; clean session 0
    bytes: '10 1f 0004 4d515454 04 ec 001e 0002 6331 0003 772f74 0003 627965 0001 75 0002 7077',
    packet: {
      type: 'connect', protocolName: 'MQTT', protocolVersion: 4, clientId: 'c1', cleanStart: false, keepAliveSec: 30,
      username: 'u', password: Buffer.from('pw'),
      will: { topicName: 'w/t', payload: Buffer.from('bye'), qos: 1, retain: true },
    },
  },
  {
    name: 'CONNECT 5.0 with properties, will properties, username and password',
    version: 5,
    // flags 0xd6: username, password, will QoS 2, will flag, clean start
    bytes: '10 4d 0004 4d515454 05 d6 000a'
      + ' 17 11 00000e10 21 0014 27 000003e8 22 0005 26 0001 61 0001 62' // connect properties
      + ' 0002 6335'
      + ' 19 18 00000005 02 0000003c 03 000a 746578742f706c61696e 01 01' // will properties
      + ' 0001 77 0001 78 0001 75 0002 7077',
    packet: {
      type: 'connect', protocolName: 'MQTT', protocolVersion: 5, clientId: 'c5', cleanStart: true, keepAliveSec: 10,
      username: 'u', password: Buffer.from('pw'),
      properties: { sessionExpiryInterval: 3600, receiveMaximum: 20, maximumPacketSize: 1000, topicAliasMaximum: 5, userProperties: { a: 'b' } },
      will: {
        topicName: 'w', payload: Buffer.from('x'), qos: 2, retain: false,
        properties: { willDelayInterval: 5, messageExpiryInterval: 60, contentType: 'text/plain', payloadFormatIndicator: true },
      },
    },
  },
  {
    name: 'CONNECT 5.0 empty client id',
    version: 5,
    bytes: '10 0d 0004 4d515454 05 02 0000 00 0000',
    packet: { type: 'connect', protocolName: 'MQTT', protocolVersion: 5, clientId: '', cleanStart: true, keepAliveSec: 0 },
  },
  {
    name: 'SUBSCRIBE 3.1.1 two filters',
    version: 4,
    bytes: '82 0c 0009 0003 612f2b 01 0001 23 00',
    packet: {
      type: 'subscribe', packetId: 9,
      subscriptions: [
        { topicFilter: 'a/+', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 },
        { topicFilter: '#', qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0 },
      ],
    },
  },
  {
    name: 'SUBSCRIBE 5.0 with subscription identifier and options (QoS 2, No Local, RAP, RH 2)',
    version: 5,
    // options 0x2e: retain handling 2, retain as published, no local, QoS 2
    bytes: '82 0b 0009 02 0b 2a 0003 612f23 2e',
    packet: {
      type: 'subscribe', packetId: 9, properties: { subscriptionIdentifier: 42 },
      subscriptions: [{ topicFilter: 'a/#', qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2 }],
    },
  },
  {
    name: 'UNSUBSCRIBE 3.1.1',
    version: 4,
    bytes: 'a2 0a 000a 0003 612f2b 0001 62',
    packet: { type: 'unsubscribe', packetId: 10, topicFilters: ['a/+', 'b'] },
  },
  {
    name: 'UNSUBSCRIBE 5.0',
    version: 5,
    bytes: 'a2 0b 000a 00 0003 612f2b 0001 62',
    packet: { type: 'unsubscribe', packetId: 10, topicFilters: ['a/+', 'b'] },
  },
  { name: 'PINGREQ', version: 4, bytes: 'c0 00', packet: { type: 'pingreq' } },
];

/** Packets both sides send: decoded from these bytes and encoded to exactly these bytes. */
export const sharedFixtures: Fixture<Both>[] = [
  {
    name: 'PUBLISH 3.1.1 QoS 0',
    version: 4,
    bytes: '30 07 0003 612f62 6869',
    packet: { type: 'publish', topicName: 'a/b', payload: Buffer.from('hi'), qos: 0, retain: false, dup: false },
  },
  {
    name: 'PUBLISH 3.1.1 QoS 1 retain',
    version: 4,
    bytes: '33 09 0003 612f62 0007 6869',
    packet: { type: 'publish', topicName: 'a/b', payload: Buffer.from('hi'), qos: 1, retain: true, dup: false, packetId: 7 },
  },
  {
    name: 'PUBLISH 3.1.1 QoS 2 DUP, empty payload',
    version: 4,
    bytes: '3c 05 0001 61 0102',
    packet: { type: 'publish', topicName: 'a', payload: Buffer.alloc(0), qos: 2, retain: false, dup: true, packetId: 258 },
  },
  {
    name: 'PUBLISH 5.0 QoS 0 without properties',
    version: 5,
    bytes: '30 05 0001 61 00 78',
    packet: { type: 'publish', topicName: 'a', payload: Buffer.from('x'), qos: 0, retain: false, dup: false },
  },
  {
    name: 'PUBLISH 5.0 QoS 1 with properties',
    version: 5,
    bytes: '32 2e 0001 74 0001 27'
      + ' 01 01' // payload format indicator
      + ' 02 00000064' // message expiry interval 100
      + ' 03 0001 63' // content type
      + ' 08 0001 72' // response topic
      + ' 09 0002 0102' // correlation data
      + ' 23 0003' // topic alias
      + ' 26 0001 6b 0002 7631 26 0001 6b 0002 7632' // user properties k=v1, k=v2
      + ' 70',
    packet: {
      type: 'publish', topicName: 't', payload: Buffer.from('p'), qos: 1, retain: false, dup: false, packetId: 1,
      properties: {
        payloadFormatIndicator: true, messageExpiryInterval: 100, contentType: 'c', responseTopic: 'r',
        correlationData: Buffer.from([1, 2]), topicAlias: 3, userProperties: { k: ['v1', 'v2'] },
      },
    },
  },
  {
    name: 'PUBLISH 5.0 QoS 2 with topic alias and empty topic name',
    version: 5,
    bytes: '34 0a 0000 0005 03 23 0001 7a7a',
    packet: {
      type: 'publish', topicName: '', payload: Buffer.from('zz'), qos: 2, retain: false, dup: false, packetId: 5,
      properties: { topicAlias: 1 },
    },
  },
  { name: 'PUBACK 3.1.1', version: 4, bytes: '40 02 0005', packet: { type: 'puback', packetId: 5, reasonCode: 0 } },
  { name: 'PUBACK 5.0 success, reason code omitted', version: 5, bytes: '40 02 0005', packet: { type: 'puback', packetId: 5, reasonCode: 0 } },
  {
    name: 'PUBACK 5.0 No matching subscribers',
    version: 5,
    bytes: '40 04 0005 10 00',
    packet: { type: 'puback', packetId: 5, reasonCode: 0x10 },
  },
  { name: 'PUBREC 3.1.1', version: 4, bytes: '50 02 0006', packet: { type: 'pubrec', packetId: 6, reasonCode: 0 } },
  {
    name: 'PUBREC 5.0 Not authorized with reason string',
    version: 5,
    bytes: '50 09 0005 87 05 1f 0002 6e6f',
    packet: { type: 'pubrec', packetId: 5, reasonCode: 0x87, properties: { reasonString: 'no' } },
  },
  { name: 'PUBREL 3.1.1', version: 4, bytes: '62 02 0006', packet: { type: 'pubrel', packetId: 6, reasonCode: 0 } },
  {
    name: 'PUBREL 5.0 Packet Identifier not found',
    version: 5,
    bytes: '62 04 0006 92 00',
    packet: { type: 'pubrel', packetId: 6, reasonCode: 0x92 },
  },
  { name: 'PUBCOMP 3.1.1', version: 4, bytes: '70 02 0006', packet: { type: 'pubcomp', packetId: 6, reasonCode: 0 } },
  {
    name: 'PUBCOMP 5.0 Packet Identifier not found',
    version: 5,
    bytes: '70 04 0006 92 00',
    packet: { type: 'pubcomp', packetId: 6, reasonCode: 0x92 },
  },
  {
    name: 'DISCONNECT 5.0 with will, session expiry and reason string',
    version: 5,
    bytes: 'e0 0d 04 0b 11 00000000 1f 0003 627965',
    packet: { type: 'disconnect', reasonCode: 0x04, properties: { sessionExpiryInterval: 0, reasonString: 'bye' } },
  },
  {
    name: 'DISCONNECT 5.0 Session taken over',
    version: 5,
    bytes: 'e0 02 8e 00',
    packet: { type: 'disconnect', reasonCode: 0x8e },
  },
  {
    name: 'AUTH 5.0 continue authentication',
    version: 5,
    bytes: 'f0 06 18 04 15 0001 6d',
    packet: { type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'm' } },
  },
];

/** DISCONNECT 3.1.1 (client to server only; 3.1.1 servers never send it). */
export const disconnectV4Fixture: Fixture<DisconnectPacket> = {
  name: 'DISCONNECT 3.1.1',
  version: 4,
  bytes: 'e0 00',
  packet: { type: 'disconnect', reasonCode: 0 },
};

/** Packets only the server sends: encode only. */
export const serverFixtures: Fixture<ServerOnly>[] = [
  { name: 'CONNACK 3.1.1 accepted', version: 4, bytes: '20 02 00 00', packet: { type: 'connack', sessionPresent: false, reasonCode: 0 } },
  {
    name: 'CONNACK 3.1.1 session present, not authorized',
    version: 4,
    bytes: '20 02 01 05',
    packet: { type: 'connack', sessionPresent: true, reasonCode: 5 },
  },
  { name: 'CONNACK 5.0 success', version: 5, bytes: '20 03 00 00 00', packet: { type: 'connack', sessionPresent: false, reasonCode: 0 } },
  {
    name: 'CONNACK 5.0 with properties',
    version: 5,
    bytes: '20 11 01 00 0e 21 000a 22 0003 12 0003 67656e 25 00',
    packet: {
      type: 'connack', sessionPresent: true, reasonCode: 0,
      properties: { receiveMaximum: 10, topicAliasMaximum: 3, assignedClientIdentifier: 'gen', retainAvailable: false },
    },
  },
  { name: 'SUBACK 3.1.1', version: 4, bytes: '90 05 0009 00 01 80', packet: { type: 'suback', packetId: 9, reasonCodes: [0, 1, 0x80] } },
  { name: 'SUBACK 5.0', version: 5, bytes: '90 05 0009 00 02 8f', packet: { type: 'suback', packetId: 9, reasonCodes: [2, 0x8f] } },
  {
    name: 'UNSUBACK 3.1.1 has no payload',
    version: 4,
    bytes: 'b0 02 0009',
    packet: { type: 'unsuback', packetId: 9, reasonCodes: [0, 0x11] },
  },
  { name: 'UNSUBACK 5.0', version: 5, bytes: 'b0 05 0009 00 00 11', packet: { type: 'unsuback', packetId: 9, reasonCodes: [0, 0x11] } },
  { name: 'PINGRESP', version: 4, bytes: 'd0 00', packet: { type: 'pingresp' } },
];

/** Every fixture a server decodes. */
export const decodeFixtures: Fixture<InboundPacket>[] = [...clientFixtures, ...sharedFixtures, disconnectV4Fixture];
/** Every fixture a server encodes. */
export const encodeFixtures: Fixture<OutboundPacket>[] = [...serverFixtures, ...sharedFixtures];
