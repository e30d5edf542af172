// WebSocket endpoints mounted on an app the transport does not own (src/transport/ws-endpoint.ts), on
// a real uWS app on loopback: path parameters, subprotocol choice, Origin policy, text and binary
// frames, and the asynchronous upgrade (answered corked; never upgraded once the client is gone).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import WebSocket from 'ws';
import { chooseUws, uwsCandidates } from '../../../src/transport/uws-loader.ts';
import { mountWsEndpoints, routePatterns, chooseSubprotocol, type UpgradeDecision, type UpgradeRequest, type WsEndpoint, type WsSocket, type WsSocketHandler } from '../../../src/transport/ws-endpoint.ts';

const { uws } = chooseUws(uwsCandidates);

interface Room { room: string }

/** Each upgrade the test endpoint is asked about, with the means to answer it later. */
interface Asked {
  req: UpgradeRequest;
  answer(d: UpgradeDecision<Room>): void;
  fail(err: Error): void;
}

const asked: Asked[] = [];
const askedWaiters: Array<(a: Asked) => void> = [];
const abandoned: Room[] = [];
const opened: Room[] = [];
const errors: unknown[] = [];
const refusedOrigins: string[] = [];
let asyncMode = false;

/** Echoes text frames as `text:<room>:<text>` and binary frames as their length. */
class RoomHandler implements WsSocketHandler {
  readonly #ws: WsSocket<Room>;
  readonly #room: string;
  constructor(ws: WsSocket<Room>, room: string) {
    this.#ws = ws;
    this.#room = room;
  }
  wsMessage(message: ArrayBuffer, isBinary: boolean): void {
    if (isBinary) this.#ws.send(`binary:${message.byteLength}`, false);
    else this.#ws.send(`text:${this.#room}:${Buffer.from(message).toString()}`, false);
  }
  wsDrain(): void {}
  wsClosed(): void {}
}

const rooms: WsEndpoint<Room> = {
  path: '/rooms/{room}',
  subprotocols: ['json.v1', 'json.v0'],
  subprotocolRefusal: 'rooms need the json.v1 subprotocol',
  maxPayloadBytes: 1024,
  authorizeUpgrade: (req) => {
    const room = req.params['room']!;
    if (room === 'closed') return { refuse: 403, body: 'room closed' };
    if (room === 'throws') throw new Error('authorizer bug');
    if (room === 'malformed') return {} as UpgradeDecision<Room>; // neither accept nor refuse
    if (room === 'thenable') return { then: (ok: (d: UpgradeDecision<Room>) => void) => ok({ refuse: 401, body: 'later, as a thenable' }) } as unknown as Promise<UpgradeDecision<Room>>;
    if (!asyncMode) return { accept: { room } };
    return new Promise((resolve, reject) => {
      void req.signal; // taken now, as an upstream call would: it must still report a later abort
      const a: Asked = { req, answer: resolve, fail: reject };
      const waiter = askedWaiters.shift();
      if (waiter) waiter(a);
      else asked.push(a);
    });
  },
  open: (ws, data) => {
    opened.push(data);
    return new RoomHandler(ws, data.room);
  },
  abandon: (data) => { abandoned.push(data); },
};

function nextAsked(): Promise<Asked> {
  const a = asked.shift();
  return a ? Promise.resolve(a) : new Promise((resolve) => askedWaiters.push(resolve));
}

let port = 0;
let stop: () => void = () => undefined;

before(async () => {
  const app = uws.App();
  const mount = mountWsEndpoints(app, [rooms], {
    allowedOrigins: new Set(['https://good.example']),
    onOriginRefused: (origin) => refusedOrigins.push(origin),
    onError: (err) => errors.push(err),
  });
  app.any('/*', (res) => { res.writeStatus('404 Not Found').end('http route'); });
  const token = await new Promise<unknown>((resolve) => app.listen('127.0.0.1', 0, resolve));
  assert.ok(token, 'listening');
  port = uws.us_socket_local_port(token as Parameters<typeof uws.us_socket_local_port>[0]);
  stop = () => {
    uws.us_listen_socket_close(token as Parameters<typeof uws.us_listen_socket_close>[0]);
    mount.closeAll();
  };
});
after(() => stop());

type Outcome = { ok: true; ws: WebSocket } | { ok: false; status: number; body: string };

function upgrade(path: string, protocols?: string[], headers: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, protocols, { headers });
    ws.once('open', () => resolve({ ok: true, ws }));
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let body = '';
      res.on('data', (b: Buffer) => { body += b.toString(); });
      res.on('end', () => resolve({ ok: false, status: res.statusCode ?? 0, body }));
    });
    ws.once('error', reject);
  });
}

async function accepted(path: string, protocols?: string[]): Promise<WebSocket> {
  const up = await upgrade(path, protocols);
  assert.ok(up.ok, `refused: ${JSON.stringify(up)}`);
  return up.ws;
}

