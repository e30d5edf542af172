// GET /health on the HTTP port: liveness and the number of client connections.
import type { FastifyInstance } from 'fastify';

/** `GET /health` answers 200 `{"status":"ok","connections":N}` (application/json). */
export function registerHealthRoute(fastify: FastifyInstance, connections: () => number): void {
  fastify.get('/health', (_req, reply) => {
    // A Buffer: Fastify would add "; charset=utf-8" to a string's JSON content type, and the header stays as it was
    void reply.header('content-type', 'application/json').send(Buffer.from(JSON.stringify({ status: 'ok', connections: connections() })));
  });
}
