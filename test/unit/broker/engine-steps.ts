// Steps shared by the engine unit tests, on top of the in-process harness (test/helpers/engine.ts):
// an engine on a fake clock, CONNECT with any field, PUBLISH through to its acknowledgement, and a
// PINGREQ round trip as the barrier before asserting that something did not arrive. No sockets.
import type { IConnectPacket, Packet } from 'mqtt-packet';
import type { Broker } from '../../../src/broker/broker.ts';
import type { Authenticator } from '../../../src/auth/auth.ts';
import type { BrokerOptions } from '../../../src/broker/options.ts';
import { EngineClient, FaultyStore, startEngine } from '../../helpers/engine.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { decodeFixtures, encodeFixtures, hex, type Fixture } from '../mqtt/codec-fixtures.ts';

export type Version = 4 | 5;
export type Publish = Extract<Packet, { cmd: 'publish' }>;
export type Connack = Extract<Packet, { cmd: 'connack' }>;
export type Suback = Extract<Packet, { cmd: 'suback' }>;
export type Disconnect = Extract<Packet, { cmd: 'disconnect' }>;

/** Both protocol versions, for tests that run once per version. */
export const VERSIONS = [4, 5] as const;
/** The version as the spec names it. */
export const versionName = (v: Version): string => (v === 5 ? '5.0' : '3.1.1');
/** A PUBLISH payload as text. */
export const text = (p: Publish): string => Buffer.from(p.payload).toString();

/** An in-process engine on a store and a fake clock; `restart` and `crash` load a new broker from the same store. */
export interface TestEngine {
  broker: Broker;
  store: FaultyStore;
  clock: FakeClock;
  client(version: Version): EngineClient;
  restart(): Promise<TestEngine>;
  /** As after kill -9: a new broker on the same store and a new clock at the same time; the old
   * broker is abandoned without shutdown (its timers are on the old clock, which nothing advances). */
  crash(): Promise<TestEngine>;
  stop(): Promise<void>;
}

/** Start an engine (default options overridden by `options`) on a FaultyStore and a FakeClock. */
export async function engine(
  options: Partial<BrokerOptions> = {}, store = new FaultyStore(), clock = new FakeClock(), authenticator?: Authenticator,
): Promise<TestEngine> {
  const { broker } = await startEngine(store, options, clock, authenticator);
  return {
    broker, store, clock,
    client: (version) => new EngineClient(broker, version),
    restart: async () => {
      await broker.shutdown();
      return engine(options, store, clock, authenticator);
    },
    crash: () => engine(options, store, new FakeClock(clock.now()), authenticator),
    stop: () => broker.shutdown(),
  };
}

/** Let queued commits (microtasks) and batched writes (setImmediate) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

/** A PINGREQ round trip: everything the broker wrote to `c` before the PINGRESP has been decoded. */
export async function ping(c: EngineClient): Promise<void> {
  const from = c.packets.length;
  c.send({ cmd: 'pingreq' });
  await c.waitFor((p) => p.cmd === 'pingresp', 'PINGRESP', from);
}

/** Settle, then a PINGREQ round trip on each client: the barrier before asserting an absence. */
export async function quiet(...clients: EngineClient[]): Promise<void> {
  await settle();
  for (const c of clients) await ping(c);
}

const nextIds = new WeakMap<EngineClient, number>();
/** A fresh packet id for `c` (ids from 100 up, clear of the fixture table's). */
export function nextId(c: EngineClient): number {
  const id = nextIds.get(c) ?? 100;
  nextIds.set(c, id + 1);
  return id;
}

/** CONNECT with any fields (clean start 1, keep alive 0 unless given); resolves with the CONNACK. */
export async function connectWith(c: EngineClient, clientId: string, fields: Partial<IConnectPacket> = {}): Promise<Connack> {
  const from = c.packets.length;
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: c.version, clean: true, keepalive: 0, clientId, ...fields } as Packet);
  return await c.waitFor((p) => p.cmd === 'connack', 'CONNACK', from) as Connack;
}

/** CONNECT a session that outlives its connection: 3.1.1 clean session 0, 5.0 Session Expiry Interval. */
export function connectPersistent(c: EngineClient, clientId: string, expirySec = 3600, fields: Partial<IConnectPacket> = {}): Promise<Connack> {
  return connectWith(c, clientId, {
    clean: false, ...fields,
    ...(c.version === 5 ? { properties: { sessionExpiryInterval: expirySec, ...fields.properties } } : {}),
  });
}

