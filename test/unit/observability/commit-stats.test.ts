// Group-commit figures for the admin API: totals since start, percentiles and batch sizes over the
// latest RECENT commits only (older ones leave the ring).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommitStats, RECENT } from '../../../src/observability/commit-stats.ts';

test('no commit yet: zeros, not NaN', () => {
  assert.deepEqual(new CommitStats().figures(), {
    commits: 0, rows: 0, recent: { commits: 0, latencyMs: { p50: 0, p99: 0, max: 0 }, batchRows: { mean: 0, max: 0 } },
  });
});

test('nearest-rank percentiles over the recorded commits', () => {
  const s = new CommitStats();
  for (let ms = 1; ms <= 100; ms++) s.record(ms * 2, ms);
  const f = s.figures();
  assert.deepEqual([f.commits, f.rows], [100, 10_100]);
  assert.deepEqual(f.recent.latencyMs, { p50: 50, p99: 99, max: 100 });
  assert.deepEqual(f.recent.batchRows, { mean: 101, max: 200 });
});

test('the recent figures cover the latest RECENT commits; the totals all of them', () => {
  const s = new CommitStats();
  for (let i = 0; i < RECENT; i++) s.record(1000, 500); // old, slow and large
  for (let i = 0; i < RECENT; i++) s.record(10, 2);
  const f = s.figures();
  assert.deepEqual([f.commits, f.rows], [2 * RECENT, RECENT * 1010]);
  assert.deepEqual(f.recent, { commits: RECENT, latencyMs: { p50: 2, p99: 2, max: 2 }, batchRows: { mean: 10, max: 10 } });
});
