// The same WebSocket endpoints as ws-endpoint.ts, mounted on a Node HTTP(S) server with the `ws`
// package: the uWebSockets.js build in use does not expose the client's TLS certificate, Node's TLS
// does. Path matching and the upgrade decision are ws-endpoint.ts's (runUpgrade); this file only
// reads the Node request, writes the HTTP answers and adapts a `ws` socket to WsSocket.
import { STATUS_CODES, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import https, { type Server as HttpsServer } from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { peerCertificateFrom } from './peer-certificate.ts';
import {
  originRefusal, pathMatcher, routePatterns, runUpgrade,
  type UpgradeHead, type WsEndpoint, type WsMount, type WsMountOptions, type WsSocket, type WsSocketState,
} from './ws-endpoint.ts';

/** A `ws` socket as the WsSocket endpoints expect (uWS semantics for send's result and drain). */
class NodeWsSocket implements WsSocket<unknown> {
  readonly #ws: WebSocket;
  readonly #socket: Duplex;
  readonly #state: WsSocketState<unknown>;
  readonly #limit: number;
  readonly #address: ArrayBuffer;

  constructor(ws: WebSocket, socket: Duplex, state: WsSocketState<unknown>, limit: number, remoteAddress: string) {
    this.#ws = ws;
    this.#socket = socket;
    this.#state = state;
    this.#limit = limit;
    this.#address = new TextEncoder().encode(remoteAddress).buffer as ArrayBuffer;
  }

  getUserData(): WsSocketState<unknown> {
    return this.#state;
  }

  send(message: Uint8Array | string, isBinary = false): number {
    // Closing (the peer's close frame came, 'close' has not yet): nothing more goes out, and it is
    // no buffer overflow (2 would make the endpoint report one); the socket's close follows
    if (this.#ws.readyState !== 1) return 1;
    const size = typeof message === 'string' ? Buffer.byteLength(message) : message.byteLength;
    // As uWS: a message that would take the buffer past the limit is dropped, not queued
    if (this.#ws.bufferedAmount + size > this.#limit) return 2;
    this.#ws.send(message, { binary: isBinary });
    // `ws` writes frames straight to the socket: its write() verdict is the backpressure signal
    return this.#socket.writableNeedDrain ? 0 : 1;
  }

  cork(cb: () => void): void {
    cb(); // `ws` corks each frame's header and payload itself
  }

  getBufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  end(code?: number, shortMessage?: string): void {
    this.#ws.close(code, shortMessage);
  }

  getRemoteAddressAsText(): ArrayBuffer {
    return this.#address;
  }
}

/** A message as an ArrayBuffer of its own (endpoints get uWS's type). */
function arrayBufferOf(data: RawData): ArrayBuffer {
  if (data instanceof ArrayBuffer) return data;
  const buf = Array.isArray(data) ? Buffer.concat(data) : data;
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
}

/** An HTTP error answer on a socket that asked to upgrade. */
function refuseSocket(socket: Duplex, status: number, body: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  setTimeout(() => socket.destroy(), 2000).unref();
}

interface Mounted {
  endpoint: WsEndpoint<unknown>;
  names: string[];
  match: (url: string) => string[] | undefined;
  wss: WebSocketServer;
}

/** The subprotocol each accepted request is to echo, for `handleProtocols`. */
const chosenProtocol = new WeakMap<IncomingMessage, string>();

/**
 * Mount `endpoints` on `server` (an http or https server the caller owns and listens with): upgrades
 * to their paths are decided as on the uWS mount; other upgrades get 404, plain requests 404.
 * With TLS, `UpgradeRequest.clientCertificate` is the certificate of the handshake, if any.
 */
export function mountNodeWsEndpoints(server: HttpServer | HttpsServer, endpoints: ReadonlyArray<WsEndpoint<unknown>>, opts: WsMountOptions = {}): WsMount {
  const open = new Map<WebSocket, WsSocketState<unknown>>();
  const isRefusedOrigin = originRefusal(opts);
  const mounted: Mounted[] = endpoints.map((endpoint) => ({
    endpoint,
    names: routePatterns(endpoint.path).names,
    match: pathMatcher(endpoint.path),
    wss: new WebSocketServer({
      noServer: true,
      maxPayload: endpoint.maxPayloadBytes,
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: (_offered, req) => chosenProtocol.get(req) || false,
    }),
  }));

  const connected = (m: Mounted, ws: WebSocket, socket: Duplex, state: WsSocketState<unknown>, remoteAddress: string): void => {
    open.set(ws, state);
    ws.binaryType = 'arraybuffer';
    const adapter = new NodeWsSocket(ws, socket, state, m.endpoint.maxBackpressureBytes ?? 64 * 1024 * 1024, remoteAddress);
    const fail = (): void => {
      if (!state.closed) {
        state.closed = true;
        ws.close(1011);
      }
    };
    ws.on('message', (data: RawData, isBinary: boolean) => {
      try {
        state.handler?.wsMessage(arrayBufferOf(data), isBinary);
      } catch {
        fail();
      }
    });
    socket.on('drain', () => {
      try {
        state.handler?.wsDrain();
      } catch {
        fail();
      }
    });
    ws.on('error', () => undefined); // protocol errors: `ws` closes the socket (1002, 1009, ...) and 'close' follows
    ws.on('close', (code: number) => {
      open.delete(ws);
      state.closed = true;
      state.handler?.wsClosed(code);
    });
    const data = state.data;
    state.data = undefined;
    try {
      state.handler = m.endpoint.open(adapter, data);
    } catch (err) {
      opts.onError?.(err, m.endpoint.path);
      fail();
    }
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    const [url = '/', query = ''] = splitUrl(req.url ?? '/');
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    let m: Mounted | undefined;
    let rawParams: string[] | undefined;
    for (const candidate of mounted) {
      rawParams = candidate.match(url);
      if (rawParams) {
        m = candidate;
        break;
      }
    }
    if (!m || !rawParams) {
      const origin = headers['origin'] ?? '';
      if (isRefusedOrigin(origin)) {
        opts.onOriginRefused?.(origin, url);
        refuseSocket(socket, 403, 'origin not allowed');
      } else {
        refuseSocket(socket, 404, 'no WebSocket endpoint at this path');
      }
      return;
    }
    const mount = m;
    const remoteAddress = req.socket.remoteAddress ?? '';
    const upgradeHead: UpgradeHead = {
      url, query, headers, rawParams, remoteAddress,
      clientCertificate: req.socket instanceof TLSSocket ? peerCertificateFrom(req.socket) : undefined,
    };
    runUpgrade(mount.endpoint, mount.names, opts, upgradeHead, {
      refuse: (status, body) => refuseSocket(socket, status, body),
      upgrade: (state, protocol) => {
        if (socket.destroyed || !socket.writable) return false;
        chosenProtocol.set(req, protocol);
        let upgraded = false;
        // Synchronous when it succeeds (no verifyClient, no extensions); a malformed handshake is answered by `ws` itself
        mount.wss.handleUpgrade(req, socket, head, (ws) => {
          upgraded = true;
          connected(mount, ws, socket, state, remoteAddress);
        });
        return upgraded;
      },
      later: (fn) => fn(),
      onAborted: (fn) => { socket.once('close', fn); },
    });
  };

  server.on('upgrade', onUpgrade);
  server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('WebSocket endpoints only on this port');
  });
  return {
    closeAll: () => {
      for (const [ws, state] of [...open]) {
        if (!state.closed) {
          state.closed = true;
          ws.close(1001);
        }
      }
    },
  };
}

function splitUrl(raw: string): [string, string] {
  const q = raw.indexOf('?');
  return q < 0 ? [raw, ''] : [raw.slice(0, q), raw.slice(q + 1)];
}

export interface NodeWssOptions {
  host: string;
  port: number;
  /** Certificate, key, and for client certificates `ca` + `requestCert` (`rejectUnauthorized` defaults to false). */
  tls: https.ServerOptions;
  endpoints: ReadonlyArray<WsEndpoint<unknown>>;
  mount?: WsMountOptions;
  /** Asked for each TCP connection before its TLS handshake (connection limits); false destroys it. */
  admit?: (remoteAddress: string) => boolean;
  /** Time a client has to send its upgrade request after connecting (default 10 s). */
  requestTimeoutMs?: number;
}

export interface NodeWssListener {
  readonly port: number;
  /** Stop listening, end the WebSocket sockets (1001) and destroy what is left. */
  close(): Promise<void>;
}

/** A Node HTTPS server serving only `endpoints` (wss://), bound to host:port. Resolves once listening. */
export function listenNodeWss(opts: NodeWssOptions): Promise<NodeWssListener> {
  const server = https.createServer({ minVersion: 'TLSv1.2', rejectUnauthorized: false, ...opts.tls });
  // A handshake costs CPU and an idle socket memory: the limits apply before either, and a client
  // that does not send its upgrade request in time is dropped
  server.headersTimeout = opts.requestTimeoutMs ?? 10_000;
  server.requestTimeout = opts.requestTimeoutMs ?? 10_000;
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    if (opts.admit && !opts.admit(socket.remoteAddress ?? '')) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', (_err, socket) => socket.destroy());
  const mount = mountNodeWsEndpoints(server, opts.endpoints, opts.mount);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () => new Promise<void>((done) => {
          server.close(() => done());
          mount.closeAll();
          // Close frames are queued now; the sockets go once they are written (or at once if unwritable)
          setImmediate(() => { for (const s of sockets) s.destroy(); });
        }),
      });
    });
  });
}
