// The uWebSockets.js loader's choice (src/transport/uws-loader.ts): the first candidate that loads a
// native build wins, a failing or pure-JS one is passed over with its reason, none at all is an error.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseUws, isNativeUws, UwsLoadError, uwsCandidates, type Uws, type UwsCandidate } from '../../../src/transport/uws-loader.ts';

/** A stand-in build: native ones have SSLApp, the pure-JS fallback has not. */
function fakeBuild(native: boolean): Uws {
  return (native ? { App: () => ({}), SSLApp: () => ({}) } : { App: () => ({}) }) as unknown as Uws;
}

function candidate(name: string, load: () => Uws): UwsCandidate & { calls: number } {
  const c = {
    name,
    calls: 0,
    load: () => {
      c.calls++;
      return { uws: load(), version: '1.0.0', entryFile: `/builds/${name}.js` };
    },
  };
  return c;
}

const glibcError = (): never => {
  throw new Error("/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by uws_linux_x64_137.node)");
};

describe('chooseUws', () => {
  test('the newest build is taken when it loads, and the others are not tried', () => {
    const newest = candidate('newest', () => fakeBuild(true));
    const older = candidate('older', () => fakeBuild(true));
    const build = chooseUws([newest, older]);
    assert.equal(build.name, 'newest');
    assert.equal(build.entryFile, '/builds/newest.js');
    assert.equal(build.native, true);
    assert.deepEqual(build.skipped, []);
    assert.equal(older.calls, 0);
  });

  test('a newest build that does not load (glibc too old) falls back to the next, and says why', () => {
    const older = fakeBuild(true);
    const build = chooseUws([candidate('newest', glibcError), candidate('older', () => older)]);
    assert.equal(build.name, 'older');
    assert.equal(build.uws, older);
    assert.equal(build.skipped.length, 1);
    assert.equal(build.skipped[0]!.name, 'newest');
    assert.match(build.skipped[0]!.error, /GLIBC_2\.38' not found/);
  });

  test('a build that loads only its pure-JS fallback is passed over, never taken silently', () => {
    const build = chooseUws([candidate('fallback-only', () => fakeBuild(false)), candidate('native', () => fakeBuild(true))]);
    assert.equal(build.name, 'native');
    assert.deepEqual(build.skipped, [{ name: 'fallback-only', error: 'loaded its pure-JS fallback, not a native binary' }]);
  });

  test('when no candidate loads a native build, the error lists every candidate and its reason', () => {
    const missing = (): never => {
      throw new Error("Cannot find module 'uWebSockets.js/binaries/uws_linux_x64_137.node'");
    };
    assert.throws(() => chooseUws([candidate('newest', glibcError), candidate('older', missing), candidate('js', () => fakeBuild(false))]), (err) => {
      assert.ok(err instanceof UwsLoadError);
      assert.deepEqual(err.failures.map((f) => f.name), ['newest', 'older', 'js']);
      assert.match(err.message, /newest: .*GLIBC_2\.38/);
      assert.match(err.message, /older: Cannot find module/);
      assert.match(err.message, /js: loaded its pure-JS fallback/);
      return true;
    });
  });

  test('no candidates at all is an error too', () => {
    assert.throws(() => chooseUws([]), UwsLoadError);
  });
});

describe('the shipped candidates', () => {
  test('newest first, and one of them loads a native build on this machine', () => {
    assert.deepEqual(uwsCandidates.map((c) => c.name), ['@btc-vision/uwebsockets.js', '@trufflesuite/uws-js-unofficial']);
    const build = chooseUws(uwsCandidates);
    assert.ok(isNativeUws(build.uws));
    assert.match(build.version, /^\d+\.\d+\.\d+/);
    assert.equal(typeof build.uws.App, 'function');
    // Whatever was passed over was passed over for a reason that is reported
    for (const s of build.skipped) assert.ok(s.error.length > 0, s.name);
  });
});
