// The HTTP port: GET /health (Fastify, src/server/), the uWebSockets.js build it runs on, and the
// WebSocket subprotocol rules of the MQTT upgrade (src/transport/ws-endpoint.ts chooseSubprotocol;
// /work/shared/spec/webpubsub-compat.md §2.3: the chosen subprotocol is echoed, or `ws`-based
// clients abort the handshake).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import mqttPacket, { type Packet } from 'mqtt-packet';
import WebSocket from 'ws';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, connect, uniqueId } from '../helpers/clients.ts';

let broker: BrokerProcess;
before(async () => { broker = await startBroker(); });
after(async () => { await broker.stop(); });

type Upgrade = { ok: true; ws: WebSocket; protocol: string } | { ok: false; status: number; body: string };

/** Open a WebSocket to `path` offering `protocols`; resolves with the accepted socket or the HTTP refusal. */
function upgrade(path: string, protocols: string[] | undefined): Promise<Upgrade> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${broker.host}:${broker.httpPort}${path}`, protocols);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('no answer to the upgrade within 5 s'));
    }, 5000);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve({ ok: true, ws, protocol: ws.protocol });
    });
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let body = '';
      res.on('data', (b: Buffer) => { body += b.toString(); });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ ok: false, status: res.statusCode ?? 0, body });
      });
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** CONNECT over an open WebSocket and resolve with the broker's first packet (the CONNACK). */
function mqttConnect(ws: WebSocket, version: 4 | 5): Promise<Packet> {
  return new Promise((resolve, reject) => {
    const parser = mqttPacket.parser({ protocolVersion: version });
    const timer = setTimeout(() => reject(new Error('no CONNACK within 5 s')), 5000);
    parser.once('packet', (p: Packet) => {
      clearTimeout(timer);
      resolve(p);
    });
    ws.on('message', (data: Buffer) => parser.parse(data));
    ws.send(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, clientId: uniqueId('ws'), keepalive: 0 }, { protocolVersion: version }));
  });
}

async function closeWs(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return;
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  ws.terminate();
  await closed;
}

describe('GET /health', () => {
  test('answers 200 with a JSON body: status "ok" and the number of MQTT connections', async () => {
    const get = async (): Promise<{ status: number; type: string | null; body: unknown }> => {
      const res = await fetch(`http://${broker.host}:${broker.httpPort}/health`);
      return { status: res.status, type: res.headers.get('content-type'), body: await res.json() };
    };
    // This file's broker has no other client at this point
    assert.deepEqual(await get(), { status: 200, type: 'application/json', body: { status: 'ok', connections: 0 } });
    const a = await connect(broker, 'tcp', 5);
    const b = await connect(broker, 'ws', 4);
    try {
      assert.deepEqual(await get(), { status: 200, type: 'application/json', body: { status: 'ok', connections: 2 } });
    } finally {
      await close(a, b);
    }
  });
});

describe('the HTTP port', () => {
  test('the log says which native uWebSockets.js build runs', () => {
    const line = broker.logs.find((l) => l['msg'] === 'uWebSockets.js build loaded');
    assert.ok(line, 'logged at start-up');
    assert.ok(['@btc-vision/uwebsockets.js', '@trufflesuite/uws-js-unofficial'].includes(String(line['uws'])), String(line['uws']));
    assert.equal(line['native'], true);
    assert.match(String(line['version']), /^\d+\.\d+\.\d+/);
  });

  test('a plain HTTP request to a path with no route gets 404 from the HTTP routes, on a WebSocket path too', async () => {
    for (const path of ['/nothing-here', '/mqtt']) {
      const res = await fetch(`http://${broker.host}:${broker.httpPort}${path}`);
      assert.equal(res.status, 404, path);
      await res.arrayBuffer();
    }
  });
});

