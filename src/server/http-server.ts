// The HTTP port: one uWS app (SSLApp with TLS) from the loaded uWebSockets.js build, with Fastify
// on it through fastify-uws for HTTP routes; transports mount their WebSocket endpoints on `app`.
import { lookup } from 'node:dns/promises';
import type { Server } from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerFactory } from 'fastify';
import type { TemplatedApp } from 'uWebSockets.js';
import type { Uws } from '../transport/uws-loader.ts';

export interface HttpServerOptions {
  /** The build chosen by the loader, already shared with fastify-uws (shareUwsBuild). */
  uws: Uws;
  /** False for the pure-JS fallback: Fastify then runs on node:http, and there is no app for WebSockets. */
  native: boolean;
  host: string;
  port: number;
  /** uWS has no minimum-version option: it accepts TLSv1.2 and TLSv1.3. `ciphers`: OpenSSL list for TLS 1.2. */
  tls?: { certFile: string; keyFile: string; passphrase?: string; ciphers?: string };
  logger: FastifyBaseLogger;
}

/** The HTTP port: Fastify for routes, `app` for WebSocket endpoints, one listen socket. */
export interface HttpServer {
  /** Mount WebSocket endpoints here before `listen`; undefined on the pure-JS fallback, which cannot upgrade. */
  readonly app: TemplatedApp | undefined;
  /** Register HTTP routes here before `listen`. */
  readonly fastify: FastifyInstance;
  /** Bind host and port; resolves with the bound port. */
  listen(): Promise<number>;
  /** Stop listening (open WebSockets are the mount's to end). */
  close(): Promise<void>;
}

/**
 * fastify-uws creates a plain App of its own and keeps it in a symbol-keyed slot; it never makes an
 * SSLApp. Put ours there instead, before Fastify registers its routes on it at listen.
 */
function adoptApp(server: object, app: TemplatedApp): void {
  const slot = Object.getOwnPropertySymbols(server).find((s) => s.description === 'uws.app');
  if (slot === undefined) throw new Error('fastify-uws has no "uws.app" slot on its server (this code follows fastify-uws 1.0.2)');
  (server as Record<symbol, unknown>)[slot] = app;
}

/** Fastify's own log lines, minus one per request and per unknown route (the broker logs events, not traffic). */
class QuietRequests extends LogController {
  override incomingRequest(): void {}

  override routeNotFound(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (error) super.requestCompleted(error, request, reply);
  }
}

/** Create the app and Fastify on it; nothing listens yet. */
export async function createHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  if (!opts.native) return onNodeHttp(opts);
  const { uws, tls } = opts;
  const app = tls
    ? uws.SSLApp({
      cert_file_name: tls.certFile, key_file_name: tls.keyFile, passphrase: tls.passphrase,
      ...(tls.ciphers === undefined ? {} : { ssl_ciphers: tls.ciphers }),
    })
    : uws.App();
  // Imported only now: shareUwsBuild must be in place before fastify-uws imports uWebSockets.js
  const { serverFactory } = await import('fastify-uws');
  // Typed as Fastify's default (node:http) server: fastify-uws's Server stands in for one
  const factory: FastifyServerFactory = (handler, options) => {
    const server = serverFactory(handler, { ...options, https: tls !== undefined }) as Server;
    adoptApp(server, app);
    return server;
  };
  const fastify = Fastify({ loggerInstance: opts.logger, logController: new QuietRequests(), serverFactory: factory, routerOptions });
  return withListen(app, fastify, opts);
}

/**
 * Fastify on node:http, for the pure-JS fallback: fastify-uws needs what only native builds do
 * (lower-case methods, onWritable), and the fallback answers no WebSocket upgrade anyway.
 */
function onNodeHttp(opts: HttpServerOptions): HttpServer {
  if (opts.tls) throw new Error('the pure-JS uWebSockets.js fallback cannot serve TLS on the HTTP port');
  return withListen(undefined, Fastify({ loggerInstance: opts.logger, logController: new QuietRequests(), routerOptions }), opts);
}

/**
 * Path parameters are client ids (up to --max-client-id-length), group names (up to 1024
 * characters) and hub names: the router's default cap of 100 characters would answer 414 for them.
 */
const routerOptions = { maxParamLength: 65535 };

function withListen(app: TemplatedApp | undefined, fastify: FastifyInstance, opts: HttpServerOptions): HttpServer {
  return {
    app,
    fastify,
    listen: async () => {
      // An address, not a name: given "localhost", fastify-uws would listen on every interface
      const { address } = await lookup(opts.host);
      await fastify.listen({ host: address, port: opts.port });
      const bound = fastify.server.address();
      if (bound === null || typeof bound === 'string') throw new Error('the HTTP server reports no port');
      return bound.port;
    },
    close: () => fastify.close(),
  };
}
