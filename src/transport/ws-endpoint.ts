// WebSocket endpoints declared as data and mounted on a uWS app the transport does not own: path
// matching, Origin policy, subprotocol choice, and the (possibly asynchronous) upgrade decision.
// The decision (`runUpgrade`) is the same for every mount: node-ws.ts mounts the same endpoints on a
// Node HTTPS server, where client certificates are visible.
import { STATUS_CODES } from 'node:http';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_socket_context_t } from 'uWebSockets.js';
import type { PeerCertificate } from './byte-channel.ts';
import { peerCertificateFromHeader } from './peer-certificate.ts';

/** What an endpoint learns of an upgrade request (copied: uWS's request dies when the handler returns). */
export interface UpgradeRequest {
  /** Path without the query string, as sent (not decoded). */
  readonly url: string;
  /** Query string without the `?`. */
  readonly query: string;
  /** The `{name}` parts of the endpoint's path, percent-decoded. */
  readonly params: Readonly<Record<string, string>>;
  /** Request headers by lower-case name. */
  readonly headers: Readonly<Record<string, string>>;
  readonly remoteAddress: string;
  /** The subprotocol chosen from the client's offer, '' when it offered none. */
  readonly subprotocol: string;
  /** Aborted when the client goes away before an asynchronous decision is answered. */
  readonly signal: AbortSignal;
  /** The client's TLS certificate: from the handshake (Node TLS mount) or a trusted header (uWS mount, opt-in). */
  readonly clientCertificate?: PeerCertificate;
}

/** An authorizer's answer: accept with the data `open` gets, or refuse with an HTTP status and body. */
export type UpgradeDecision<D> = { readonly accept: D } | { readonly refuse: number; readonly body: string };

/** One connected socket's handler, returned by `open`. Methods, not closures: idle sockets stay cheap. */
export interface WsSocketHandler {
  /** A data frame; `message` is valid only during the call (uWS reuses it), so copy what you keep. */
  wsMessage(message: ArrayBuffer, isBinary: boolean): void;
  /** The send buffer has drained after a send that reported backpressure. */
  wsDrain(): void;
  /** Called once, when the socket is gone (either side). */
  wsClosed(code: number): void;
}

/** What the mount keeps for each socket (uWS user data), shared with the socket's handler. */
export interface WsSocketState<D> {
  /** The accepted upgrade's data; cleared once `open` has run. */
  data: D | undefined;
  handler: WsSocketHandler | undefined;
  /** Set when the socket is gone or being ended: no send, no end after that. */
  closed: boolean;
}

/**
 * A connected socket as endpoints see it: the part of uWS's WebSocket they use, which a uWS socket
 * is and the Node mount's adapter (node-ws.ts) implements.
 */
export interface WsSocket<D> {
  getUserData(): WsSocketState<D>;
  /** 1: sent, 0: sent but buffered (`wsDrain` follows), 2: dropped (the backpressure limit). */
  send(message: Uint8Array | string, isBinary?: boolean): number;
  /** Run `cb`, batching its sends. */
  cork(cb: () => void): unknown;
  getBufferedAmount(): number;
  end(code?: number, shortMessage?: string): void;
  getRemoteAddressAsText(): ArrayBuffer;
}

/** A WebSocket endpoint, mounted by `mountWsEndpoints`. */
export interface WsEndpoint<D> {
  /** Path with `{name}` parameters that match one segment each, e.g. `/clients/mqtt/hubs/{hub}`; a trailing `/` is accepted too. */
  readonly path: string;
  /** Subprotocols this endpoint speaks, preferred first. No offer from the client is accepted, with none chosen. */
  readonly subprotocols: readonly string[];
  /** Body of the 400 answer to an offer that names none of `subprotocols`. */
  readonly subprotocolRefusal: string;
  /** Largest message accepted; a larger one closes the socket (uWS, code 1009). */
  readonly maxPayloadBytes: number;
  /** Bytes uWS may buffer for one socket before a send is dropped (default 64 MiB). */
  readonly maxBackpressureBytes?: number;
  /** Decides the upgrade; may be async (tokens, upstream checks). Runs after the path, Origin and subprotocol checks. */
  authorizeUpgrade(req: UpgradeRequest): UpgradeDecision<D> | Promise<UpgradeDecision<D>>;
  /** The socket is open; return its handler. A throw closes the socket with 1011. */
  open(ws: WsSocket<D>, data: D): WsSocketHandler;
  /** An asynchronous accept came after the client had gone: release what `data` holds. */
  abandon?(data: D): void;
}

