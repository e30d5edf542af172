// A hub exists only once a CONNECT to it was accepted: a CONNECT refused at any step, including a
// session commit that fails, leaves no hub behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket from 'mqtt-packet';
import { allowAll, allowAnonymous } from '../../../src/auth/auth.ts';
import { Broker } from '../../../src/broker/broker.ts';
import { defaultBrokerOptions } from '../../../src/broker/options.ts';
import { systemClock, type ByteChannel, type ChannelSink, type Logger, type UnitOfWork } from '../../../src/broker/ports.ts';
import { MemoryStore } from '../../../src/store/memory-store.ts';

/** A store whose commits fail while `failing` is set (the store port, failing on purpose). */
class FailingStore extends MemoryStore {
  failing = true;
  override transaction(build: (tx: UnitOfWork) => void): Promise<void> {
    return this.failing ? Promise.reject(new Error('commit failed')) : super.transaction(build);
  }
}

class TestChannel implements ByteChannel {
  readonly transport = 'ws' as const;
  readonly remoteAddress = '127.0.0.1';
  sink: ChannelSink | undefined;
  readonly written: Buffer[] = [];
  closed = false;
  write(bytes: Buffer): boolean {
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

const logger: Logger = { info() {}, debug() {}, warn() {}, error() {} };

async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    assert.ok(Date.now() < deadline, 'condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('a CONNECT whose session commit fails leaves no hub behind; once the store answers, the hub is created', async () => {
  const store = new FailingStore();
  const broker = new Broker({ options: defaultBrokerOptions, store, clock: systemClock, logger, authenticator: allowAnonymous, authorizer: allowAll });
  await broker.start();
  const connect = mqttPacket.generate({
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: false, keepalive: 0, clientId: 'c1',
    properties: { sessionExpiryInterval: 60 },
  }, { protocolVersion: 5 });
  const refused = new TestChannel();
  broker.accept(refused, { hub: 'Fresh', upgradeToken: undefined })!.channelData(connect);
  await until(() => refused.closed);
  const connack = mqttPacket.parser({ protocolVersion: 5 });
  const got: mqttPacket.Packet[] = [];
  connack.on('packet', (p: mqttPacket.Packet) => got.push(p));
  for (const b of refused.written) connack.parse(b);
  assert.equal((got[0] as mqttPacket.IConnackPacket).reasonCode, 0x88);
  assert.equal(broker.findHub('fresh'), undefined, 'no hub left behind');
  store.failing = false;
  const accepted = new TestChannel();
  broker.accept(accepted, { hub: 'Fresh', upgradeToken: undefined })!.channelData(connect);
  await until(() => broker.findHub('fresh')?.sessions.get('c1')?.isConnected === true);
  await broker.shutdown();
});
