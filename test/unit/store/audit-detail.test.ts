// The truncated audit detail stays valid for jsonb: never above the cap, never a lone surrogate
// (a cut through an emoji used to leave one, and PostgreSQL refused the whole audit row).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { auditDetailJson } from '../../../src/store/pg/json-columns.ts';

const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

describe('auditDetailJson', () => {
  test('a detail that fits is stored as it is', () => {
    assert.equal(auditDetailJson({ a: 'b' }, 4096), '{"a":"b"}');
  });

  test('a large detail is cut to the cap at every position without splitting a surrogate pair', () => {
    const detail = { topicName: '\u{1F600}'.repeat(500) };
    for (let maxBytes = 64; maxBytes < 400; maxBytes++) {
      const out = auditDetailJson(detail, maxBytes)!;
      assert.ok(Buffer.byteLength(out) <= maxBytes, `${Buffer.byteLength(out)} bytes over ${maxBytes}`);
      const parsed = JSON.parse(out) as { truncated: boolean; bytes: number; head: string };
      assert.equal(parsed.truncated, true);
      assert.equal(parsed.bytes, Buffer.byteLength(JSON.stringify(detail)));
      assert.ok(!loneSurrogate.test(parsed.head), `lone surrogate in the head at maxBytes ${maxBytes}`);
    }
  });
});
