// GET /health on the HTTP port: liveness and the number of client connections.
import type { FastifyInstance } from 'fastify';

/** `GET /health` answers 200 `{"status":"ok","connections":N}` (application/json). */
export function registerHealthRoute(fastify: FastifyInstance, connections: () => number): void {
  fastify.get('/health', (_req, reply) => {
    void reply.header('content-type', 'application/json').send(JSON.stringify({ status: 'ok', connections: connections() }));
  });
}
