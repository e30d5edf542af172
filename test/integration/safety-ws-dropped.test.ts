// A WebSocket client that does not read: once uWS would drop a send (more than
// --ws-max-backpressure buffered), the broker closes that connection instead of losing bytes
// from the middle of its MQTT stream. Other clients are unaffected.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import WebSocket from 'ws';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, uniqueId } from '../helpers/clients.ts';

let broker: BrokerProcess;
before(async () => { broker = await startBroker(['--ws-max-backpressure', '65536']); });
after(async () => { await broker?.stop(); });

test('a send uWS would drop closes that WebSocket connection, with a log line', async () => {
  const topic = `flood/${uniqueId()}`;
  const ws = new WebSocket(broker.wsUrl(), ['mqtt']);
  await once(ws, 'open');
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: Packet[] = [];
  parser.on('packet', (p: Packet) => packets.push(p));
  ws.on('message', (b: Buffer) => parser.parse(b));
  const send = (p: Packet): void => ws.send(mqttPacket.generate(p, { protocolVersion: 4 }));
  send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: uniqueId('slow') });
  send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] });
  const deadline = Date.now() + 5000;
  while (!packets.some((p) => p.cmd === 'suback')) {
    assert.ok(Date.now() < deadline, 'no SUBACK');
    await once(ws, 'message');
  }
  const closed = once(ws, 'close');
  // Stop reading: the kernel buffers fill, then uWS buffers up to its limit
  (ws as unknown as { _socket: Socket })._socket.pause();

  const bystanderTopic = `ok/${uniqueId()}`;
  const bystander = await connect(broker, 'ws', 5);
  await bystander.subscribeAsync(bystanderTopic, { qos: 1 });
  const publisher = await connect(broker, 'tcp', 4);
  const payload = Buffer.alloc(16 * 1024, 0x61);
  const logged = (): boolean => broker.logs.some((l) => l['msg'] === 'WebSocket send buffer limit exceeded; connection closed');
  // At most 64 MiB; each round of 32 ends with a QoS 1 round trip so the broker keeps up
  for (let round = 0; round < 128 && !logged(); round++) {
    for (let i = 0; i < 32; i++) publisher.publish(topic, payload, { qos: 0 });
    await publisher.publishAsync(topic, payload, { qos: 1 });
  }
  // the log line may trail the drop by a moment: wait for it, bounded
  for (const deadline = Date.now() + 5000; !logged() && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20));
  assert.ok(logged(), 'no log line for the dropped send');
  (ws as unknown as { _socket: Socket })._socket.resume();
  // Closed (the close frame may be lost behind the full buffer: any code)
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([closed, new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('not closed')), 10_000); })]);
  clearTimeout(timer);

  const got = collect(bystander, 1, 5000);
  await publisher.publishAsync(bystanderTopic, 'still here', { qos: 1 });
  assert.equal((await got)[0]!.payload.toString(), 'still here');
  await close(bystander, publisher);
});