/** Subscription options as mqtt-packet spells them, plus a 5.0 Subscription Identifier. */
export interface SubscribeOptions { nl?: boolean; rap?: boolean; rh?: 0 | 1 | 2; id?: number }

/** SUBSCRIBE to one filter; resolves with the SUBACK. */
export async function subscribe(c: EngineClient, topic: string, qos: 0 | 1 | 2, o: SubscribeOptions = {}): Promise<Suback> {
  const messageId = nextId(c);
  const from = c.packets.length;
  const options = c.version === 5 ? { nl: o.nl ?? false, rap: o.rap ?? false, rh: o.rh ?? 0 } : {};
  c.send({
    cmd: 'subscribe', messageId, subscriptions: [{ topic, qos, ...options }],
    ...(o.id !== undefined ? { properties: { subscriptionIdentifier: o.id } } : {}),
  } as Packet);
  return await c.waitFor((p) => p.cmd === 'suback' && p.messageId === messageId, 'SUBACK', from) as Suback;
}

/** What a test PUBLISH may set besides topic, payload and QoS. */
export interface PublishOptions { messageId?: number; retain?: boolean; dup?: boolean; properties?: Record<string, unknown> }

/**
 * PUBLISH and wait for its acknowledgement (PUBACK for QoS 1, PUBREC for QoS 2, a PINGREQ round
 * trip for QoS 0, which has none). Resolves with the acknowledgement.
 */
export async function publish(c: EngineClient, topic: string, payload: string | Buffer, qos: 0 | 1 | 2, o: PublishOptions = {}): Promise<Packet | undefined> {
  const messageId = qos > 0 ? (o.messageId ?? nextId(c)) : undefined;
  const from = c.packets.length;
  c.send({
    cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: o.retain ?? false, dup: o.dup ?? false,
    ...(messageId !== undefined ? { messageId } : {}), ...(o.properties ? { properties: o.properties } : {}),
  } as Packet);
  if (qos === 0) {
    await ping(c);
    return undefined;
  }
  const cmd = qos === 1 ? 'puback' : 'pubrec';
  return await c.waitFor((p) => p.cmd === cmd && p.messageId === messageId, cmd.toUpperCase(), from);
}

/** PUBREL for `messageId`; resolves with the PUBCOMP. */
export async function release(c: EngineClient, messageId: number): Promise<Packet> {
  const from = c.packets.length;
  c.send({ cmd: 'pubrel', messageId, reasonCode: 0 } as Packet);
  return await c.waitFor((p) => p.cmd === 'pubcomp' && p.messageId === messageId, 'PUBCOMP', from);
}

/** Resolve once `c` has received at least `n` PUBLISH packets in all. */
export async function publishesReach(c: EngineClient, n: number, what = `${n} PUBLISH packets`): Promise<Publish[]> {
  if (c.publishes.length < n) await c.waitFor(() => c.publishes.length >= n, what);
  return c.publishes;
}

/** Acknowledge a delivery as a client does: PUBACK for QoS 1; PUBREC, then PUBCOMP after the PUBREL, for QoS 2. */
export async function acknowledge(c: EngineClient, p: Publish): Promise<void> {
  const messageId = p.messageId!;
  if (p.qos === 1) {
    c.send({ cmd: 'puback', messageId, reasonCode: 0 } as Packet);
    return;
  }
  if (p.qos !== 2) return;
  const from = c.packets.length;
  c.send({ cmd: 'pubrec', messageId, reasonCode: 0 } as Packet);
  await c.waitFor((x) => x.cmd === 'pubrel' && x.messageId === messageId, 'PUBREL', from);
  c.send({ cmd: 'pubcomp', messageId, reasonCode: 0 } as Packet);
}

/** Resolve with the DISCONNECT the broker sent before closing `c` (5.0). */
export async function disconnectedWith(c: EngineClient): Promise<number> {
  const d = await c.waitFor((p) => p.cmd === 'disconnect', 'DISCONNECT').catch(() => undefined) as Disconnect | undefined;
  await c.whenClosed();
  if (!d) throw new Error(`closed without DISCONNECT; got ${JSON.stringify(c.packets.map((p) => p.cmd))}`);
  return d.reasonCode ?? 0;
}

/** A row of the codec fixture table by name (fails loudly if it was renamed). */
export function fixture(name: string): Fixture<unknown> & { wire: Buffer } {
  const f = [...decodeFixtures, ...encodeFixtures].find((x) => x.name === name);
  if (!f) throw new Error(`no codec fixture named ${name}`);
  return { ...f, wire: hex(f.bytes) };
}
