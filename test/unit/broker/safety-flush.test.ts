// The per-turn flush writes every connection's batched output: one connection whose transport
// write throws is failed on its own, and the others still get their bytes in the same turn.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allowAll, allowAnonymous } from '../../../src/auth/auth.ts';
import { Broker } from '../../../src/broker/broker.ts';
import { defaultBrokerOptions } from '../../../src/broker/options.ts';
import { systemClock, type ByteChannel, type ChannelSink, type Logger } from '../../../src/broker/ports.ts';
import { MemoryStore } from '../../../src/store/memory-store.ts';

/** A ByteChannel that records what is written, or throws on write. */
class TestChannel implements ByteChannel {
  readonly transport = 'tcp' as const;
  readonly remoteAddress = '127.0.0.1';
  sink: ChannelSink | undefined;
  readonly written: Buffer[] = [];
  closed = false;
  constructor(readonly throwOnWrite: boolean) {}
  write(bytes: Buffer): boolean {
    if (this.throwOnWrite) throw new Error('transport write failed');
    this.written.push(bytes);
    return true;
  }
  bufferedBytes(): number {
    return 0;
  }
  close(): void {
    this.closed = true;
    this.sink?.channelClosed();
  }
}

test('a connection whose write throws during the flush does not stop the others from flushing', async () => {
  const errors: object[] = [];
  const logger: Logger = { info() {}, debug() {}, warn() {}, error(obj) { errors.push(obj); } };
  const broker = new Broker({
    options: defaultBrokerOptions, store: new MemoryStore(), clock: systemClock, logger,
    authenticator: allowAnonymous, authorizer: allowAll,
  });
  const bad = new TestChannel(true);
  const good = new TestChannel(false);
  const badConn = broker.accept(bad, { hub: 'default', upgradeToken: undefined })!;
  const goodConn = broker.accept(good, { hub: 'default', upgradeToken: undefined })!;
  // queued in this order, so the failing connection is flushed first
  badConn.write(Buffer.from([0xd0, 0x00]));
  goodConn.write(Buffer.from([0xd0, 0x00]));
  await new Promise<void>((resolve) => setImmediate(resolve));
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.deepEqual(good.written, [Buffer.from([0xd0, 0x00])]);
  assert.equal(goodConn.isOpen, true);
  assert.equal(badConn.isOpen, false, 'the failing connection is ended');
  assert.equal(bad.closed, true);
  assert.equal(broker.connections.has(badConn), false);
  assert.equal(errors.length, 1, 'the failure is logged once');
  await broker.shutdown();
});
