// The hot statement's parameter table (src/store/pg/hot-statement.ts) against tern_apply_hot as the
// latest migration declares it: same names, same types, same order. The check is first run on
// tables known to be wrong, so it cannot pass vacuously. No database here (see
// test/contract/pg-hot-statement.test.ts for what PostgreSQL does with a mismatched call).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Batch } from '../../../src/store/pg/batch.ts';
import { HOT_PARAMS, hotRowsOf, hotStatement, type HotParam } from '../../../src/store/pg/hot-statement.ts';
import type { DeliveryRecord } from '../../../src/store/store.ts';

const migrationsDir = fileURLToPath(new URL('../../../migrations/', import.meta.url));

interface Declared { name: string; type: string }

/** tern_apply_hot's parameters as the last migration that (re)creates it declares them. */
function declaredParams(): Declared[] {
  const files = readdirSync(migrationsDir).filter((f) => f.endsWith('.sql')).sort();
  let source: string | undefined;
  for (const f of files) {
    const sql = readFileSync(`${migrationsDir}${f}`, 'utf8');
    if (sql.includes('CREATE OR REPLACE FUNCTION tern_apply_hot(')) source = sql;
  }
  assert.ok(source, 'a migration creates tern_apply_hot');
  const create = 'CREATE OR REPLACE FUNCTION tern_apply_hot(';
  const start = source.lastIndexOf(create) + create.length;
  const list = source.slice(start, source.indexOf(') RETURNS', start));
  return list.split(',').map((p) => {
    const [name, ...type] = p.trim().split(/\s+/);
    return { name: name!, type: type.join(' ') };
  });
}

/** Type names PostgreSQL treats as the same type. */
const ALIASES: Record<string, string> = { int: 'integer', int4: 'integer', bool: 'boolean', int8: 'bigint', int2: 'smallint' };
const canonical = (type: string): string => type.replace(/^(\w+)/, (t) => ALIASES[t] ?? t);

/** Where a parameter table differs from the declaration (empty: it matches). */
function mismatches(table: readonly Pick<HotParam, 'name' | 'type'>[], declared: readonly Declared[]): string[] {
  const out: string[] = [];
  const n = Math.max(table.length, declared.length);
  for (let i = 0; i < n; i++) {
    const t = table[i];
    const d = declared[i];
    if (!t) out.push(`missing ${d!.name} at ${i + 1}`);
    else if (!d) out.push(`${t.name} at ${i + 1} is not declared`);
    else if (t.name !== d.name) out.push(`${t.name} at ${i + 1}, declared ${d.name}`);
    else if (canonical(t.type) !== canonical(d.type)) out.push(`${t.name} is ${t.type}, declared ${d.type}`);
  }
  return out;
}

describe('parameter table of the hot statement', () => {
  const declared = declaredParams();

  test('the declaration is read (53 parameters, starting with m_id)', () => {
    assert.equal(declared.length, 53);
    assert.deepEqual(declared[0], { name: 'm_id', type: 'bigint[]' });
    assert.deepEqual(declared[3], { name: 'm_payload', type: 'bytea' });
  });

  const swap = <T>(xs: readonly T[], i: number, j: number): T[] => {
    const out = [...xs];
    [out[i], out[j]] = [out[j]!, out[i]!];
    return out;
  };
  const wrong: Array<[string, Array<Pick<HotParam, 'name' | 'type'>>]> = [
    ['two columns out of order', swap(HOT_PARAMS, 1, 2)],
    ['a column renamed', HOT_PARAMS.map((p) => (p.name === 'd_client' ? { ...p, name: 'd_client_id' } : p))],
    ['a column of another type', HOT_PARAMS.map((p) => (p.name === 'u_packet' ? { ...p, type: 'bigint[]' } : p))],
    ['a column missing', HOT_PARAMS.filter((p) => p.name !== 'q_add_packet')],
    ['a column too many', [...HOT_PARAMS, { name: 'q_add_extra', type: 'text[]' }]],
  ];
  for (const [what, table] of wrong) {
    test(`a table with ${what} is caught`, () => {
      assert.notDeepEqual(mismatches(table, declared), []);
    });
  }

  test('aliases of a type are the same type', () => {
    assert.deepEqual(mismatches([{ name: 'm_plen', type: 'integer[]' }], [{ name: 'm_plen', type: 'int[]' }]), []);
  });

  test('HOT_PARAMS matches tern_apply_hot as declared', () => {
    assert.deepEqual(mismatches(HOT_PARAMS, declared), []);
  });
});

const delivery = (id: number, messageId: number, over: Partial<DeliveryRecord> = {}): DeliveryRecord => ({
  id, hub: 'h', clientId: `c${id}`, messageId, qos: 1, retain: false, subscriptionIds: [3, 4], shareKey: undefined, packetId: id, state: 'sent', ...over,
});

