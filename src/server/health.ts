// Health and readiness on the HTTP port: GET /health (connections), /healthz (liveness), /readyz
// (store and listeners), and /api/health as Azure Web PubSub answers it (getServiceStatus).
import type { FastifyInstance, FastifyReply } from 'fastify';

/** A Buffer: Fastify would add "; charset=utf-8" to a string's JSON content type, and the header stays as it was. */
function sendJson(reply: FastifyReply, status: number, body: unknown): void {
  void reply.code(status).header('content-type', 'application/json').send(Buffer.from(JSON.stringify(body)));
}

/** `GET /health` answers 200 `{"status":"ok","connections":N}` (application/json). */
export function registerHealthRoute(fastify: FastifyInstance, connections: () => number): void {
  fastify.get('/health', (_req, reply) => {
    sendJson(reply, 200, { status: 'ok', connections: connections() });
  });
}

/** What readiness checks: each named check is true when it passes. */
export type ReadinessChecks = () => Record<string, boolean>;

/**
 * `GET /healthz`: 200 `{"status":"ok"}` while the process serves HTTP. `GET /readyz`: 200
 * `{"status":"ok","checks":{...}}` when every check passes, else 503 `{"status":"unavailable","failed":[...],"checks":{...}}`.
 * `HEAD`/`GET /api/health`: 200 without credentials, as Azure's service status. Register these
 * on the root instance before the /api scope, whose routes all need a token.
 */
export function registerProbeRoutes(fastify: FastifyInstance, checks: ReadinessChecks): void {
  fastify.get('/healthz', (_req, reply) => {
    sendJson(reply, 200, { status: 'ok' });
  });
  fastify.get('/readyz', (_req, reply) => {
    const results = checks();
    const failed = Object.keys(results).filter((k) => !results[k]);
    if (failed.length === 0) sendJson(reply, 200, { status: 'ok', checks: results });
    else sendJson(reply, 503, { status: 'unavailable', failed, checks: results });
  });
  // (Fastify answers HEAD for this GET route: same status and headers, no body)
  fastify.get('/api/health', (_req, reply) => {
    sendJson(reply, 200, { status: 'ok' });
  });
}
