// LogSink: lines wait in the output's buffer up to a bound, lines beyond it are dropped and
// counted, and one line reports them once the buffer has room again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { LogSink } from '../../../src/observability/logger.ts';

/** An output whose reader takes nothing until `take()`. */
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
  }
}

const line = (n: number): string => `${JSON.stringify({ level: 30, n, msg: 'x'.repeat(80) })}\n`;

test('lines beyond the buffer are dropped and counted; one line reports them once there is room', () => {
  const out = new StalledOutput();
  const sink = new LogSink({ out, maxBufferBytes: 1000 });
  for (let i = 0; i < 30; i++) sink.write(line(i));
  const kept = out.written.length;
  assert.ok(kept > 0 && kept < 30);
  assert.equal(sink.dropped, 30 - kept);

  sink.write(line(30)); // still full: dropped, and no report yet
  assert.equal(sink.dropped, 31 - kept);
  assert.equal(out.written.length, kept);

  out.take();
  sink.write(line(31));
  const report = JSON.parse(out.written[kept]!) as { level: number; dropped: number; msg: string };
  assert.equal(report.msg, 'log lines dropped: stdout was not taking them');
  assert.equal(report.level, 40);
  assert.equal(report.dropped, 31 - kept);
  assert.equal(JSON.parse(out.written[kept + 1]!).n, 31, 'the line after the report is the one logged');

  sink.write(line(32));
  assert.equal(out.written.length, kept + 3, 'reported once');
  assert.equal(sink.dropped, 31 - kept, 'the count since start stays');
});

test('a report that does not fit waits, and counts every line dropped until it goes out', () => {
  const out = new StalledOutput();
  const sink = new LogSink({ out, maxBufferBytes: 300 });
  for (let i = 0; i < 10; i++) sink.write(line(i));
  const kept = out.written.length;
  out.writableLength = 290; // room for neither a line nor the report
  sink.write(line(10));
  sink.write(line(11));
  assert.equal(out.written.length, kept);
  out.take();
  sink.write(line(12));
  assert.equal(JSON.parse(out.written[kept]!).dropped, 12 - kept);
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
  assert.equal(done, false);
  out.take();
  await flushed;

  sink.write(line(1)); // never taken: the deadline ends the wait
  await sink.flushed(20);
  assert.ok(out.writableLength > 0);
});
