// MQTT over WebSocket: the /mqtt and /clients/mqtt/hubs/{hub} endpoints (hub rule, admission,
// upgrade token) and the socket as a ByteChannel (ArrayBuffer copies, corked writes, backpressure).
import type { ByteChannel, ChannelSink, OnConnection, PeerCertificate } from './byte-channel.ts';
import type { UpgradeDecision, UpgradeRequest, WsEndpoint, WsSocket, WsSocketHandler, WsSocketState } from './ws-endpoint.ts';

export interface MqttWsOptions {
  defaultHub: string;
  /** Largest WebSocket message accepted (≥ the MQTT maximum packet size). */
  maxPayloadBytes: number;
  onConnection: OnConnection;
  /** `wss` when the app serves TLS. */
  transport: 'ws' | 'wss';
  /** Asked at each upgrade; false answers HTTP 503 (connection limits). */
  admit?: (remoteAddress: string) => boolean;
  /** The hub naming rule; a path naming a hub that breaks it gets HTTP 400 at the upgrade. */
  isValidHub?: (name: string) => boolean;
  /** Bytes uWS may buffer for one socket; a send beyond it is dropped by uWS, and the connection closed. */
  maxBackpressureBytes?: number;
  /** Told when a connection is closed because a send was dropped (for the log). */
  onSendDropped?: (remoteAddress: string, bufferedBytes: number) => void;
  /**
   * Asked after admission with the upgrade's token (query `access_token` or `Authorization: Bearer`):
   * a refusal answers its HTTP status (401, or 503 when the token cannot be checked now) with `reason` as the body. Unset: every upgrade goes on to CONNECT.
   */
  checkCredentials?: (hub: string, token: string | undefined, req: UpgradeRequest) => Promise<{ ok: true } | { ok: false; status: number; reason: string }>;
}

/** What an accepted MQTT upgrade carries to `open`. */
interface MqttUpgrade {
  hub: string;
  token: string | undefined;
  clientCertificate: PeerCertificate | undefined;
}

type MqttSocket = WsSocket<MqttUpgrade>;

// ws.cork() takes a callback: one function for every write, fed through these, rather than a closure per write
let corkSocket: MqttSocket | undefined;
let corkBytes: Buffer | undefined;
let corkStatus = 0;
function sendCorked(): void {
  corkStatus = corkSocket!.send(corkBytes!, true);
}

/** A uWS WebSocket as a ByteChannel (binary messages carry the MQTT byte stream). */
class WsChannel implements ByteChannel, WsSocketHandler {
  readonly transport: 'ws' | 'wss';
  readonly remoteAddress: string;
  sink: ChannelSink | undefined;
  readonly #ws: MqttSocket;
  readonly #state: WsSocketState<MqttUpgrade>;
  readonly #onDropped: MqttWsOptions['onSendDropped'];

  constructor(ws: MqttSocket, transport: 'ws' | 'wss', onDropped: MqttWsOptions['onSendDropped']) {
    this.#ws = ws;
    this.#state = ws.getUserData();
    this.transport = transport;
    this.remoteAddress = Buffer.from(ws.getRemoteAddressAsText()).toString();
    this.#onDropped = onDropped;
  }

  write(bytes: Buffer): boolean {
    if (this.#state.closed) return false;
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
      this.#state.closed = true;
      this.#ws.end(1013, 'send buffer limit exceeded');
      this.#onDropped?.(this.remoteAddress, buffered);
      return false;
    }
    return corkStatus === 1;
  }

  bufferedBytes(): number {
    return this.#state.closed ? 0 : this.#ws.getBufferedAmount();
  }

  close(): void {
    if (!this.#state.closed) this.#ws.end(1000);
  }

  wsMessage(message: ArrayBuffer, isBinary: boolean): void {
    if (!isBinary) {
      // [MQTT-6.0.0-1] MQTT packets come in binary frames; any other data frame closes the connection
      if (!this.#state.closed) this.#ws.end(1003, 'MQTT over WebSocket needs binary frames');
      return;
    }
    // The ArrayBuffer is only valid during this callback: copy it
    this.sink?.channelData(Buffer.from(new Uint8Array(message)));
  }

  wsDrain(): void {
    this.sink?.channelDrain();
  }

  wsClosed(): void {
    this.sink?.channelClosed();
  }
}

/** MQTT subprotocols, preferred first: "mqtt", else "mqttv3.1". */
export const mqttSubprotocols = ['mqtt', 'mqttv3.1'] as const;

/** Whether an upgrade carries an access token (query `access_token` or `Authorization: Bearer`). */
export function carriesToken(head: { query: string; headers: Readonly<Record<string, string>> }): boolean {
  return tokenFrom(head.query, head.headers['authorization']) !== undefined;
}

function tokenFrom(query: string, authorization: string | undefined): string | undefined {
  const q = new URLSearchParams(query).get('access_token');
  if (q) return q;
  const m = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
  return m?.[1];
}

/** The MQTT WebSocket endpoints: `/mqtt` (the default hub) and `/clients/mqtt/hubs/{hub}`. */
export function mqttWsEndpoints(opts: MqttWsOptions): Array<WsEndpoint<MqttUpgrade>> {
  const authorize = (hub: string, req: UpgradeRequest): UpgradeDecision<MqttUpgrade> | Promise<UpgradeDecision<MqttUpgrade>> => {
    if (opts.admit && !opts.admit(req.remoteAddress)) return { refuse: 503, body: 'connection limit reached' };
    const token = tokenFrom(req.query, req.headers['authorization']);
    const accepted = { accept: { hub, token, clientCertificate: req.clientCertificate } };
    if (!opts.checkCredentials) return accepted;
    return opts.checkCredentials(hub, token, req).then((r) => (r.ok ? accepted : { refuse: r.status, body: r.reason }));
  };
  const common = {
    subprotocols: mqttSubprotocols,
    subprotocolRefusal: 'MQTT over WebSocket needs the "mqtt" subprotocol',
    maxPayloadBytes: opts.maxPayloadBytes,
    ...(opts.maxBackpressureBytes === undefined ? {} : { maxBackpressureBytes: opts.maxBackpressureBytes }),
    open: (ws: MqttSocket, data: MqttUpgrade): WsSocketHandler => {
      const channel = new WsChannel(ws, opts.transport, opts.onSendDropped);
      // Set before the broker sees the channel: it may end the socket at once, and uWS reports the close synchronously
      ws.getUserData().handler = channel;
      const cert = data.clientCertificate;
      opts.onConnection(channel, { hub: data.hub, upgradeToken: data.token, ...(cert ? { clientCertificate: cert } : {}) });
      return channel;
    },
  };
  return [
    { ...common, path: '/mqtt', authorizeUpgrade: (req) => authorize(opts.defaultHub, req) },
    {
      ...common,
      path: '/clients/mqtt/hubs/{hub}',
      authorizeUpgrade: (req) => {
        const hub = req.params['hub']!;
        if (opts.isValidHub && !opts.isValidHub(hub)) {
          return { refuse: 400, body: 'invalid hub name: a letter, then up to 127 letters, digits or _`,.[]' };
        }
        return authorize(hub, req);
      },
    },
  ];
}
