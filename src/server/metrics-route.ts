// GET /metrics on the HTTP port: the Prometheus text exposition, open by default or behind a
// bearer secret (--metrics-token).
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

/** What the route serves (Metrics in observability/metrics.ts). */
export interface MetricsExposition {
  readonly contentType: string;
  scrape(): Promise<string>;
}

/** True if `header` is exactly `Bearer <token>` (compared in constant time). */
function hasBearer(header: string | undefined, token: string): boolean {
  if (header === undefined) return false;
  const given = Buffer.from(header);
  const wanted = Buffer.from(`Bearer ${token}`);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

/** `GET /metrics`: 200 with the exposition; with `token`, 401 unless `Authorization: Bearer <token>`. */
export function registerMetricsRoute(fastify: FastifyInstance, metrics: MetricsExposition, token: string | undefined): void {
  fastify.get('/metrics', async (req, reply) => {
    if (token !== undefined && !hasBearer(req.headers.authorization, token)) {
      return reply.code(401).header('www-authenticate', 'Bearer').header('content-type', 'text/plain; charset=utf-8').send('unauthorized\n');
    }
    return reply.header('content-type', metrics.contentType).send(await metrics.scrape());
  });
}
