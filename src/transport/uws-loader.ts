// Loads uWebSockets.js: the newest build whose native binary loads on this platform, never its
// pure-JS fallback unless asked; and points later `import 'uWebSockets.js'` (fastify-uws) at that build.
import * as nodeModule from 'node:module';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type * as UwsModule from 'uWebSockets.js';

/** The uWebSockets.js API, as typed by the oldest build in use (newer builds only add to it). */
export type Uws = typeof UwsModule;

/** What a candidate hands over once its build has loaded. */
export interface LoadedUws {
  uws: Uws;
  version: string;
  /** The CommonJS file whose exports are this build (what `uWebSockets.js` must resolve to elsewhere). */
  entryFile: string;
}

/** One build of uWebSockets.js the loader may try. */
export interface UwsCandidate {
  /** Package name, for the log. */
  readonly name: string;
  /** Loads the build; throws if its native binary does not load here (Node ABI, platform, glibc). */
  load(): LoadedUws;
}

/** A loaded build and why the candidates before it were passed over. */
export interface UwsBuild extends LoadedUws {
  name: string;
  native: boolean;
  skipped: Array<{ name: string; error: string }>;
}

/** No candidate loaded a native binary; `failures` says why, candidate by candidate. */
export class UwsLoadError extends Error {
  readonly failures: ReadonlyArray<{ name: string; error: string }>;
  constructor(failures: ReadonlyArray<{ name: string; error: string }>) {
    super(`no native uWebSockets.js build loads on Node ${process.versions.node} (${process.platform}-${process.arch}, ABI ${process.versions.modules}):\n  ${
      failures.map((f) => `${f.name}: ${f.error}`).join('\n  ')}`);
    this.name = 'UwsLoadError';
    this.failures = failures;
  }
}

/** True for a native build; the pure-JS fallback of @trufflesuite/uws-js-unofficial has no SSLApp. */
export function isNativeUws(uws: unknown): boolean {
  return typeof (uws as Record<string, unknown> | undefined)?.['SSLApp'] === 'function';
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim();
}

/** The first candidate, in order, that loads a native build; throws UwsLoadError if none does. */
export function chooseUws(candidates: readonly UwsCandidate[]): UwsBuild {
  const skipped: UwsBuild['skipped'] = [];
  for (const candidate of candidates) {
    let loaded: LoadedUws;
    try {
      loaded = candidate.load();
    } catch (err) {
      skipped.push({ name: candidate.name, error: errorText(err) });
      continue;
    }
    if (!isNativeUws(loaded.uws)) {
      skipped.push({ name: candidate.name, error: 'loaded its pure-JS fallback, not a native binary' });
      continue;
    }
    return { ...loaded, name: candidate.name, native: true, skipped };
  }
  throw new UwsLoadError(skipped);
}

const require = nodeModule.createRequire(import.meta.url);

function packageVersion(entryFile: string, packageDir: string): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return `unknown (${entryFile})`;
  }
}

const abi = `${process.platform}_${process.arch}_${process.versions.modules}`;

/**
 * The builds Tern ships, newest first: @btc-vision/uwebsockets.js (Node 20, 22, 24, 25; Linux needs
 * glibc ≥ 2.38; an optional dependency) and @trufflesuite/uws-js-unofficial, installed as
 * `uWebSockets.js` (Node 16, 18, 20; older glibc too).
 */
export const uwsCandidates: readonly UwsCandidate[] = [
  {
    name: '@btc-vision/uwebsockets.js',
    load: () => {
      const entryFile = require.resolve('@btc-vision/uwebsockets.js');
      return { uws: require(entryFile) as Uws, entryFile, version: packageVersion(entryFile, path.dirname(entryFile)) };
    },
  },
  {
    name: '@trufflesuite/uws-js-unofficial',
    load: () => {
      // Its entry file falls back to pure JS by itself, with only a console warning: load the binary
      // first, so that a missing or incompatible one throws here (the entry then gets it from the cache)
      require(`uWebSockets.js/binaries/uws_${abi}.node`);
      const entryFile = require.resolve('uWebSockets.js');
      return { uws: require(entryFile) as Uws, entryFile, version: packageVersion(entryFile, path.dirname(path.dirname(entryFile))) };
    },
  },
];

/**
 * The slow pure-JS server of @trufflesuite/uws-js-unofficial, for --allow-uws-fallback only. It
 * cannot upgrade to WebSocket (its HttpResponse.upgrade is not implemented), nor carry fastify-uws.
 */
export function loadUwsFallback(): UwsBuild {
  const entryFile = require.resolve('uWebSockets.js/dist/index.js');
  return {
    uws: require(entryFile) as Uws, entryFile, name: '@trufflesuite/uws-js-unofficial (pure-JS fallback)',
    version: packageVersion(entryFile, path.dirname(path.dirname(entryFile))), native: false, skipped: [],
  };
}

interface ResolveResult { url: string; format?: string; shortCircuit?: boolean }
type NextResolve = (specifier: string, context: unknown) => ResolveResult;
/** module.registerHooks (Node ≥ 22.15): synchronous, in-thread hooks. Node 20 has only module.register. */
type RegisterHooks = (hooks: { resolve: (specifier: string, context: unknown, next: NextResolve) => ResolveResult }) => unknown;

// For module.register: runs in Node's module-hooks thread, where only `data` reaches it
const SHARE_HOOK = `let target;
export function initialize(data) { target = data; }
export async function resolve(specifier, context, next) {
  if (specifier === target.specifier) return { url: target.url, format: 'commonjs', shortCircuit: true };
  return next(specifier, context);
}`;

/**
 * Make every later `import 'uWebSockets.js'` (fastify-uws's) resolve to `build`, so that one build
 * serves the process: the app, its listen socket and fastify-uws must come from the same binary. A
 * no-op when the package name already resolves there.
 */
export function shareUwsBuild(build: Pick<UwsBuild, 'entryFile'>): void {
  let current: string | undefined;
  try {
    current = require.resolve('uWebSockets.js');
  } catch {
    current = undefined;
  }
  if (current === build.entryFile) return;
  const url = pathToFileURL(build.entryFile).href;
  const registerHooks = (nodeModule as unknown as { registerHooks?: RegisterHooks }).registerHooks;
  if (registerHooks) {
    // Preferred where it exists: module.register is deprecated from Node 25 on and needs a hooks thread
    registerHooks({
      resolve: (specifier, context, next) => (specifier === 'uWebSockets.js' ? { url, format: 'commonjs', shortCircuit: true } : next(specifier, context)),
    });
    return;
  }
  nodeModule.register(`data:text/javascript,${encodeURIComponent(SHARE_HOOK)}`, import.meta.url, {
    data: { specifier: 'uWebSockets.js', url },
  });
}