/** Options shared by every endpoint of one app. */
export interface WsMountOptions {
  /**
   * Browser origins whose upgrades are served (exact match; "*" matches any); an upgrade with an Origin
   * header not listed gets 403. Upgrades without Origin (non-browser clients) are served. Unset: no check.
   */
  allowedOrigins?: ReadonlySet<string>;
  /**
   * Upgrades this says carry their own credentials (an access token the endpoint verifies) skip the
   * Origin check: a page of another origin cannot hold a valid token unless a server issued it one.
   */
  originCheckExempt?: (head: Pick<UpgradeHead, 'query' | 'headers'>) => boolean;
  /** Told of each upgrade refused for its Origin. */
  onOriginRefused?: (origin: string, url: string) => void;
  /**
   * Longest wait for an asynchronous upgrade decision (default 10 s): then the client gets 503 and
   * the request's signal aborts; a decision that comes later is handed back like an aborted one.
   */
  decisionTimeoutMs?: number;
  /** Told of an authorizer or `open` that threw (the client got 500, or the socket 1011). */
  onError?: (err: unknown, url: string) => void;
  /**
   * uWS mount only: a lower-case request header from which `UpgradeRequest.clientCertificate` is
   * taken (see peerCertificateFromHeader). Only behind a TLS terminator that verifies client
   * certificates and overwrites this header: anyone else can send it.
   */
  clientCertificateHeader?: string;
}

/** The mounted endpoints' sockets. */
export interface WsMount {
  /** End every open socket (1001, going away). */
  closeAll(): void;
}

/** Pick the first of `accepted` that the Sec-WebSocket-Protocol header offers; '' if it offers none; undefined if it offers only others. */
export function chooseSubprotocol(header: string, accepted: readonly string[]): string | undefined {
  if (header === '') return '';
  const offered = header.split(',').map((s) => s.trim()).filter(Boolean);
  if (offered.length === 0) return '';
  return accepted.find((p) => offered.includes(p));
}

/** uWS route patterns for an endpoint path (`{name}` → `:name`; with and without a trailing `/`) and the parameter names in order. */
export function routePatterns(path: string): { patterns: string[]; names: string[] } {
  const names: string[] = [];
  const base = path.replace(/\/+$/, '').replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    names.push(name);
    return `:${name}`;
  });
  if (!base.startsWith('/') || /[{}*]/.test(base)) throw new Error(`invalid WebSocket endpoint path: ${path}`);
  return { patterns: [base, `${base}/`], names };
}

/** `{name}` → one non-empty or empty segment; a trailing `/` accepted. Segments come back raw (not decoded). */
export function pathMatcher(path: string): (url: string) => string[] | undefined {
  routePatterns(path); // the same validation as the uWS mount
  const base = path.replace(/\/+$/, '');
  const source = base.split(/\{[A-Za-z_][A-Za-z0-9_]*\}/).map((part) => part.replace(/[.*+?^$()|[\]\\]/g, '\\$&')).join('([^/]*)');
  const re = new RegExp(`^${source}/?$`);
  return (url) => {
    const m = re.exec(url);
    return m ? m.slice(1) : undefined;
  };
}

const COMPRESSION_DISABLED = 0; // uWS.DISABLED in every build

/** An upgrade request as a mount reads it, before any check. */
export interface UpgradeHead {
  /** Path without the query string, as sent. */
  url: string;
  query: string;
  /** Request headers by lower-case name. */
  headers: Record<string, string>;
  remoteAddress: string;
  /** The raw (not decoded) `{name}` segments of the path, in order. */
  rawParams: readonly string[];
  clientCertificate: PeerCertificate | undefined;
}

/** How a mount answers one upgrade. */
export interface UpgradeAnswer {
  /** An HTTP error answer. */
  refuse(status: number, body: string): void;
  /** Complete the upgrade with `state` as the socket's user data; false if it could not be (the client is gone). */
  upgrade(state: WsSocketState<unknown>, protocol: string): boolean;
  /** Run an answer given after the upgrade handler returned (uWS: corked). */
  later(fn: () => void): void;
  /** `fn` runs if the client goes away before the answer. */
  onAborted(fn: () => void): void;
}

class CopiedRequest implements UpgradeRequest {
  readonly url: string;
  readonly query: string;
  readonly params: Record<string, string>;
  readonly headers: Record<string, string>;
  readonly remoteAddress: string;
  readonly subprotocol: string;
  readonly clientCertificate?: PeerCertificate;
  #abort: AbortController | undefined;
  #gone = false;

  constructor(head: UpgradeHead, params: Record<string, string>, subprotocol: string) {
    this.url = head.url;
    this.query = head.query;
    this.headers = head.headers;
    this.params = params;
    this.remoteAddress = head.remoteAddress;
    this.subprotocol = subprotocol;
    if (head.clientCertificate !== undefined) this.clientCertificate = head.clientCertificate;
  }

