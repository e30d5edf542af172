// --default-hub follows the hub naming rule (spec §1.1), as WebSocket paths do.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { isValidHubName } from '../../src/mqtt/hub-name.ts';

function problems(argv: string[]): string[] {
  try {
    loadConfig(argv, {});
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
}

describe('hub names', () => {
  test('the rule: a letter, then up to 127 of letters, digits and _`,.[]', () => {
    for (const ok of ['a', 'Default', 'h_1', 'a`b,c.d[e]f', `a${'b'.repeat(127)}`]) assert.equal(isValidHubName(ok), true, ok);
    for (const bad of ['', '1a', '_a', 'a b', 'a/b', 'a\u0000', 'a-b', `a${'b'.repeat(128)}`, 'é']) assert.equal(isValidHubName(bad), false, JSON.stringify(bad));
  });

  test('--default-hub is validated', () => {
    assert.deepEqual(problems(['--default-hub', 'Hub_1']), []);
    for (const bad of ['', '9hub', 'a%00', `h${'a'.repeat(128)}`]) {
      const p = problems(['--default-hub', bad]);
      assert.equal(p.length, 1, `${bad}: ${p.join('; ')}`);
      assert.match(p[0]!, /--default-hub/);
    }
  });
});
