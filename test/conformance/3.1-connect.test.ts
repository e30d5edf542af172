// CONNECT (MQTT 5 §3.1, 3.1.1 §3.1) as raw byte tables over TCP and WebSocket: the first-packet
// and second-CONNECT rules, protocol name and level, connect flags, client identifiers, connect timeout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IConnackPacket, IDisconnectPacket, Packet } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { connectBytes, mqttString, type ConnectSpec } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

let broker: BrokerProcess;
before(async () => { broker = await startBroker(['--connect-timeout', '1']); });
after(async () => { await broker.stop(); });

const transports: Transport[] = ['tcp', 'ws'];
const versions: Version[] = [4, 5];
const vname = (v: Version): string => (v === 5 ? 'v5' : 'v3.1.1');

/** CONNACK return / reason code of either version. */
function connackCode(p: Packet): number {
  assert.equal(p.cmd, 'connack', `expected CONNACK, got ${p.cmd}`);
  const c = p as IConnackPacket;
  return c.reasonCode ?? c.returnCode ?? 0;
}

/** The broker closes without accepting: no packet at all, or only a CONNACK with a failure code. */
async function assertRefused(c: RawPeer): Promise<void> {
  const packets = await c.closed();
  assert.ok(packets.length <= 1, `expected at most a refusing CONNACK, got ${packets.map((p) => p.cmd).join(', ')}`);
  if (packets.length === 1) assert.notEqual(connackCode(packets[0]!), 0, 'CONNACK must not accept the connection');
}

/** Open a raw connection, send a CONNECT and expect a successful CONNACK. */
async function connected(transport: Transport, version: Version, spec: ConnectSpec = {}): Promise<{ c: RawPeer; connack: IConnackPacket }> {
  const c = await RawPeer.open(broker, transport, version);
  c.send(connectBytes({ level: version, clientId: uniqueId('raw'), ...spec }));
  const connack = (await c.next()) as IConnackPacket;
  assert.equal(connackCode(connack), 0);
  return { c, connack };
}

