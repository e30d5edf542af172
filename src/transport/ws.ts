// MQTT over WebSocket on uWebSockets.js: paths, subprotocol negotiation, ArrayBuffer copying,
// corked writes and backpressure. Bytes only; also hosts plain HTTP routes given to it.
import uWS from 'uWebSockets.js';
import type { ByteChannel, ChannelSink, OnConnection } from './byte-channel.ts';
import type { Listener } from './tcp.ts';

/** True if uWS loaded its native binary rather than its slow pure-JS fallback. */
export function isNativeUws(): boolean {
  return typeof (uWS as unknown as Record<string, unknown>)['SSLApp'] === 'function';
}

export interface WsListenerOptions {
  host: string;
  port: number;
  defaultHub: string;
  /** Largest WebSocket message accepted (≥ the MQTT maximum packet size). */
  maxPayloadBytes: number;
  onConnection: OnConnection;
  /** Asked at each upgrade; false answers HTTP 503 (connection limits). */
  admit?: (remoteAddress: string) => boolean;
  /** The hub naming rule; a path naming a hub that breaks it gets HTTP 400 at the upgrade. */
  isValidHub?: (name: string) => boolean;
  /** Bytes uWS may buffer for one socket; a send beyond it is dropped by uWS, and the connection closed. */
  maxBackpressureBytes?: number;
  /** Told when a connection is closed because a send was dropped (for the log). */
  onSendDropped?: (remoteAddress: string, bufferedBytes: number) => void;
  /** Extra HTTP routes (health, REST) registered on the same app. */
  routes?: (app: uWS.TemplatedApp) => void;
  /** uWS has no minimum-version option: it accepts TLSv1.2 and TLSv1.3. `ciphers`: OpenSSL list for TLS 1.2. */
  tls?: { certFile: string; keyFile: string; passphrase?: string; ciphers?: string };
  /**
   * Browser origins whose upgrades are served (exact match; "*" matches any); an upgrade with an Origin
   * header not listed gets 403. Upgrades without Origin (non-browser clients) are served. Unset: no check.
   */
  allowedOrigins?: ReadonlySet<string>;
  /** Told of each upgrade refused for its Origin. */
  onOriginRefused?: (origin: string, url: string) => void;
}

interface SocketData {
  hub: string;
  token: string | undefined;
  channel: ByteChannel | undefined;
  closed: boolean;
}

// ws.cork() takes a callback: one function for every write, fed through these, rather than a closure per write
let corkSocket: uWS.WebSocket<SocketData> | undefined;
let corkBytes: Buffer | undefined;
let corkStatus = 0;
function sendCorked(): void {
  corkStatus = corkSocket!.send(corkBytes!, true);
}

/** A uWS WebSocket as a ByteChannel (binary messages carry the MQTT byte stream). */
class WsChannel implements ByteChannel {
  readonly transport: 'ws' | 'wss';
  readonly remoteAddress: string;
  sink: ChannelSink | undefined;
  readonly #ws: uWS.WebSocket<SocketData>;
  readonly #data: SocketData;
  readonly #onDropped: WsListenerOptions['onSendDropped'];

  constructor(ws: uWS.WebSocket<SocketData>, data: SocketData, transport: 'ws' | 'wss', remoteAddress: string, onDropped: WsListenerOptions['onSendDropped']) {
    this.#ws = ws;
    this.#data = data;
    this.transport = transport;
    this.remoteAddress = remoteAddress;
    this.#onDropped = onDropped;
  }