  // Made on first use only: most decisions are synchronous and never look at it
  get signal(): AbortSignal {
    if (this.#abort === undefined) {
      this.#abort = new AbortController();
      if (this.#gone) this.#abort.abort();
    }
    return this.#abort.signal;
  }

  aborted(): void {
    this.#gone = true;
    this.#abort?.abort();
  }
}

/** Answer an upgrade: refuse it, or upgrade with fresh socket state holding the accepted data. */
function complete(endpoint: WsEndpoint<unknown>, answer: UpgradeAnswer, decision: UpgradeDecision<unknown>, protocol: string): void {
  if (typeof decision !== 'object' || decision === null || !('accept' in decision)) {
    // A refusal, or an answer that is neither: never upgrade on a malformed decision (fail closed)
    const refused = decision as { refuse?: unknown; body?: unknown } | null;
    if (typeof refused?.refuse === 'number') answer.refuse(refused.refuse, String(refused.body ?? ''));
    else answer.refuse(500, 'upgrade check failed');
    return;
  }
  const state: WsSocketState<unknown> = { data: decision.accept, handler: undefined, closed: false };
  if (!answer.upgrade(state, protocol)) endpoint.abandon?.(decision.accept);
}

/** Whether an Origin header is refused by the mount's policy ('' = none sent: never refused). */
export function originRefusal(opts: WsMountOptions): (origin: string) => boolean {
  return (origin) => origin !== '' && opts.allowedOrigins !== undefined && !opts.allowedOrigins.has(origin) && !opts.allowedOrigins.has('*');
}

/**
 * Decide one upgrade to `endpoint`, whichever mount received it: Origin, path parameters, subprotocol,
 * then the endpoint's (possibly asynchronous, deadline-bound) authorizer; the answer goes to `answer`.
 */
export function runUpgrade(endpoint: WsEndpoint<unknown>, names: readonly string[], opts: WsMountOptions, head: UpgradeHead, answer: UpgradeAnswer): void {
  const origin = head.headers['origin'] ?? '';
  if (originRefusal(opts)(origin) && !opts.originCheckExempt?.(head)) {
    opts.onOriginRefused?.(origin, head.url);
    answer.refuse(403, 'origin not allowed');
    return;
  }
  const params: Record<string, string> = {};
  for (let i = 0; i < names.length; i++) {
    const raw = head.rawParams[i] ?? '';
    if (raw === '') {
      answer.refuse(404, 'no WebSocket endpoint at this path');
      return;
    }
    try {
      params[names[i]!] = decodeURIComponent(raw);
    } catch {
      answer.refuse(400, 'malformed percent-encoding in the path');
      return;
    }
  }
  // Echo the chosen subprotocol, or `ws`-based clients abort the handshake
  const protocol = chooseSubprotocol(head.headers['sec-websocket-protocol'] ?? '', endpoint.subprotocols);
  if (protocol === undefined) {
    answer.refuse(400, endpoint.subprotocolRefusal);
    return;
  }
  const request = new CopiedRequest(head, params, protocol);
  let decision: UpgradeDecision<unknown> | Promise<UpgradeDecision<unknown>>;
  try {
    decision = endpoint.authorizeUpgrade(request);
  } catch (err) {
    opts.onError?.(err, request.url);
    answer.refuse(500, 'upgrade check failed');
    return;
  }
  if (typeof (decision as { then?: unknown }).then !== 'function') {
    complete(endpoint, answer, decision as UpgradeDecision<unknown>, protocol); // still inside the mount's handler (uWS: corked already)
    return;
  }
  // Asynchronous: the mount must be told we answer later (onAborted), and the answer goes through `later`
  let gone = false;
  let answered = false;
  const timer = setTimeout(() => {
    if (gone || answered) return;
    // Answered now: a decision that comes later finds the request gone and is handed back
    gone = true;
    answered = true;
    request.aborted();
    opts.onError?.(new Error(`upgrade decision not made within ${opts.decisionTimeoutMs ?? 10_000} ms`), request.url);
    answer.later(() => answer.refuse(503, 'upgrade check timed out'));
  }, opts.decisionTimeoutMs ?? 10_000);
  answer.onAborted(() => {
    if (answered) return;
    clearTimeout(timer);
    gone = true;
    request.aborted();
  });
  Promise.resolve(decision).then((d) => {
    clearTimeout(timer);
    if (gone) {
      // Never upgrade a response the mount has discarded; hand the accept back instead
      if (typeof d === 'object' && d !== null && 'accept' in d) endpoint.abandon?.(d.accept);
      return;
    }
    answer.later(() => {
      answered = true;
      complete(endpoint, answer, d, protocol);
    });
  }, (err: unknown) => {
    clearTimeout(timer);
    opts.onError?.(err, request.url);
    if (!gone) {
      answered = true;
      answer.later(() => answer.refuse(500, 'upgrade check failed'));
    }
  }).catch((err: unknown) => {
    // A throwing `abandon` or upgrade: reported, the process goes on, and the request is answered
    opts.onError?.(err, request.url);
    if (!gone && !answered) {
      answered = true;
      try {
        answer.later(() => answer.refuse(500, 'upgrade check failed'));
      } catch (e) {
        opts.onError?.(e, request.url);
      }
    }
  });
}

function refuse(res: HttpResponse, status: number, body: string): void {
  res.writeStatus(`${status} ${STATUS_CODES[status] ?? ''}`).end(body);
}

/** The uWS upgrade handler of one endpoint: the request copied (uWS's dies when the handler returns), then `runUpgrade`. */
function upgradeHandler(endpoint: WsEndpoint<unknown>, names: readonly string[], opts: WsMountOptions) {
  const certHeader = opts.clientCertificateHeader;
  return (res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void => {
    const headers: Record<string, string> = {};
    req.forEach((name, value) => { headers[name] = value; });
    const rawParams: string[] = [];
    for (let i = 0; i < names.length; i++) rawParams.push(req.getParameter(i));
    const certValue = certHeader === undefined ? undefined : headers[certHeader];
    const head: UpgradeHead = {
      url: req.getUrl(), query: req.getQuery() ?? '', headers, rawParams,
      remoteAddress: Buffer.from(res.getRemoteAddressAsText()).toString(),
      clientCertificate: certValue ? peerCertificateFromHeader(certValue) : undefined,
    };
    const key = req.getHeader('sec-websocket-key');
    const extensions = req.getHeader('sec-websocket-extensions');
    runUpgrade(endpoint, names, opts, head, {
      refuse: (status, body) => refuse(res, status, body),
      upgrade: (state, protocol) => {
        res.upgrade(state, key, protocol, extensions, context);
        return true;
      },
      later: (fn) => { res.cork(fn); },
      onAborted: (fn) => { res.onAborted(fn); },
    });
  };
}

/** Mount `endpoints` on `app` (before it listens); upgrades to other paths get 404. */
export function mountWsEndpoints(app: TemplatedApp, endpoints: ReadonlyArray<WsEndpoint<unknown>>, opts: WsMountOptions = {}): WsMount {
  const open = new Set<WebSocket<WsSocketState<unknown>>>();
  const isRefusedOrigin = originRefusal(opts);
  for (const endpoint of endpoints) {
    const { patterns, names } = routePatterns(endpoint.path);
    const upgrade = upgradeHandler(endpoint, names, opts);
    for (const pattern of patterns) {
      app.ws<WsSocketState<unknown>>(pattern, {
        maxPayloadLength: endpoint.maxPayloadBytes,
        idleTimeout: 0,
        maxBackpressure: endpoint.maxBackpressureBytes ?? 64 * 1024 * 1024,
        sendPingsAutomatically: false,
        compression: COMPRESSION_DISABLED,
        upgrade,
        open: (ws) => {
          open.add(ws);
          const state = ws.getUserData();
          const data = state.data;
          state.data = undefined;
          try {
            state.handler = endpoint.open(ws, data);
          } catch (err) {
            opts.onError?.(err, endpoint.path);
            if (!state.closed) {
              state.closed = true;
              ws.end(1011);
            }
          }
        },
        message: (ws, message, isBinary) => {
          const state = ws.getUserData();
          try {
            state.handler?.wsMessage(message, isBinary);
          } catch {
            if (!state.closed) {
              state.closed = true;
              ws.end(1011);
            }
          }
        },
        drain: (ws) => {
          const state = ws.getUserData();
          try {
            state.handler?.wsDrain();
          } catch {
            if (!state.closed) {
              state.closed = true;
              ws.end(1011);
            }
          }
        },
        close: (ws, code) => {
          open.delete(ws);
          const state = ws.getUserData();
          state.closed = true;
          state.handler?.wsClosed(code);
        },
      });
    }
  }
  app.ws('/*', {
    upgrade: (res, req) => {
      const origin = req.getHeader('origin');
      if (isRefusedOrigin(origin)) {
        opts.onOriginRefused?.(origin, req.getUrl());
        refuse(res, 403, 'origin not allowed');
        return;
      }
      refuse(res, 404, 'no WebSocket endpoint at this path');
    },
  });
  return {
    closeAll: () => {
      for (const ws of [...open]) {
        const state = ws.getUserData();
        if (!state.closed) {
          state.closed = true;
          ws.end(1001);
        }
      }
    },
  };
}