describe('WebSocket subprotocols', () => {
  for (const [offer, chosen] of [[['mqtt'], 'mqtt'], [['mqttv3.1'], 'mqttv3.1'], [['json.webpubsub.azure.v1', 'mqtt'], 'mqtt'], [['mqttv3.1', 'mqtt'], 'mqtt']] as const) {
    test(`offered ${JSON.stringify(offer)}: "${chosen}" is chosen and echoed, and MQTT works`, async () => {
      const up = await upgrade('/mqtt', [...offer]);
      assert.ok(up.ok, `upgrade refused: ${JSON.stringify(up)}`);
      try {
        assert.equal(up.protocol, chosen);
        const connack = await mqttConnect(up.ws, 5);
        assert.equal(connack.cmd, 'connack');
        assert.equal((connack as Extract<Packet, { cmd: 'connack' }>).reasonCode, 0);
      } finally {
        await closeWs(up.ws);
      }
    });
  }

  for (const offer of [['json.webpubsub.azure.v1'], ['json.reliable.webpubsub.azure.v1', 'protobuf.webpubsub.azure.v1'], ['MQTT-not']]) {
    test(`an offer without an MQTT subprotocol (${JSON.stringify(offer)}) is refused with 400, on the default and on a named hub`, async () => {
      for (const path of ['/mqtt', `/clients/mqtt/hubs/h${process.pid}`]) {
        const up = await upgrade(path, offer);
        if (up.ok) await closeWs(up.ws);
        assert.deepEqual(up.ok ? { accepted: up.protocol } : { status: up.status, body: up.body },
          { status: 400, body: 'MQTT over WebSocket needs the "mqtt" subprotocol' }, path);
      }
    });
  }

  test('no subprotocol offered: accepted as MQTT, with no subprotocol in the answer', async () => {
    const up = await upgrade('/mqtt', undefined);
    assert.ok(up.ok, `upgrade refused: ${JSON.stringify(up)}`);
    try {
      assert.equal(up.protocol, '');
      assert.equal((await mqttConnect(up.ws, 4)).cmd, 'connack');
    } finally {
      await closeWs(up.ws);
    }
  });

  test('a path that is not an MQTT endpoint is refused with 404', async () => {
    for (const path of ['/', '/mqttx', '/clients/mqtt/hubs/', '/clients/mqtt/hubs/a/b']) {
      const up = await upgrade(path, ['mqtt']);
      if (up.ok) await closeWs(up.ws);
      assert.deepEqual(up.ok ? { accepted: path } : { status: up.status }, { status: 404 }, path);
    }
  });
});

describe('WebSocket frames', () => {
  // [MQTT-6.0.0-1] MQTT packets travel in binary frames; any other data frame closes the connection
  for (const when of ['before CONNECT', 'after CONNECT'] as const) {
    test(`a text frame ${when} closes the connection (1003) and the broker keeps serving`, async () => {
      const up = await upgrade('/mqtt', ['mqtt']);
      assert.ok(up.ok, 'upgrade accepted');
      const ws = up.ws;
      try {
        if (when === 'after CONNECT') assert.equal((await mqttConnect(ws, 5)).cmd, 'connack');
        const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
        const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: uniqueId('txt'), keepalive: 0 }, { protocolVersion: 4 });
        // Bytes that are valid UTF-8, so that the frame reaches the broker as text (uWS closes a text
        // frame of invalid UTF-8 itself, before the broker sees it)
        const publish = mqttPacket.generate({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 0, dup: false, retain: false, properties: {} }, { protocolVersion: 5 });
        const frame = when === 'after CONNECT' ? publish : connect;
        assert.ok(frame.every((b) => b < 0x80), 'the frame is ASCII');
        ws.send(frame, { binary: false });
        assert.equal(await closed, 1003);
      } finally {
        await closeWs(ws);
      }
      const other = await connect(broker, 'ws', 5);
      await close(other);
    });
  }

  test('a text frame of invalid UTF-8 after CONNECT closes the connection too', async () => {
    const up = await upgrade('/mqtt', ['mqtt']);
    assert.ok(up.ok, 'upgrade accepted');
    try {
      assert.equal((await mqttConnect(up.ws, 5)).cmd, 'connack');
      const closed = new Promise<number>((resolve) => up.ws.once('close', (code: number) => resolve(code)));
      up.ws.send(mqttPacket.generate({ cmd: 'pingreq' }), { binary: false }); // 0xC0 0x00: not UTF-8
      assert.ok([1003, 1006, 1007].includes(await closed));
    } finally {
      await closeWs(up.ws);
    }
  });
});
