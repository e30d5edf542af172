// Connection limits, decided at accept before any MQTT is read: connections in total and per
// remote address, and a connection rate per address (token bucket). A refused TCP connection is
// closed at once (no CONNACK); a refused WebSocket upgrade gets HTTP 503. Also the bytes a client
// may send before its CONNECT is decided. Each refusal is logged; other clients are unaffected.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId } from '../helpers/clients.ts';
import { PacketLog } from '../helpers/packet-log.ts';

interface Attempt {
  socket: net.Socket;
  log: PacketLog;
  /** 'connack' once the CONNACK arrived, 'closed' if closed without one. */
  outcome: Promise<'connack' | 'closed'>;
}

/**
 * Open TCP from `localAddress` and send a 3.1.1 CONNECT (plus `extra` bytes in the same write);
 * `persistent` asks for a stored session, so the CONNECT stays undecided while its row commits.
 */
function attempt(broker: BrokerProcess, localAddress = '127.0.0.1', extra?: Buffer, persistent = false): Attempt {
  const socket = net.connect({ port: broker.mqttPort, host: broker.host, localAddress });
  const log = new PacketLog(4);
  socket.on('data', (b: Buffer) => log.push(b));
  socket.on('error', () => undefined);
  socket.on('close', () => log.markClosed());
  socket.once('connect', () => {
    const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: !persistent, keepalive: 0, clientId: uniqueId('n') }, { protocolVersion: 4 });
    socket.write(extra ? Buffer.concat([connect, extra]) : connect);
  });
  const outcome = log.until(() => log.of('connack').length > 0 || log.closed, 'CONNACK or close', 10_000)
    .then(() => (log.of('connack').length > 0 ? 'connack' as const : 'closed' as const));
  return { socket, log, outcome };
}

/** HTTP status of a WebSocket upgrade from `localAddress` (101 when it opens; the socket is then closed). */
function upgrade(broker: BrokerProcess, localAddress = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(broker.wsUrl(), ['mqtt'], { localAddress });
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('no answer to the upgrade')); }, 5000);
    ws.once('open', () => { clearTimeout(timer); ws.terminate(); resolve(101); });
    ws.once('unexpected-response', (_req, res) => { clearTimeout(timer); ws.terminate(); resolve(res.statusCode ?? 0); });
    ws.once('error', () => undefined);
  });
}

async function logged(broker: BrokerProcess, re: RegExp, from: number): Promise<boolean> {
  const deadline = Date.now() + 5000;
  const seen = (): boolean => broker.logs.slice(from).some((l) => re.test(String(l['msg'])));
  while (!seen()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/** Until the broker has seen `s` close: a new attempt is accepted again (bounded retries). */
async function acceptedWithin(broker: BrokerProcess, localAddress: string): Promise<Attempt> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const a = attempt(broker, localAddress);
    if ((await a.outcome) === 'connack') return a;
    if (Date.now() > deadline) throw new Error('a freed slot was not reused');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('connections in total and per address; bytes before CONNECT is decided', () => {
  let broker: BrokerProcess;
  before(async () => {
    broker = await startBroker([
      '--max-connections', '6', '--max-connections-per-address', '4', '--connection-rate', '1000', '--connection-burst', '1000',
      '--max-packet-size', '1024', '--max-pre-connect-bytes', '4096',
    ]);
  });
  after(async () => { await broker?.stop(); });

  test('per address: the fifth TCP connection is closed at accept, a WebSocket upgrade gets 503; a freed slot is reused', async () => {
    const from = broker.logs.length;
    const four = [1, 2, 3, 4].map(() => attempt(broker));
    assert.deepEqual(await Promise.all(four.map((a) => a.outcome)), ['connack', 'connack', 'connack', 'connack']);
    const fifth = attempt(broker);
    assert.equal(await fifth.outcome, 'closed');
    assert.equal(await upgrade(broker), 503);
    assert.ok(await logged(broker, /connection refused at accept/, from));
    // another address is not limited by this one's count
    const other = attempt(broker, '127.0.0.2');
    assert.equal(await other.outcome, 'connack');
    four[0]!.socket.destroy();
    const again = await acceptedWithin(broker, '127.0.0.1');
    for (const a of [...four, again, other]) a.socket.destroy();
  });

  test('in total: with 6 open from two addresses, a third address is refused', async () => {
    // wait until the previous test's sockets are gone for the broker
    const first = await acceptedWithin(broker, '127.0.0.1');
    const rest = [attempt(broker), attempt(broker), attempt(broker, '127.0.0.2'), attempt(broker, '127.0.0.2'), attempt(broker, '127.0.0.2')];
    assert.deepEqual(await Promise.all(rest.map((a) => a.outcome)), ['connack', 'connack', 'connack', 'connack', 'connack']);
    const from = broker.logs.length;
    assert.equal(await attempt(broker, '127.0.0.3').outcome, 'closed');
    assert.equal(await upgrade(broker, '127.0.0.3'), 503);
    assert.ok(await logged(broker, /connection refused at accept/, from));
    for (const a of [first, ...rest]) a.socket.destroy();
  });

  test('a client that streams more than --max-pre-connect-bytes before its CONNECT is decided is closed', async () => {
    await acceptedWithin(broker, '127.0.0.4').then((a) => a.socket.destroy());
    const from = broker.logs.length;
    const publish = mqttPacket.generate({ cmd: 'publish', topic: 'p', payload: Buffer.alloc(900, 0x61), qos: 0, retain: false, dup: false }, { protocolVersion: 4 });
    const flood = attempt(broker, '127.0.0.4', Buffer.concat(Array.from({ length: 8 }, () => publish)), true);
    assert.equal(await flood.outcome, 'closed');
    assert.ok(await logged(broker, /before its CONNECT was decided/, from));
    // a CONNECT followed by a little is fine
    const fine = attempt(broker, '127.0.0.4', Buffer.concat([publish, publish]), true);
    assert.equal(await fine.outcome, 'connack');
    fine.socket.destroy();
  });
});

describe('connection rate per address', () => {
  let broker: BrokerProcess;
  before(async () => { broker = await startBroker(['--connection-rate', '1', '--connection-burst', '3']); });
  after(async () => { await broker?.stop(); });

  test('a burst beyond the bucket is refused at accept; another address has its own bucket', async () => {
    const from = broker.logs.length;
    const started = Date.now();
    const burst = Array.from({ length: 20 }, () => attempt(broker, '127.0.0.5'));
    const outcomes = await Promise.all(burst.map((a) => a.outcome));
    const elapsedSec = (Date.now() - started) / 1000;
    const accepted = outcomes.filter((o) => o === 'connack').length;
    // 3 at once, then at most one per second that passed
    assert.ok(accepted >= 3, `only ${accepted} accepted`);
    assert.ok(accepted <= 3 + Math.ceil(elapsedSec), `${accepted} accepted in ${elapsedSec} s`);
    assert.ok(await logged(broker, /connection refused at accept/, from));
    const other = attempt(broker, '127.0.0.6');
    assert.equal(await other.outcome, 'connack');
    for (const a of [...burst, other]) a.socket.destroy();
  });
});