describe('the call built from the table', () => {
  test('every value is bound to its parameter by name, with its type', () => {
    const s = hotStatement(HOT_PARAMS);
    assert.match(s.text, /^SELECT tern_apply_hot\(m_id => \$1::bigint\[\], m_hub => \$2::text\[\], /);
    assert.match(s.text, /, q_add_packet => \$50::int\[\], o_space => \$51::int, o_lock => \$52::int, o_after => \$53::int\)$/);
  });

  test('a parameter listed twice is refused when the statement is built', () => {
    assert.throws(() => hotStatement([...HOT_PARAMS, HOT_PARAMS[0]!]), /listed twice/);
  });

  test('values follow the rows of the batch, each under its own name', () => {
    const b = new Batch();
    b.insertMessage({ id: 1, hub: 'h1', topicName: 'a/b', payload: Buffer.from('xy'), qos: 1, retain: false, createdAtMs: 5, publisherId: 'p' });
    b.insertMessage({ id: 2, hub: 'h1', topicName: 'unused', payload: Buffer.from('zz'), qos: 0, retain: false, createdAtMs: 6 });
    b.enqueueDeliveries([delivery(10, 1, { shareKey: 'g/a/b' }), delivery(11, 1)]);
    b.updateDelivery(20, 7, 'pubrec');
    b.deleteDelivery(30);
    b.addInboundQos2({ hub: 'h1', clientId: 'q', packetId: 9 });
    b.deleteInboundQos2('h1', 'r', 8);
    const rows = hotRowsOf(b);
    assert.ok(rows);
    const all = hotStatement(HOT_PARAMS).values(rows);
    const values = new Map(HOT_PARAMS.map((p, i) => [p.name, all[i]]));
    assert.equal(values.get('m_id'), '{1}', 'a message no inserted delivery references is not written');
    assert.equal(values.get('m_topic'), '{"a/b"}');
    assert.equal(values.get('m_publisher'), '{"p"}');
    assert.equal(values.get('m_expires'), '{NULL}');
    assert.deepEqual(values.get('m_payload'), Buffer.from('xy'));
    assert.equal(values.get('m_plen'), '{2}');
    assert.equal(values.get('d_delete'), '{30}');
    assert.equal(values.get('d_client'), '{"c10","c11"}');
    assert.equal(values.get('d_sids'), '{"{3,4}","{3,4}"}');
    assert.equal(values.get('d_share'), '{"g/a/b",NULL}');
    assert.equal(values.get('i_id'), '{}');
    assert.equal(values.get('u_id'), '{20}');
    assert.equal(values.get('u_state'), '{"pubrec"}');
    assert.equal(values.get('q_add_client'), '{"q"}');
    assert.equal(values.get('q_del_packet'), '{8}');
  });

  test('a message with one delivery inserted travels in that delivery\'s row, not in a messages row', () => {
    const b = new Batch();
    b.insertMessage({
      id: 1, hub: 'h1', topicName: 'a/"b', payload: Buffer.from('xy'), qos: 2, retain: true, createdAtMs: 5, publisherId: 'p', expiresAtMs: 99,
      properties: { contentType: 'text/plain' },
    });
    b.insertMessage({ id: 2, hub: 'h1', topicName: 'two', payload: Buffer.from('zzz'), qos: 1, retain: false, createdAtMs: 6 });
    b.insertMessage({ id: 3, hub: 'h1', topicName: 'acked', payload: Buffer.from('w'), qos: 1, retain: false, createdAtMs: 7 });
    b.enqueueDeliveries([delivery(10, 1, { qos: 1, retain: false })]);
    b.enqueueDeliveries([delivery(20, 2), delivery(21, 2)]);
    // two deliveries of message 3, one acknowledged before the commit: the other carries it
    b.enqueueDeliveries([delivery(30, 3), { ...delivery(31, 3), sentAhead: true }]);
    b.deleteDelivery(31);
    const rows = hotRowsOf(b);
    assert.ok(rows);
    assert.deepEqual(rows.messages.map((m) => m.id), [2]);
    assert.deepEqual(rows.inserted.map((d) => d.id), [20, 21]);
    assert.deepEqual(rows.inline.map((x) => [x.d.id, x.m.id]), [[10, 1], [30, 3]]);
    const all = hotStatement(HOT_PARAMS).values(rows);
    const values = new Map(HOT_PARAMS.map((p, i) => [p.name, all[i]]));
    assert.equal(values.get('m_id'), '{2}');
    assert.equal(values.get('i_id'), '{10,30}');
    assert.equal(values.get('i_message'), '{1,3}');
    assert.equal(values.get('i_qos'), '{1,1}', 'the delivery\'s QoS');
    assert.equal(values.get('i_mqos'), '{2,1}', 'the message\'s QoS as published');
    assert.equal(values.get('i_retain'), '{f,f}');
    assert.equal(values.get('i_mretain'), '{t,f}');
    assert.equal(values.get('i_topic'), '{"a/\\"b","acked"}');
    assert.deepEqual(values.get('i_payload'), Buffer.from('xyw'));
    assert.equal(values.get('i_plen'), '{2,1}');
    assert.equal(values.get('i_expires'), '{99,NULL}');
    assert.equal(values.get('i_publisher'), '{"p",NULL}');
    assert.equal(values.get('i_created'), '{5,7}');
    assert.equal(values.get('i_props'), `{${JSON.stringify(JSON.stringify({ contentType: 'text/plain' }))},NULL}`);
  });

  test('a batch without deliveries or inbound QoS 2 ids has no hot rows', () => {
    const b = new Batch();
    b.insertMessage({ id: 1, hub: 'h', topicName: 't', payload: Buffer.from('x'), qos: 1, retain: false, createdAtMs: 1 });
    b.appendAudit({ hub: 'h', event: 'connect', atMs: 1 });
    assert.equal(hotRowsOf(b), undefined);
  });
});
