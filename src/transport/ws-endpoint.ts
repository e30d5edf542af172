// WebSocket endpoints declared as data and mounted on a uWS app the transport does not own: path
// matching, Origin policy, subprotocol choice, and the (possibly asynchronous) upgrade decision.
import { STATUS_CODES } from 'node:http';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_socket_context_t } from 'uWebSockets.js';

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

/** A uWS WebSocket as the mount creates it. */
export type WsSocket<D> = WebSocket<WsSocketState<D>>;

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
  /** Told of each upgrade refused for its Origin. */
  onOriginRefused?: (origin: string, url: string) => void;
  /**
   * Longest wait for an asynchronous upgrade decision (default 10 s): then the client gets 503 and
   * the request's signal aborts; a decision that comes later is handed back like an aborted one.
   */
  decisionTimeoutMs?: number;
  /** Told of an authorizer or `open` that threw (the client got 500, or the socket 1011). */
  onError?: (err: unknown, url: string) => void;
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

const COMPRESSION_DISABLED = 0; // uWS.DISABLED in every build

function refuse(res: HttpResponse, status: number, body: string): void {
  res.writeStatus(`${status} ${STATUS_CODES[status] ?? ''}`).end(body);
}

class CopiedRequest implements UpgradeRequest {
  readonly url: string;
  readonly query: string;
  readonly params: Record<string, string>;
  readonly headers: Record<string, string> = {};
  readonly remoteAddress: string;
  readonly subprotocol: string;
  #abort: AbortController | undefined;
  #gone = false;

  constructor(res: HttpResponse, req: HttpRequest, params: Record<string, string>, subprotocol: string) {
    this.url = req.getUrl();
    this.query = req.getQuery() ?? '';
    req.forEach((name, value) => { this.headers[name] = value; });
    this.params = params;
    this.remoteAddress = Buffer.from(res.getRemoteAddressAsText()).toString();
    this.subprotocol = subprotocol;
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

interface UpgradeReply {
  key: string;
  protocol: string;
  extensions: string;
  context: us_socket_context_t;
}

/** Answer an upgrade: refuse it, or upgrade with fresh socket state holding the accepted data. */
function complete(res: HttpResponse, decision: UpgradeDecision<unknown>, reply: UpgradeReply): void {
  if (typeof decision !== 'object' || decision === null || !('accept' in decision)) {
    // A refusal, or an answer that is neither: never upgrade on a malformed decision (fail closed)
    const refused = decision as { refuse?: unknown; body?: unknown } | null;
    if (typeof refused?.refuse === 'number') refuse(res, refused.refuse, String(refused.body ?? ''));
    else refuse(res, 500, 'upgrade check failed');
    return;
  }
  const state: WsSocketState<unknown> = { data: decision.accept, handler: undefined, closed: false };
  res.upgrade(state, reply.key, reply.protocol, reply.extensions, reply.context);
}

/** The uWS upgrade handler of one endpoint: path parameters, subprotocol, then its authorizer. */
function upgradeHandler(endpoint: WsEndpoint<unknown>, names: readonly string[], opts: WsMountOptions, isRefusedOrigin: (origin: string) => boolean) {
  return (res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void => {
    const origin = req.getHeader('origin');
    if (isRefusedOrigin(origin)) {
      opts.onOriginRefused?.(origin, req.getUrl());
      refuse(res, 403, 'origin not allowed');
      return;
    }
    const params: Record<string, string> = {};
    for (let i = 0; i < names.length; i++) {
      const raw = req.getParameter(i);
      if (raw === '') {
        refuse(res, 404, 'no WebSocket endpoint at this path');
        return;
      }
      try {
        params[names[i]!] = decodeURIComponent(raw);
      } catch {
        refuse(res, 400, 'malformed percent-encoding in the path');
        return;
      }
    }
    // Echo the chosen subprotocol, or `ws`-based clients abort the handshake
    const protocol = chooseSubprotocol(req.getHeader('sec-websocket-protocol'), endpoint.subprotocols);
    if (protocol === undefined) {
      refuse(res, 400, endpoint.subprotocolRefusal);
      return;
    }
    const request = new CopiedRequest(res, req, params, protocol);
    const reply: UpgradeReply = { key: req.getHeader('sec-websocket-key'), protocol, extensions: req.getHeader('sec-websocket-extensions'), context };
    let decision: UpgradeDecision<unknown> | Promise<UpgradeDecision<unknown>>;
    try {
      decision = endpoint.authorizeUpgrade(request);
    } catch (err) {
      opts.onError?.(err, request.url);
      refuse(res, 500, 'upgrade check failed');
      return;
    }
    if (typeof (decision as { then?: unknown }).then !== 'function') {
      complete(res, decision as UpgradeDecision<unknown>, reply); // still inside uWS's handler, which is corked already
      return;
    }
    // Asynchronous: uWS must be told we answer later (onAborted), and the answer is written corked
    let gone = false;
    let answered = false;
    const timer = setTimeout(() => {
      if (gone || answered) return;
      // Answered now: a decision that comes later finds the request gone and is handed back
      gone = true;
      answered = true;
      request.aborted();
      opts.onError?.(new Error(`upgrade decision not made within ${opts.decisionTimeoutMs ?? 10_000} ms`), request.url);
      res.cork(() => refuse(res, 503, 'upgrade check timed out'));
    }, opts.decisionTimeoutMs ?? 10_000);
    res.onAborted(() => {
      clearTimeout(timer);
      gone = true;
      request.aborted();
    });
    Promise.resolve(decision).then((d) => {
      clearTimeout(timer);
      if (gone) {
        // Never upgrade a response uWS has discarded; hand the accept back instead
        if (typeof d === 'object' && d !== null && 'accept' in d) endpoint.abandon?.(d.accept);
        return;
      }
      res.cork(() => {
        complete(res, d, reply);
        answered = true;
      });
    }, (err: unknown) => {
      clearTimeout(timer);
      opts.onError?.(err, request.url);
      if (!gone) {
        answered = true;
        res.cork(() => refuse(res, 500, 'upgrade check failed'));
      }
    }).catch((err: unknown) => {
      // A throwing `abandon` or upgrade: reported, the process goes on, and the request is answered
      opts.onError?.(err, request.url);
      if (!gone && !answered) {
        try {
          res.cork(() => refuse(res, 500, 'upgrade check failed'));
        } catch (e) {
          opts.onError?.(e, request.url);
        }
      }
    });
  };
}

/** Mount `endpoints` on `app` (before it listens); upgrades to other paths get 404. */
export function mountWsEndpoints(app: TemplatedApp, endpoints: ReadonlyArray<WsEndpoint<unknown>>, opts: WsMountOptions = {}): WsMount {
  const open = new Set<WsSocket<unknown>>();
  const isRefusedOrigin = (origin: string): boolean =>
    origin !== '' && opts.allowedOrigins !== undefined && !opts.allowedOrigins.has(origin) && !opts.allowedOrigins.has('*');
  for (const endpoint of endpoints) {
    const { patterns, names } = routePatterns(endpoint.path);
    const upgrade = upgradeHandler(endpoint, names, opts, isRefusedOrigin);
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
