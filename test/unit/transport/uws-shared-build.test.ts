// shareUwsBuild (src/transport/uws-loader.ts): once the loader has chosen a build, fastify-uws's own
// `import 'uWebSockets.js'` resolves to that build, so one binary serves the app and fastify-uws.
// Runs in its own process: the resolve hook it registers lasts for the process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { shareUwsBuild } from '../../../src/transport/uws-loader.ts';

const fakeEntry = fileURLToPath(new URL('../../fixtures/fake-uws.cjs', import.meta.url));

test('fastify-uws imported after shareUwsBuild makes its app with the shared build', async () => {
  const fake = createRequire(import.meta.url)(fakeEntry) as { made: object[] };
  shareUwsBuild({ entryFile: fakeEntry });
  const { serverFactory } = await import('fastify-uws');
  const server = serverFactory(() => undefined, {}) as unknown as Record<symbol, unknown>;
  const slot = Object.getOwnPropertySymbols(server).find((s) => s.description === 'uws.app');
  assert.ok(slot, 'fastify-uws keeps its app under the "uws.app" symbol (src/server/http-server.ts relies on it)');
  assert.deepEqual(server[slot], { madeBy: 'fake-uws fixture' });
  // The very module instance the loader holds, not a second copy of the file
  assert.equal(fake.made.length, 1);
  assert.equal(fake.made[0], server[slot]);
});
