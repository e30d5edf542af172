// Compiles src/ to dist/ (tsconfig.build.json: relative .ts imports rewritten to .js), from a clean
// dist/, and stamps the result. With --if-stale it does nothing while the stamp is newer than every
// file under src/ and both tsconfigs: `npm start`, the benchmark and the compiled-build test use it.
// Usage: node scripts/build.mjs [--if-stale]
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const stamp = join(dist, '.build-stamp');

/** Newest modification time (ms) of a file or of any file below a directory. */
function newest(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs; // a deleted or renamed file changes its directory
  for (const name of readdirSync(path)) max = Math.max(max, newest(join(path, name)));
  return max;
}

function isStale() {
  if (!existsSync(stamp) || !existsSync(join(dist, 'main.js'))) return true;
  const sources = Math.max(newest(join(root, 'src')), newest(join(root, 'tsconfig.json')), newest(join(root, 'tsconfig.build.json')));
  return sources > statSync(stamp).mtimeMs;
}

if (process.argv.includes('--if-stale') && !isStale()) process.exit(0);

// typescript's own bin (native tsc), wherever npm placed the package
const tsc = join(dirname(createRequire(join(root, 'package.json')).resolve('typescript/package.json')), 'bin', 'tsc');
const startedAt = new Date();
rmSync(dist, { recursive: true, force: true }); // no output left over from a deleted source file
const result = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.error(`build failed: tsc exited with ${result.status ?? result.signal}`);
  process.exit(1);
}
writeFileSync(stamp, `${startedAt.toISOString()}\n`);
utimesSync(stamp, startedAt, startedAt); // a source saved while tsc ran makes the build stale

