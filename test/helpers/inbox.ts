// What an MQTT.js client receives, in wire order: every PUBLISH as MQTT.js parses it (before any
// acknowledgement), plus SUBSCRIBE/UNSUBSCRIBE sent around MQTT.js's own topic-filter check.
import mqttPacket from 'mqtt-packet';
import type { IPublishPacket, ISubackPacket, ISubscription, IUnsubackPacket, Packet } from 'mqtt-packet';
import type { MqttClient } from 'mqtt';

/** One received PUBLISH, flattened for assertions. */
export interface Received {
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
  /** Subscription Identifiers (5.0), sorted; empty when none. */
  subscriptionIds: number[];
  packet: IPublishPacket;
}

/** Records PUBLISH packets in the order they arrive ('packetreceive' fires before MQTT.js handles them). */
export class Inbox {
  readonly items: Received[] = [];
  readonly #waiters = new Set<() => void>();

  constructor(client: MqttClient) {
    client.on('packetreceive', (p: Packet) => {
      if (p.cmd !== 'publish') return;
      const sid = p.properties?.subscriptionIdentifier;
      this.items.push({
        topic: p.topic, payload: Buffer.from(p.payload).toString(), qos: p.qos, retain: p.retain,
        subscriptionIds: sid === undefined ? [] : (Array.isArray(sid) ? [...sid] : [sid]).sort((a, b) => a - b),
        packet: p,
      });
      for (const w of [...this.#waiters]) w();
    });
  }

  /** Messages received on `topic`. */
  on(topic: string): Received[] {
    return this.items.filter((m) => m.topic === topic);
  }

  /** Call `fn` after every new message until the returned function is called. */
  watch(fn: () => void): () => void {
    this.#waiters.add(fn);
    return () => this.#waiters.delete(fn);
  }

  /** Resolve once `done()` holds; reject after `timeoutMs`. */
  until(done: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    return untilAll([this], done, what, timeoutMs);
  }

  /** The first message on `topic` (already received or the next one). */
  async next(topic: string, timeoutMs = 5000): Promise<Received> {
    await this.until(() => this.on(topic).length > 0, `a message on ${topic}`, timeoutMs);
    return this.on(topic)[0]!;
  }

  /** Resolve once `n` messages have arrived in total. */
  async count(n: number, timeoutMs = 5000): Promise<Received[]> {
    await this.until(() => this.items.length >= n, `${n} messages`, timeoutMs);
    return this.items;
  }
}

/** Resolve once `done()` holds, checking after each message to any of `inboxes`; reject after `timeoutMs`. */
export function untilAll(inboxes: Inbox[], done: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const stops: Array<() => void> = [];
    const finish = (): void => {
      clearTimeout(timer);
      for (const stop of stops) stop();
    };
    const check = (): void => {
      if (!done()) return;
      finish();
      resolve();
    };
    const timer = setTimeout(() => {
      finish();
      const got = inboxes.map((i) => i.items.map((m) => `${m.topic}:${m.payload}`));
      reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(got)}`));
    }, timeoutMs);
    for (const inbox of inboxes) stops.push(inbox.watch(check));
    check();
  });
}

function versionOf(client: MqttClient): 4 | 5 {
  return client.options.protocolVersion === 5 ? 5 : 4;
}

function awaitAck<T extends Packet>(client: MqttClient, cmd: 'suback' | 'unsuback', messageId: number, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      client.off('packetreceive', onPacket);
      client.off('close', onClose);
      client.messageIdProvider.deallocate(messageId);
    };
    const onPacket = (p: Packet): void => {
      if (p.cmd !== cmd || p.messageId !== messageId) return;
      done();
      resolve(p as T);
    };
    const onClose = (): void => {
      done();
      reject(new Error(`connection closed before ${cmd} for packet id ${messageId}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no ${cmd} for packet id ${messageId}`));
    }, timeoutMs);
    client.on('packetreceive', onPacket);
    client.on('close', onClose);
  });
}

/**
 * Send a SUBSCRIBE on an MQTT.js connection without MQTT.js's own filter validation (it refuses
 * filters such as `a/#/b`), and resolve with the SUBACK. The packet id comes from the client's
 * allocator so it cannot collide with MQTT.js's own packets.
 */
export function subscribeRaw(
  client: MqttClient, subscriptions: ISubscription[], properties?: { subscriptionIdentifier?: number }, timeoutMs = 5000,
): Promise<ISubackPacket> {
  const messageId = client.messageIdProvider.allocate();
  if (messageId === null) throw new Error('no packet id left');
  const acked = awaitAck<ISubackPacket>(client, 'suback', messageId, timeoutMs);
  const packet: Packet = { cmd: 'subscribe', messageId, subscriptions, ...(properties ? { properties } : {}) };
  (client.stream as unknown as { write(b: Buffer): boolean }).write(mqttPacket.generate(packet, { protocolVersion: versionOf(client) }));
  return acked;
}

/** Same as `subscribeRaw` for UNSUBSCRIBE; resolves with the UNSUBACK. */
export function unsubscribeRaw(client: MqttClient, topicFilters: string[], timeoutMs = 5000): Promise<IUnsubackPacket> {
  const messageId = client.messageIdProvider.allocate();
  if (messageId === null) throw new Error('no packet id left');
  const acked = awaitAck<IUnsubackPacket>(client, 'unsuback', messageId, timeoutMs);
  const packet: Packet = { cmd: 'unsubscribe', messageId, unsubscriptions: topicFilters };
  (client.stream as unknown as { write(b: Buffer): boolean }).write(mqttPacket.generate(packet, { protocolVersion: versionOf(client) }));
  return acked;
}

/**
 * Resolve once the broker closes the connection, with the reason code of the DISCONNECT it sent
 * first (undefined if it closed without one). Start waiting before triggering the close.
 */
export function serverDisconnect(client: MqttClient, timeoutMs = 5000): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    let reasonCode: number | undefined;
    const onPacket = (p: Packet): void => {
      if (p.cmd === 'disconnect') reasonCode = p.reasonCode ?? 0;
    };
    const onClose = (): void => {
      clearTimeout(timer);
      client.off('packetreceive', onPacket);
      resolve(reasonCode);
    };
    const timer = setTimeout(() => {
      client.off('packetreceive', onPacket);
      client.off('close', onClose);
      reject(new Error(`connection not closed within ${timeoutMs} ms`));
    }, timeoutMs);
    client.on('packetreceive', onPacket);
    client.once('close', onClose);
  });
}
