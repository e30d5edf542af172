// LogSink: lines wait in the output's buffer up to a bound, lines beyond it are dropped and
// counted, and one line reports them once the buffer drains.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { createLogger, LogSink } from '../../../src/observability/logger.ts';

/** An output whose reader takes nothing until `take()`, which empties it and says so ('drain'). */
class StalledOutput extends EventEmitter {
  written: string[] = [];
  writableLength = 0;
  write(chunk: string): boolean {
    this.written.push(chunk);
    this.writableLength += chunk.length;
    return false;
  }
  take(): void {
    this.writableLength = 0;
    this.emit('drain');
  }
}

const line = (n: number, level = 30): string => `${JSON.stringify({ level, n, msg: 'x'.repeat(80) })}\n`;
const parsed = (s: string | undefined): Record<string, unknown> => JSON.parse(s!) as Record<string, unknown>;

test('lines beyond the buffer are dropped and counted; one line reports them as soon as the buffer drains', () => {
  const out = new StalledOutput();
  const sink = new LogSink({ out, maxBufferBytes: 1000 });
  for (let i = 0; i < 30; i++) sink.write(line(i));
  const kept = out.written.length;
  assert.ok(kept > 0 && kept < 30);
  assert.equal(sink.dropped, 30 - kept);

  out.take(); // nothing else is logged: the drain alone brings the report
  assert.equal(out.written.length, kept + 1);
  const report = parsed(out.written[kept]);
  assert.equal(report['msg'], 'log lines dropped: stdout was not taking them');
  assert.equal(report['level'], 40);
  assert.equal(report['dropped'], 30 - kept);

  sink.write(line(30));
  assert.equal(parsed(out.written[kept + 1])['n'], 30);
  assert.equal(out.written.length, kept + 2, 'reported once');
  assert.equal(sink.dropped, 30 - kept, 'the count since start stays');
});

test('a report that does not fit waits for the next drain, and counts every line dropped until then', () => {
  const out = new StalledOutput();
  const sink = new LogSink({ out, maxBufferBytes: 300 });
  for (let i = 0; i < 10; i++) sink.write(line(i));
  const kept = out.written.length;
  out.writableLength = 290; // drained a little, but room for neither a line nor the report
  out.emit('drain');
  sink.write(line(10));
  assert.equal(out.written.length, kept);
  out.take();
  assert.equal(parsed(out.written[kept])['dropped'], 11 - kept);
});

test('error and fatal lines pass the bound, and a line alone in the buffer goes however long', () => {
  const out = new StalledOutput();
  const sink = new LogSink({ out, maxBufferBytes: 200 });
  sink.write(line(0));
  sink.write(line(1));
  sink.write(line(2, 50));
  sink.write(line(3, 60));
  assert.deepEqual(out.written.map((s) => parsed(s)['n']), [0, 2, 3]);
  assert.equal(sink.dropped, 1);

  const empty = new StalledOutput();
  const fresh = new LogSink({ out: empty, maxBufferBytes: 200 });
  fresh.write(`${JSON.stringify({ level: 30, msg: 'y'.repeat(1000) })}\n`);
  assert.equal(parsed(empty.written[0])['msg'], 'y'.repeat(1000));
  assert.equal(fresh.dropped, 0);
});

test('with reportDrops off (a level above warn) drops are counted but not reported', () => {
  const out = new StalledOutput();
  const sink = new LogSink({ out, maxBufferBytes: 200 });
  sink.reportDrops = false;
  for (let i = 0; i < 5; i++) sink.write(line(i));
  const kept = out.written.length;
  out.take();
  sink.write(line(5));
  assert.equal(out.written.length, kept + 1);
  assert.equal(parsed(out.written[kept])['n'], 5);
  assert.equal(sink.dropped, 5 - kept);
});

test('an output that failed for good (EPIPE) drops every later line', () => {
  const out = new StalledOutput();
  const sink = new LogSink({ out, maxBufferBytes: 1 << 20 });
  sink.write(line(0));
  out.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
  out.take();
  sink.write(line(1));
  sink.write(line(2));
  assert.equal(out.written.length, 1);
  assert.equal(sink.dropped, 2);
});

test('flushed() resolves once the output has written everything, or at its deadline', async () => {
  const out = new StalledOutput();
  const sink = new LogSink({ out });
  sink.write(line(0));
  let done = false;
  const flushed = sink.flushed(60_000).then(() => { done = true; });
  await new Promise((r) => setImmediate(r));
  assert.equal(done, false, 'still waiting while the output holds a line');
  out.take();
  await flushed;
  // Never taken: only the deadline ends the wait (a wait for the output would never end)
  sink.write(line(1));
  await sink.flushed(20);
});

test('after directFromNow (a crash exit) every line is written at once, past the bound', () => {
  const out = new StalledOutput();
  const sink = new LogSink({ out, maxBufferBytes: 200 });
  for (let i = 0; i < 5; i++) sink.write(line(i));
  const kept = out.written.length;
  assert.ok(kept < 5);
  sink.directFromNow();
  sink.write(line(60, 60));
  sink.write(line(61));
  assert.deepEqual(out.written.slice(kept).map((s) => parsed(s)['n']), [60, 61]);
});

test('createLogger reports drops only at levels that show warnings', () => {
  const quiet = new LogSink({ out: new StalledOutput() });
  createLogger('error', quiet);
  assert.equal(quiet.reportDrops, false);
  const normal = new LogSink({ out: new StalledOutput() });
  createLogger('info', normal);
  assert.equal(normal.reportDrops, true);
});
