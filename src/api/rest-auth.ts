// Request authentication of the REST API (spec §6.2): `Authorization: Bearer <jwt>` signed HS256
// with an access key, `aud` the request URL (compared leniently: query string, trailing slash and
// host may differ). The actor recorded in the audit log is the name of the key that signed it.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TokenVerifier } from '../auth/jwt.ts';
import { sendError } from './errors.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who made an authenticated API call (for the audit log). */
    actor: string;
  }
}

/** Require a valid bearer token on every route registered after this in `app`'s scope. */
export function requireAccessKeyToken(app: FastifyInstance, verifier: TokenVerifier): void {
  app.decorateRequest('actor', '');
  // A request without any bearer token is refused before its body is read (a synchronous check:
  // it does not hold up the uWS body reader, unlike an asynchronous one, see below)
  app.addHook('onRequest', (req: FastifyRequest, reply: FastifyReply, done: () => void) => {
    if (/^Bearer\s+\S/i.test(req.headers.authorization ?? '')) {
      done();
      return;
    }
    req.log.info({ url: req.url, refusal: 'missing' }, 'REST request refused: no access token');
    void sendError(reply, 401, 'Unauthorized', 'no access token');
  });
  // preValidation, not onRequest: under fastify-uws a request body must be read from the socket
  // without waiting on anything first (uWS hands the data over only to a reader attached at once),
  // so the (asynchronous) token check runs once the body is parsed, before schema validation.
  app.addHook('preValidation', async (req: FastifyRequest, reply: FastifyReply) => {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    const url = `${req.protocol}://${req.headers.host ?? 'localhost'}${req.url}`;
    const r = await verifier.verifyRestToken(m?.[1], url);
    if (!r.ok) {
      req.log.info({ url: req.url, refusal: r.refusal }, 'REST request refused: %s', r.reason);
      return sendError(reply, 401, 'Unauthorized', r.reason);
    }
    req.actor = `key:${r.signer}`;
  });
}