async function refusal(path: string, protocols?: string[], headers?: Record<string, string>): Promise<{ status: number; body: string }> {
  const up = await upgrade(path, protocols, headers);
  if (up.ok) up.ws.terminate();
  assert.ok(!up.ok, `${path} was accepted`);
  return { status: up.status, body: up.body };
}

async function reply(ws: WebSocket, data: string | Buffer, binary: boolean): Promise<string> {
  const answer = once(ws, 'message');
  ws.send(data, { binary });
  const [msg] = await answer;
  return (msg as Buffer).toString();
}

describe('path and subprotocol', () => {
  test('route patterns: {name} parameters, with and without a trailing slash', () => {
    assert.deepEqual(routePatterns('/clients/mqtt/hubs/{hub}'), { patterns: ['/clients/mqtt/hubs/:hub', '/clients/mqtt/hubs/:hub/'], names: ['hub'] });
    assert.deepEqual(routePatterns('/mqtt'), { patterns: ['/mqtt', '/mqtt/'], names: [] });
    assert.throws(() => routePatterns('mqtt'));
    assert.throws(() => routePatterns('/a/{b-c}'));
  });

  test('subprotocol: the endpoint\'s preference among those offered; none offered is none chosen', () => {
    assert.equal(chooseSubprotocol('mqttv3.1, mqtt', ['mqtt', 'mqttv3.1']), 'mqtt');
    assert.equal(chooseSubprotocol('json.webpubsub.azure.v1,mqttv3.1', ['mqtt', 'mqttv3.1']), 'mqttv3.1');
    assert.equal(chooseSubprotocol('', ['mqtt']), '');
    assert.equal(chooseSubprotocol('foo', ['mqtt']), undefined);
  });

  test('the parameter is percent-decoded; a trailing slash is the same endpoint; the chosen subprotocol is echoed', async () => {
    const ws = await accepted('/rooms/a%20b/', ['json.v0', 'json.v1']);
    try {
      assert.equal(ws.protocol, 'json.v1');
      assert.equal(await reply(ws, 'hello', false), 'text:a b:hello');
    } finally {
      ws.terminate();
    }
  });

  test('an offer without any of the endpoint\'s subprotocols gets 400 with the endpoint\'s body', async () => {
    assert.deepEqual(await refusal('/rooms/r', ['mqtt']), { status: 400, body: 'rooms need the json.v1 subprotocol' });
  });

  test('other paths get 404 at the upgrade; an empty parameter names no endpoint; a broken escape is 400', async () => {
    for (const path of ['/', '/rooms', '/rooms/', '/rooms/a/b', '/roomsx/a']) {
      assert.equal((await refusal(path)).status, 404, path);
    }
    assert.equal((await refusal('/rooms/a%zz')).status, 400);
  });

  test('a plain GET on an endpoint\'s path is left to the app\'s HTTP routes', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/rooms/r`);
    assert.equal(res.status, 404);
    assert.equal(await res.text(), 'http route');
  });

  test('Origin: a listed one is served, another gets 403 and is reported, none at all is served', async () => {
    (await accepted('/rooms/o')).terminate();
    const good = await upgrade('/rooms/o', undefined, { Origin: 'https://good.example' });
    assert.ok(good.ok);
    good.ws.terminate();
    assert.deepEqual(await refusal('/rooms/o', undefined, { Origin: 'https://evil.example' }), { status: 403, body: 'origin not allowed' });
    assert.deepEqual(refusedOrigins, ['https://evil.example']);
  });
});

describe('frames', () => {
  test('text and binary frames both reach the endpoint, each marked as what it is', async () => {
    const ws = await accepted('/rooms/f', ['json.v1']);
    try {
      assert.equal(await reply(ws, '{"type":"joinGroup"}', false), 'text:f:{"type":"joinGroup"}');
      assert.equal(await reply(ws, Buffer.from([1, 2, 3]), true), 'binary:3');
    } finally {
      ws.terminate();
    }
  });
});

describe('upgrade decisions', () => {
  test('a synchronous refusal answers its status and body', async () => {
    assert.deepEqual(await refusal('/rooms/closed'), { status: 403, body: 'room closed' });
  });

  test('an authorizer that throws answers 500 and is reported', async () => {
    const before = errors.length;
    assert.deepEqual(await refusal('/rooms/throws'), { status: 500, body: 'upgrade check failed' });
    assert.equal(errors.length, before + 1);
  });

  test('a decision that is neither accept nor refuse is a refusal (500), never an upgrade', async () => {
    assert.deepEqual(await refusal('/rooms/malformed'), { status: 500, body: 'upgrade check failed' });
  });

  test('a thenable that is not a native Promise is awaited like one', async () => {
    assert.deepEqual(await refusal('/rooms/thenable'), { status: 401, body: 'later, as a thenable' });
  });

  test('asynchronous: accepted later, refused later, failed later', async () => {
    asyncMode = true;
    try {
      const accepting = upgrade('/rooms/later', ['json.v1']);
      (await nextAsked()).answer({ accept: { room: 'later' } });
      const up = await accepting;
      assert.ok(up.ok);
      assert.equal(await reply(up.ws, 'x', false), 'text:later:x');
      up.ws.terminate();

      const refusing = upgrade('/rooms/later');
      (await nextAsked()).answer({ refuse: 401, body: 'no token' });
      assert.deepEqual(await refusing.then((o) => (o.ok ? o : { status: o.status, body: o.body })), { status: 401, body: 'no token' });

      const before = errors.length;
      const failing = upgrade('/rooms/later');
      (await nextAsked()).fail(new Error('upstream down'));
      assert.deepEqual(await failing.then((o) => (o.ok ? o : { status: o.status, body: o.body })), { status: 500, body: 'upgrade check failed' });
      assert.equal(errors.length, before + 1);
    } finally {
      asyncMode = false;
    }
  });

  test('asynchronous: a client gone before the decision is not upgraded, its accept is abandoned, and the app goes on', async () => {
    asyncMode = true;
    try {
      const openedBefore = opened.length;
      const socket = net.connect(port, '127.0.0.1');
      await once(socket, 'connect');
      socket.on('error', () => undefined);
      socket.write([
        'GET /rooms/gone HTTP/1.1', 'Host: 127.0.0.1', 'Upgrade: websocket', 'Connection: Upgrade',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13', '', '',
      ].join('\r\n'));
      const a = await nextAsked();
      assert.equal(a.req.params['room'], 'gone');
      socket.destroy();
      // The server has seen the client go: the request's signal says so
      if (!a.req.signal.aborted) await once(a.req.signal, 'abort');
      a.answer({ accept: { room: 'gone' } });
      // Answered after the abort: handed back to the endpoint, never opened
      await new Promise<void>((resolve) => setImmediate(resolve));
      assert.deepEqual(abandoned, [{ room: 'gone' }]);
      assert.equal(opened.length, openedBefore);

      // A refusal answered after an abort writes nothing and breaks nothing either
      const socket2 = net.connect(port, '127.0.0.1');
      await once(socket2, 'connect');
      socket2.on('error', () => undefined);
      socket2.write('GET /rooms/gone2 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
      const b = await nextAsked();
      socket2.destroy();
      if (!b.req.signal.aborted) await once(b.req.signal, 'abort');
      b.answer({ refuse: 401, body: 'too late' });

      const next = upgrade('/rooms/after', ['json.v1']);
      (await nextAsked()).answer({ accept: { room: 'after' } });
      const up = await next;
      assert.ok(up.ok, 'the app still upgrades');
      assert.equal(await reply(up.ws, 'y', false), 'text:after:y');
      up.ws.terminate();
    } finally {
      asyncMode = false;
    }
  });
});

describe('a decision that never comes', () => {
  test('the client gets 503 after the decision timeout, the signal aborts, and a late accept is abandoned', async () => {
    let late: ((d: UpgradeDecision<Room>) => void) | undefined;
    let signal: AbortSignal | undefined;
    const lateAbandoned: Room[] = [];
    const slow: WsEndpoint<Room> = {
      path: '/slow', subprotocols: [], subprotocolRefusal: 'no', maxPayloadBytes: 1024,
      authorizeUpgrade: (req) => new Promise((resolve) => { signal = req.signal; late = resolve; }),
      open: (ws, data) => new RoomHandler(ws, data.room),
      abandon: (data) => { lateAbandoned.push(data); },
    };
    const app = uws.App();
    const timeouts: unknown[] = [];
    const mount = mountWsEndpoints(app, [slow], { decisionTimeoutMs: 50, onError: (err) => timeouts.push(err) });
    const token = await new Promise<unknown>((resolve) => app.listen('127.0.0.1', 0, resolve));
    const slowPort = uws.us_socket_local_port(token as Parameters<typeof uws.us_socket_local_port>[0]);
    try {
      const outcome = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${slowPort}/slow`);
        ws.once('open', () => reject(new Error('upgraded without a decision')));
        ws.once('unexpected-response', (_req, res: IncomingMessage) => {
          let body = '';
          res.on('data', (b: Buffer) => { body += b.toString(); });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        ws.once('error', reject);
      });
      assert.deepEqual(outcome, { status: 503, body: 'upgrade check timed out' });
      assert.equal(signal?.aborted, true, 'the authorizer is told to stop');
      assert.equal(timeouts.length, 1);
      late!({ accept: { room: 'late' } });
      await new Promise<void>((resolve) => setImmediate(resolve));
      assert.deepEqual(lateAbandoned, [{ room: 'late' }]);
    } finally {
      uws.us_listen_socket_close(token as Parameters<typeof uws.us_listen_socket_close>[0]);
      mount.closeAll();
    }
  });
});