for (const transport of transports) {
  describe(`CONNECT byte tables (${transport})`, () => {
    const notConnect: Array<{ name: string; bytes: string }> = [
      { name: 'PINGREQ', bytes: 'c0 00' },
      { name: 'PUBLISH QoS 0', bytes: '30 07 0003 612f62 6869' },
      { name: 'SUBSCRIBE', bytes: '82 08 0001 0003 612f62 00' },
      { name: 'DISCONNECT', bytes: 'e0 00' },
      { name: 'CONNACK (a server packet)', bytes: '20 02 00 00' },
    ];
    for (const { name, bytes } of notConnect) {
      test(`[MQTT-3.1.0-1] ${name} as the first packet closes the connection without a reply`, async () => {
        const c = await RawPeer.open(broker, transport);
        c.send(bytes);
        assert.deepEqual(await c.closed(), []);
        assert.equal(c.log.bytes.length, 0);
      });
    }

    test('[MQTT-3.1.0-2] a second CONNECT from a 3.1.1 client closes the connection', async () => {
      const { c } = await connected(transport, 4);
      c.send(connectBytes({ level: 4, clientId: uniqueId('raw') }));
      assert.deepEqual(await c.closed(), []);
    });

    test('[MQTT-3.1.0-2] a second CONNECT from a 5.0 client gets DISCONNECT 0x82 (Protocol Error), then the close', async () => {
      const { c } = await connected(transport, 5);
      c.send(connectBytes({ level: 5, clientId: uniqueId('raw') }));
      const [d, ...rest] = await c.closed();
      assert.equal(d?.cmd, 'disconnect');
      assert.equal((d as IDisconnectPacket).reasonCode, 0x82);
      assert.equal((d as IDisconnectPacket).properties?.sessionExpiryInterval, undefined); // [MQTT-3.14.2-2]
      assert.deepEqual(rest, []); // [MQTT-3.14.4-1] nothing after DISCONNECT
    });

    const levels: Array<{ name: string; spec: ConnectSpec }> = [
      { name: 'level 3 named MQTT', spec: { level: 3 } },
      { name: 'level 3 named MQIsdp (MQTT 3.1)', spec: { protocolName: 'MQIsdp', level: 3 } },
      { name: 'level 6', spec: { level: 6 } },
      { name: 'level 0', spec: { level: 0 } },
      { name: 'level 0x84 (bridge bit set)', spec: { level: 0x84 } },
    ];
    for (const { name, spec } of levels) {
      test(`[MQTT-3.1.2-2] unsupported protocol ${name} gets CONNACK 0x01, then the close`, async () => {
        const c = await RawPeer.open(broker, transport);
        c.send(connectBytes(spec));
        await c.closed();
        assert.equal(c.log.bytes.toString('hex'), '20020001');
      });
    }

    const names: Array<{ name: string; spec: ConnectSpec }> = [
      { name: '"MQTX" at level 4', spec: { protocolName: 'MQTX', level: 4 } },
      { name: '"mqtt" at level 5', spec: { protocolName: 'mqtt', level: 5 } },
      { name: '"MQIsdp" at level 4', spec: { protocolName: 'MQIsdp', level: 4 } },
      { name: 'empty at level 4', spec: { protocolName: '', level: 4 } },
    ];
    for (const { name, spec } of names) {
      test(`[MQTT-3.1.2-1] protocol name ${name} is refused and the connection closed`, async () => {
        const c = await RawPeer.open(broker, transport, (spec.level ?? 4) as Version);
        c.send(connectBytes(spec));
        await assertRefused(c);
      });
    }

    for (const version of versions) {
      const will = (v: Version): string => (v === 5 ? '00' : '') + mqttString('will/t') + mqttString('bye');
      const flagCases: Array<{ id: string; name: string; spec: ConnectSpec }> = [
        { id: 'MQTT-3.1.2-3', name: 'reserved flag bit 0 set', spec: { flags: 0x03 } },
        { id: 'MQTT-3.1.2-12', name: 'will QoS 3', spec: { flags: 0x1e, tail: will(version) } },
        { id: 'MQTT-3.1.2-11', name: 'will QoS 1 without the will flag', spec: { flags: 0x0a } },
        { id: 'MQTT-3.1.2-13', name: 'will retain without the will flag', spec: { flags: 0x22 } },
        { id: 'MQTT-3.1.2-9', name: 'will flag without will topic and payload', spec: { flags: 0x06 } },
        { id: 'MQTT-3.1.2-17', name: 'user name flag without a user name', spec: { flags: 0x82 } },
      ];
      if (version === 4) {
        // [v3.1.1 MQTT-3.1.2-22] 3.1.1 forbids a password without a user name (5.0 allows it)
        flagCases.push({ id: 'v3.1.1 MQTT-3.1.2-22', name: 'password flag without the user name flag', spec: { flags: 0x42, tail: mqttString('secret') } });
      }
      for (const { id, name, spec } of flagCases) {
        test(`[${id}] ${vname(version)} CONNECT with ${name} is refused and the connection closed`, async () => {
          const c = await RawPeer.open(broker, transport, version);
          c.send(connectBytes({ level: version, clientId: uniqueId('raw'), ...spec }));
          await assertRefused(c);
        });
      }

      test(`[MQTT-3.1.4-5] ${vname(version)} CONNECT with will, user name and password is accepted`, async () => {
        const tail = will(version) + mqttString('user') + mqttString('pass');
        const { c, connack } = await connected(transport, version, { flags: 0xd6, tail }); // user, password, will QoS 2, will, clean
        assert.equal(connack.sessionPresent, false);
        c.destroy();
      });
    }

    test('[MQTT-3.1.3-8] 3.1.1 empty client id with clean session 0 gets CONNACK 0x02 (Identifier rejected), then the close', async () => {
      const c = await RawPeer.open(broker, transport, 4);
      c.send(connectBytes({ level: 4, flags: 0x00, clientId: '' }));
      await c.closed();
      assert.equal(c.log.bytes.toString('hex'), '20020002');
    });

    test('[MQTT-3.1.3-6] 3.1.1 empty client id with clean session 1 is accepted', async () => {
      const c = await RawPeer.open(broker, transport, 4);
      c.send(connectBytes({ level: 4, flags: 0x02, clientId: '' }));
      assert.equal(connackCode(await c.next()), 0);
      c.send('c0 00');
      assert.equal((await c.next()).cmd, 'pingresp');
      c.destroy();
    });

    for (const cleanStart of [true, false]) {
      test(`[MQTT-3.2.2-16] 5.0 empty client id (clean start ${cleanStart ? 1 : 0}) gets a fresh Assigned Client Identifier`, async () => {
        const flags = cleanStart ? 0x02 : 0x00;
        const a = await connected(transport, 5, { flags, clientId: '' });
        const b = await connected(transport, 5, { flags, clientId: '' });
        const idA = a.connack.properties?.assignedClientIdentifier;
        const idB = b.connack.properties?.assignedClientIdentifier;
        assert.ok(idA && idA.length > 0, 'CONNACK carries an Assigned Client Identifier');
        assert.ok(idB && idB.length > 0);
        assert.notEqual(idA, idB, 'assigned ids are unique');
        assert.equal(a.connack.sessionPresent, false);
        // Both sessions live side by side: neither took the other over
        a.c.send('c0 00');
        b.c.send('c0 00');
        assert.equal((await a.c.next()).cmd, 'pingresp');
        assert.equal((await b.c.next()).cmd, 'pingresp');
        a.c.destroy();
        b.c.destroy();
      });
    }

    test('[MQTT-3.1.3-7] 5.0 client with a client id gets no Assigned Client Identifier', async () => {
      const { c, connack } = await connected(transport, 5);
      assert.equal(connack.properties?.assignedClientIdentifier, undefined);
      c.destroy();
    });

    test('[MQTT-3.1.4-1] a socket that never sends CONNECT is closed after the connect timeout', async () => {
      const started = Date.now(); // the broker's timer cannot start before we connect
      const c = await RawPeer.open(broker, transport);
      await c.closed(4000);
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 1000, `closed after ${elapsed} ms, before the 1 s connect timeout`);
      assert.equal(c.log.bytes.length, 0);
    });

    test('[MQTT-3.1.4-1] a socket that sends half a CONNECT is closed after the connect timeout', async () => {
      const started = Date.now();
      const c = await RawPeer.open(broker, transport);
      const bytes = connectBytes({ clientId: uniqueId('raw') });
      c.send(bytes.subarray(0, bytes.length - 3));
      await c.closed(4000);
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 1000, `closed after ${elapsed} ms, before the 1 s connect timeout`);
      assert.equal(c.log.bytes.length, 0);
    });

    for (const version of versions) {
      test(`[MQTT-3.1.4-5] ${vname(version)} CONNECT split byte by byte is accepted`, async () => {
        const c = await RawPeer.open(broker, transport, version);
        const bytes = connectBytes({ level: version, clientId: uniqueId('raw') });
        for (const b of bytes) c.send(Buffer.from([b]));
        assert.equal(connackCode(await c.next()), 0);
        c.destroy();
      });
    }
  });
}
