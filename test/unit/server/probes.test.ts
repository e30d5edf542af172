// /readyz names the failed checks (503); /metrics with a token refuses other credentials (Fastify inject, no port).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { registerProbeRoutes } from '../../../src/server/health.ts';
import { registerMetricsRoute } from '../../../src/server/metrics-route.ts';

test('/readyz: 503 with the failed checks while one fails, 200 once all pass', async () => {
  const app = Fastify();
  const state = { store: false, listeners: true };
  registerProbeRoutes(app, () => ({ ...state }));
  const down = await app.inject({ method: 'GET', url: '/readyz' });
  assert.equal(down.statusCode, 503);
  assert.deepEqual(down.json(), { status: 'unavailable', failed: ['store'], checks: { store: false, listeners: true } });
  state.store = true;
  const up = await app.inject({ method: 'GET', url: '/readyz' });
  assert.equal(up.statusCode, 200);
  assert.equal((await app.inject({ method: 'HEAD', url: '/api/health' })).statusCode, 200);
  await app.close();
});

test('/metrics with a token: only the exact bearer credential is served', async () => {
  const app = Fastify();
  registerMetricsRoute(app, { contentType: 'text/plain; version=0.0.4; charset=utf-8', scrape: async () => 'tern_sessions 0\n' }, 'tok');
  for (const authorization of [undefined, 'Bearer tokx', 'bearer tok', 'Basic tok', 'Bearer tok ']) {
    const r = await app.inject({ method: 'GET', url: '/metrics', headers: authorization === undefined ? {} : { authorization } });
    assert.equal(r.statusCode, 401, String(authorization));
    assert.equal(r.headers['www-authenticate'], 'Bearer');
  }
  const ok = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer tok' } });
  assert.equal(ok.statusCode, 200);
  assert.equal(ok.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  assert.equal(ok.body, 'tern_sessions 0\n');
  await app.close();
});
