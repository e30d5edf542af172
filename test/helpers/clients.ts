// MQTT.js clients against a BrokerProcess, over either transport, and the [tcp, ws] × [4, 5] matrix.
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import type { BrokerProcess } from './broker-process.ts';

export type Transport = 'tcp' | 'ws';
export type Version = 4 | 5;

/** Every transport × protocol version combination. */
export const matrix: Array<{ transport: Transport; version: Version; name: string }> = [
  { transport: 'tcp', version: 4, name: 'tcp v3.1.1' },
  { transport: 'tcp', version: 5, name: 'tcp v5' },
  { transport: 'ws', version: 4, name: 'ws v3.1.1' },
  { transport: 'ws', version: 5, name: 'ws v5' },
];

let counter = 0;
/** A client id unique within this test process. */
export function uniqueId(prefix = 'c'): string {
  counter++;
  return `${prefix}-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Connect with MQTT.js; rejects on CONNACK failure. Reconnect is off unless asked for. */
export async function connect(
  broker: BrokerProcess, transport: Transport, version: Version, opts: IClientOptions = {},
): Promise<MqttClient> {
  const url = transport === 'tcp' ? broker.mqttUrl : broker.wsUrl();
  return mqtt.connectAsync(url, { protocolVersion: version, reconnectPeriod: 0, connectTimeout: 5000, clientId: uniqueId(), ...opts });
}

/**
 * Start an MQTT.js client without waiting for CONNACK, so that listeners can be attached before
 * anything is received (a resumed session delivers right after CONNACK). `connack` rejects if
 * the connection is refused or closes first.
 */
export function startClient(
  broker: BrokerProcess, transport: Transport, version: Version, opts: IClientOptions = {},
): { client: MqttClient; connack: Promise<IConnackPacket> } {
  const url = transport === 'tcp' ? broker.mqttUrl : broker.wsUrl();
  const client = mqtt.connect(url, { protocolVersion: version, reconnectPeriod: 0, connectTimeout: 5000, clientId: uniqueId(), ...opts });
  const connack = new Promise<IConnackPacket>((resolve, reject) => {
    const onConnect = (p: IConnackPacket): void => { cleanup(); resolve(p); };
    const onError = (e: Error): void => { cleanup(); reject(e); };
    const onClose = (): void => { cleanup(); reject(new Error('connection closed before CONNACK')); };
    const cleanup = (): void => {
      client.off('connect', onConnect);
      client.off('error', onError);
      client.off('close', onClose);
    };
    client.on('connect', onConnect);
    client.on('error', onError);
    client.on('close', onClose);
  });
  return { client, connack };
}

/** Resolve with the next `n` messages a client receives. */
export function collect(client: MqttClient, n: number, timeoutMs = 5000): Promise<Array<{ topic: string; payload: Buffer; packet: mqtt.IPublishPacket }>> {
  return new Promise((resolve, reject) => {
    const got: Array<{ topic: string; payload: Buffer; packet: mqtt.IPublishPacket }> = [];
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      reject(new Error(`expected ${n} messages, got ${got.length}`));
    }, timeoutMs);
    const onMessage = (topic: string, payload: Buffer, packet: mqtt.IPublishPacket): void => {
      got.push({ topic, payload, packet });
      if (got.length === n) {
        clearTimeout(timer);
        client.off('message', onMessage);
        resolve(got);
      }
    };
    client.on('message', onMessage);
  });
}

/** Resolve true if the client receives nothing within `ms`. */
export function expectNoMessage(client: MqttClient, ms = 300): Promise<boolean> {
  return new Promise((resolve) => {
    const onMessage = (): void => {
      clearTimeout(timer);
      client.off('message', onMessage);
      resolve(false);
    };
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      resolve(true);
    }, ms);
    client.on('message', onMessage);
  });
}

/** Resolve after `ms` (only to prove that something does not happen). */
export function quietFor(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** End a client without waiting on a dead connection. */
export async function close(...clients: MqttClient[]): Promise<void> {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
}

/** Publish at QoS 1; resolves with the PUBACK's reason code (MQTT.js rejects on a failure code; 0 when absent, as in 3.1.1). */
export async function pubCode(c: MqttClient, topic: string, payload = 'x'): Promise<number> {
  try {
    return ((await c.publishAsync(topic, payload, { qos: 1 })) as { reasonCode?: number } | undefined)?.reasonCode ?? 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number') return code;
    throw err;
  }
}

/** The error of a refused MQTT.js connection (its CONNACK code in `code`); throws if it was accepted. */
export async function refusal(p: Promise<MqttClient>): Promise<Error & { code?: number }> {
  try {
    const c = await p;
    await close(c);
  } catch (err) {
    return err as Error & { code?: number };
  }
  throw new Error('the connection was accepted');
}