  write(bytes: Buffer): boolean {
    if (this.#data.closed) return false;
    corkSocket = this.#ws;
    corkBytes = bytes;
    corkStatus = 1;
    try {
      this.#ws.cork(sendCorked);
    } finally {
      corkSocket = undefined;
      corkBytes = undefined;
    }
    if (corkStatus === 2) {
      // DROPPED: uWS buffers no more than maxBackpressure and discarded these bytes. The MQTT
      // stream has a hole now, so the connection must end rather than lose bytes silently.
      const buffered = this.#ws.getBufferedAmount();
      this.#data.closed = true;
      this.#ws.end(1013, 'send buffer limit exceeded');
      this.#onDropped?.(this.remoteAddress, buffered);
      return false;
    }
    return corkStatus === 1;
  }

  bufferedBytes(): number {
    return this.#data.closed ? 0 : this.#ws.getBufferedAmount();
  }

  close(): void {
    if (!this.#data.closed) this.#ws.end(1000);
  }
}

/**
 * Hub named by an MQTT WebSocket path, undefined if the path is not an MQTT endpoint, or null if
 * it is one but names no valid hub (a broken escape, or a name `isValidHub` refuses).
 */
export function hubFromPath(url: string, defaultHub: string, isValidHub?: (name: string) => boolean): string | undefined | null {
  if (url === '/mqtt' || url === '/mqtt/') return defaultHub;
  const m = /^\/clients\/mqtt\/hubs\/([^/]+)\/?$/.exec(url);
  if (!m) return undefined;
  let hub: string;
  try {
    hub = decodeURIComponent(m[1]!);
  } catch {
    return null;
  }
  return isValidHub && !isValidHub(hub) ? null : hub;
}

/** Pick the MQTT subprotocol from a Sec-WebSocket-Protocol header: "mqtt", else "mqttv3.1". */
export function pickSubprotocol(header: string): string | undefined {
  const offered = header.split(',').map((s) => s.trim()).filter(Boolean);
  if (offered.includes('mqtt')) return 'mqtt';
  if (offered.includes('mqttv3.1')) return 'mqttv3.1';
  return undefined;
}

function tokenFrom(query: string, authorization: string): string | undefined {
  const q = new URLSearchParams(query).get('access_token');
  if (q) return q;
  const m = /^Bearer\s+(.+)$/i.exec(authorization);
  return m?.[1];
}

/** Listen for MQTT over WebSocket. Resolves once bound. */
export function listenWs(opts: WsListenerOptions): Promise<Listener> {
  const app = opts.tls
    ? uWS.SSLApp({
      cert_file_name: opts.tls.certFile, key_file_name: opts.tls.keyFile, passphrase: opts.tls.passphrase,
      ...(opts.tls.ciphers === undefined ? {} : { ssl_ciphers: opts.tls.ciphers }),
    })
    : uWS.App();
  const transport = opts.tls ? 'wss' : 'ws';
  const open = new Set<uWS.WebSocket<SocketData>>();
  app.ws<SocketData>('/*', {
    maxPayloadLength: opts.maxPayloadBytes,
    idleTimeout: 0,
    maxBackpressure: opts.maxBackpressureBytes ?? 64 * 1024 * 1024,
    sendPingsAutomatically: false,
    compression: uWS.DISABLED,
    upgrade: (res, req, context) => {
      const url = req.getUrl();
      const origin = req.getHeader('origin');
      if (origin !== '' && opts.allowedOrigins && !opts.allowedOrigins.has(origin) && !opts.allowedOrigins.has('*')) {
        opts.onOriginRefused?.(origin, url);
        res.writeStatus('403 Forbidden').end('origin not allowed');
        return;
      }
      const hub = hubFromPath(url, opts.defaultHub, opts.isValidHub);
      if (hub === undefined) {
        res.writeStatus('404 Not Found').end('no MQTT endpoint at this path');
        return;
      }
      if (hub === null) {
        res.writeStatus('400 Bad Request').end('invalid hub name: a letter, then up to 127 letters, digits or _`,.[]');
        return;
      }
      if (opts.admit && !opts.admit(Buffer.from(res.getRemoteAddressAsText()).toString())) {
        res.writeStatus('503 Service Unavailable').end('connection limit reached');
        return;
      }
      const offered = req.getHeader('sec-websocket-protocol');
      // Echo the chosen subprotocol, or `ws`-based clients abort the handshake
      const protocol = offered ? pickSubprotocol(offered) : undefined;
      if (offered && protocol === undefined) {
        res.writeStatus('400 Bad Request').end('MQTT over WebSocket needs the "mqtt" subprotocol');
        return;
      }
      const data: SocketData = {
        hub, token: tokenFrom(req.getQuery() ?? '', req.getHeader('authorization')), channel: undefined, closed: false,
      };
      res.upgrade(data, req.getHeader('sec-websocket-key'), protocol ?? '', req.getHeader('sec-websocket-extensions'), context);
    },
    open: (ws) => {
      open.add(ws);
      const data = ws.getUserData();
      const channel = new WsChannel(ws, data, transport, Buffer.from(ws.getRemoteAddressAsText()).toString(), opts.onSendDropped);
      data.channel = channel;
      try {
        opts.onConnection(channel, { hub: data.hub, upgradeToken: data.token });
      } catch {
        ws.end(1011);
      }
    },
    message: (ws, message, isBinary) => {
      const data = ws.getUserData();
      if (!isBinary) {
        // [MQTT-6.0.0-1] MQTT packets come in binary frames; any other data frame closes the connection
        if (!data.closed) ws.end(1003, 'MQTT over WebSocket needs binary frames');
        return;
      }
      // The ArrayBuffer is only valid during this callback: copy it
      const bytes = Buffer.from(new Uint8Array(message));
      try {
        data.channel?.sink?.channelData(bytes);
      } catch {
        if (!data.closed) ws.end(1011);
      }
    },
    drain: (ws) => {
      try {
        ws.getUserData().channel?.sink?.channelDrain();
      } catch {
        ws.end(1011);
      }
    },
    close: (ws) => {
      open.delete(ws);
      const data = ws.getUserData();
      data.closed = true;
      data.channel?.sink?.channelClosed();
    },
  });
  opts.routes?.(app);
  app.any('/*', (res) => {
    res.writeStatus('404 Not Found').end('not found');
  });
  return new Promise((resolve, reject) => {
    app.listen(opts.host, opts.port, (token) => {
      if (!token) {
        reject(new Error(`could not listen on ${opts.host}:${opts.port} (address in use or not available)`));
        return;
      }
      resolve({
        port: uWS.us_socket_local_port(token),
        close: async () => {
          uWS.us_listen_socket_close(token);
          for (const ws of [...open]) {
            if (!ws.getUserData().closed) ws.end(1001);
          }
        },
      });
    });
  });
}
