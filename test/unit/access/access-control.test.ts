// AccessControl in process, on a MemoryStore: grants racing the end of their session, wildcard
// filters against pattern roles, rights of each kind of principal, hub settings updated together.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AccessControl, SessionGoneError, coversWildcardFilter } from '../../../src/access/access-control.ts';
import type { Principal } from '../../../src/auth/auth.ts';
import { TokenVerifier } from '../../../src/auth/jwt.ts';
import { RoleSet } from '../../../src/auth/roles.ts';
import { EventType } from '../../../src/broker/events.ts';
import { MemoryStore } from '../../../src/store/memory-store.ts';
import { systemClock } from '../../../src/broker/ports.ts';

const logger = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined, fatal: () => undefined, trace: () => undefined };

async function make(sessions: Set<string>): Promise<{ access: AccessControl; store: MemoryStore }> {
  const store = new MemoryStore();
  const access = new AccessControl({
    store, clock: systemClock, logger: logger as never, anonymousByDefault: true,
    verifier: new TokenVerifier({ keys: () => ({ primary: 'primary-key-0123456789', secondary: 'secondary-key-0123456789' }) }),
  });
  await access.open((hub, clientId) => sessions.has(`${hub}/${clientId}`));
  return { access, store };
}

const tokenClient = (roles: string[]): Principal => ({ userId: 'u', roles, method: 'jwt', rights: 'roles', roleSet: new RoleSet(roles) });

describe('runtime grants and the sessions they belong to', () => {
  test('a grant whose session ends before its commit is refused and leaves no row, so a later session with that id gets nothing', async () => {
    const sessions = new Set(['h/c1']);
    const { access, store } = await make(sessions);
    const granting = access.grant('h', 'c1', 'sendToGroup', 'a', 'key:primary');
    // The session ends (and a new one with the same id starts) while the grant commits
    access.emit({ type: EventType.SessionEnded, hub: 'h', clientId: 'c1' });
    await assert.rejects(granting, SessionGoneError);
    assert.deepEqual((await store.loadAccess()).permissions, []);
    assert.equal(access.canPublish('h', 'c1', tokenClient([]), 'a'), false);
    assert.equal(access.check('h', 'c1', 'sendToGroup', 'a', undefined), false);
  });

  test('a grant to a client id without a session is refused', async () => {
    const { access } = await make(new Set());
    await assert.rejects(access.grant('h', 'nobody', 'sendToGroup', null, 'key:primary'), SessionGoneError);
  });

  test('a committed grant applies at once and ends with its session', async () => {
    const { access, store } = await make(new Set(['h/c2']));
    await access.grant('H', 'c2', 'joinLeaveGroup', 'room', 'key:primary');
    assert.equal(access.canSubscribe('h', 'c2', tokenClient([]), 'room'), true);
    access.emit({ type: EventType.SessionEnded, hub: 'h', clientId: 'c2' });
    assert.equal(access.canSubscribe('h', 'c2', tokenClient([]), 'room'), false);
    await store.whenBacklogBelow();
    assert.deepEqual((await store.loadAccess()).permissions, []);
  });
});

describe('rights of each kind of principal', () => {
  test('token clients: topics under $webpubsub/server/events/ need a role like any other', async () => {
    const { access } = await make(new Set());
    assert.equal(access.canPublish('h', 'c', tokenClient([]), '$webpubsub/server/events/e1'), false);
    assert.equal(access.canPublish('h', 'c', tokenClient(['webpubsub.sendToGroup']), '$webpubsub/server/events/e1'), true);
  });

  test('hasPermission is true for a client nothing limits (anonymous without an ACL file)', async () => {
    const { access } = await make(new Set());
    const anonymous: Principal = { userId: undefined, roles: [], method: 'anonymous', rights: 'all' };
    assert.equal(access.check('h', 'c', 'sendToGroup', 'x', anonymous), true);
    assert.equal(access.check('h', 'c', 'sendToGroup', 'x', tokenClient([])), false);
  });

  test('a wildcard filter needs a role covering every topic it matches, not a pattern that matches its text', async () => {
    const { access } = await make(new Set());
    const c = (roles: string[], filter: string): boolean => access.canSubscribe('h', 'c', tokenClient(roles), filter);
    assert.equal(c(['webpubsub.joinLeaveGroups.*'], '#'), false, '* matches the text "#" but not topics with dots');
    assert.equal(c(['webpubsub.joinLeaveGroups.sensors/*'], 'sensors/#'), false);
    assert.equal(c(['webpubsub.joinLeaveGroups.sensors/**'], 'sensors/#'), true);
    assert.equal(c(['webpubsub.joinLeaveGroups.sensors/**'], 'sensors/+/t'), true);
    assert.equal(c(['webpubsub.joinLeaveGroups.sensors/**'], 'other/#'), false);
    assert.equal(c(['webpubsub.joinLeaveGroup.sensors/+'], 'sensors/+'), true);
    assert.equal(c(['webpubsub.joinLeaveGroup'], '#'), true);
    assert.equal(c(['webpubsub.joinLeaveGroups.*'], 'chat-1'), true, 'patterns still cover plain filters');
    assert.equal(coversWildcardFilter(['webpubsub.joinLeaveGroups.a?/**'], 'ab/#'), false, 'only a literal prefix before ** counts');
  });
});

describe('hub settings', () => {
  test('concurrent updates of one hub both apply', async () => {
    const { access, store } = await make(new Set());
    await Promise.all([
      access.updateHubSettings('h', { anonymousConnectPolicy: 'deny' }, 'a'),
      access.updateHubSettings('H', { maxSessions: 5 }, 'b'),
    ]);
    const s = access.hubSettings('h');
    assert.deepEqual([s.anonymousConnectPolicy, s.maxSessions], ['deny', 5]);
    const stored = (await store.loadAccess()).hubSettings[0]!;
    assert.deepEqual([stored.anonymousConnectPolicy, stored.maxSessions], ['deny', 5]);
  });
});
