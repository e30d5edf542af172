// The Web PubSub data plane (spec §6.5) on MQTT sessions: sends, groups (subscriptions), existence
// checks, close operations and :generateToken, with the exact success codes the SDK expects
// (it throws on any other 2xx). A connection is a session (its client id), a group a topic filter;
// server messages reach MQTT clients on `$webpubsub/server/messages` at QoS 1.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Broker, ServerMessage, SessionView } from '../../broker/broker.ts';
import { signClientToken } from '../../auth/jwt.ts';
import { hasWildcard } from '../../mqtt/topic.ts';
import { compileFilter, FilterError, type CompiledFilter } from '../odata-filter.ts';
import { sendError } from '../errors.ts';

export interface DataPlaneDeps {
  broker: Broker;
  isValidHub(name: string): boolean;
  /** The primary access key (signs :generateToken) and the public endpoint tokens name in `aud`. */
  signingKey(): string;
  publicEndpoint(): string;
  /** Largest send body accepted (bytes). */
  maxMessageBytes: number;
}

type Params = Record<string, string>;
interface SendQuery { excluded?: string | string[]; filter?: string; messageTtlSeconds?: number }

const MAX_NAME = 1024;
const MAX_TTL_SEC = 300;

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** The receivers' filter of a request (`excluded` and OData `filter`), or undefined after replying 400. */
function receivers(q: SendQuery, reply: FastifyReply): ((s: SessionView) => boolean) | undefined | false {
  const excluded = new Set(list(q.excluded));
  let filter: CompiledFilter | undefined;
  if (q.filter !== undefined && q.filter.trim() !== '') {
    try {
      filter = compileFilter(q.filter);
    } catch (err) {
      if (!(err instanceof FilterError)) throw err;
      sendError(reply, 400, 'InvalidFilter', `${err.message} (Parameter 'filter')`);
      return false;
    }
  }
  if (excluded.size === 0 && !filter) return undefined;
  return (s) => !excluded.has(s.clientId) && (!filter || filter.matches({ userId: s.userId ?? null, connectionId: s.clientId, groups: s.groups }));
}

/** The body as a server message (content type → MQTT Content Type, spec §1.3 and §6.4); undefined after replying 400/415. */
function message(req: FastifyRequest, q: SendQuery, reply: FastifyReply): ServerMessage | undefined {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  const payload = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  let m: ServerMessage;
  if (type === 'text/plain') m = { payload, contentType: 'text/plain', utf8: true };
  else if (type === 'application/json') m = { payload, contentType: 'application/json', utf8: true };
  else if (type === 'application/octet-stream') m = { payload, contentType: 'application/octet-stream' };
  else {
    sendError(reply, 415, 'UnsupportedMediaType', 'content type must be text/plain, application/json or application/octet-stream');
    return undefined;
  }
  if (m.utf8 && !isUtf8(payload)) {
    sendError(reply, 400, 'InvalidRequest', `a ${type} body must be UTF-8`);
    return undefined;
  }
  if (q.messageTtlSeconds !== undefined) m.expirySec = q.messageTtlSeconds;
  return m;
}

function isUtf8(b: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
}

const name = { type: 'string', minLength: 1, maxLength: MAX_NAME } as const;
const sendQuery = {
  type: 'object',
  properties: {
    'api-version': { type: 'string' },
    excluded: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
    filter: { type: 'string', maxLength: 4096 },
    messageTtlSeconds: { type: 'integer', minimum: 0, maximum: MAX_TTL_SEC },
  },
} as const;
const closeQuery = {
  type: 'object',
  properties: {
    'api-version': { type: 'string' },
    excluded: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
    reason: { type: 'string', maxLength: 1024 },
  },
} as const;

export function registerDataPlaneRoutes(app: FastifyInstance, deps: DataPlaneDeps): void {
  const { broker } = deps;
  // Every route names a hub: check it once
  app.addHook('preHandler', async (req, reply) => {
    const hub = (req.params as Params | undefined)?.['hub'];
    if (hub !== undefined && !deps.isValidHub(hub)) return sendError(reply, 400, 'InvalidHubName', 'hub name: a letter, then up to 127 letters, digits or _`,.[]');
    return undefined;
  });
  const hubs = '/hubs/:hub';
  const groupNameOk = (g: string, reply: FastifyReply): boolean => {
    if (g.trim() === '') {
      sendError(reply, 400, 'InvalidGroupName', 'a group name must not be only white space');
      return false;
    }
    // A group is an exact topic: + and # (wildcards) and $share/ (shared subscriptions) would make
    // membership, sends and listings disagree about who is in it
    if (hasWildcard(g) || g.startsWith('$share/')) {
      sendError(reply, 400, 'InvalidGroupName', 'a group name cannot contain + or # or start with $share/');
      return false;
    }
    return true;
  };

  // ---- sends: 202 -------------------------------------------------------------------------------
  // Bodies of any content type arrive as bytes, within the message size limit
  void app.register(async (sends) => {
    sends.removeAllContentTypeParsers();
    sends.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: deps.maxMessageBytes }, (_req, body, done) => done(null, body));
    const send = async (req: FastifyRequest, reply: FastifyReply, to: (m: ServerMessage, accept: ((s: SessionView) => boolean) | undefined) => Promise<unknown>): Promise<FastifyReply> => {
      const q = req.query as SendQuery;
      const accept = receivers(q, reply);
      if (accept === false) return reply;
      const m = message(req, q, reply);
      if (!m) return reply;
      await to(m, accept);
      return reply.code(202).send();
    };
    sends.post<{ Params: Params }>(`${hubs}/::send`, { schema: { querystring: sendQuery } }, (req, reply) =>
      send(req, reply, (m, accept) => broker.sendToSessions(req.params['hub']!, 'all', m, accept)));
    sends.post<{ Params: Params }>(`${hubs}/users/:userId/::send`, { schema: { querystring: sendQuery, params: { type: 'object', properties: { userId: name } } } }, (req, reply) =>
      send(req, reply, (m, accept) => broker.sendToSessions(req.params['hub']!, { userId: req.params['userId']! }, m, accept)));
    sends.post<{ Params: Params }>(`${hubs}/connections/:connectionId/::send`, { schema: { querystring: sendQuery, params: { type: 'object', properties: { connectionId: name } } } }, (req, reply) =>
      send(req, reply, (m) => broker.sendToSessions(req.params['hub']!, { clientId: req.params['connectionId']! }, m)));
    sends.post<{ Params: Params }>(`${hubs}/groups/:group/::send`, { schema: { querystring: sendQuery, params: { type: 'object', properties: { group: name } } } }, async (req, reply) => {
      if (!groupNameOk(req.params['group']!, reply)) return reply;
      try {
        return await send(req, reply, (m, accept) => broker.sendToGroup(req.params['hub']!, req.params['group']!, m, accept));
      } catch (err) {
        // A group name that cannot be a topic (wildcards, too long) has no members to send to
        if (err instanceof RangeError) return sendError(reply, 400, 'InvalidGroupName', err.message);
        throw err;
      }
    });
  });

  // ---- groups -------------------------------------------------------------------------------------
  const groupParams = { type: 'object', properties: { group: name, connectionId: name, userId: name } } as const;
  app.put<{ Params: Params }>(`${hubs}/groups/:group/connections/:connectionId`, { schema: { params: groupParams } }, async (req, reply) => {
    const { hub, group, connectionId } = req.params as Required<Params>;
    if (!groupNameOk(group!, reply)) return reply;
    if (!broker.hasSession(hub!, connectionId!)) return sendError(reply, 404, 'NotFound', `connection ${connectionId} does not exist in hub ${hub}`);
    if (!(await subscribe(broker, hub!, connectionId!, group!, reply))) return reply;
    return reply.code(200).send();
  });
  app.delete<{ Params: Params }>(`${hubs}/groups/:group/connections/:connectionId`, { schema: { params: groupParams } }, async (req, reply) => {
    await broker.unsubscribeSession(req.params['hub']!, req.params['connectionId']!, req.params['group']!);
    return reply.code(204).send();
  });
  app.head<{ Params: Params }>(`${hubs}/groups/:group`, { schema: { params: groupParams } }, async (req, reply) =>
    reply.code(broker.hasGroup(req.params['hub']!, req.params['group']!) ? 200 : 404).send());
  app.get<{ Params: Params; Querystring: { maxpagesize?: number; top?: number; continuationToken?: string } }>(`${hubs}/groups/:group/connections`, {
    schema: {
      params: groupParams,
      querystring: {
        type: 'object',
        properties: {
          'api-version': { type: 'string' }, maxpagesize: { type: 'integer', minimum: 1, maximum: 200 }, top: { type: 'integer', minimum: 1 },
          continuationToken: { type: 'string', maxLength: 2048 },
        },
      },
    },
  }, async (req, reply) => {
    const { hub, group } = req.params as Required<Params>;
    const pageSize = Math.min(req.query.maxpagesize ?? 200, req.query.top ?? Number.POSITIVE_INFINITY);
    // The token is the last client id of the previous page: members are listed in client id order
    const after = req.query.continuationToken === undefined ? undefined : Buffer.from(req.query.continuationToken, 'base64url').toString('utf8');
    // One seek in the group's member index, then the page: the cost of a page is its size
    const { members: page, more } = broker.groupPage(hub!, group!, after, pageSize);
    const body: { value: Array<{ connectionId: string; userId?: string }>; nextLink?: string } = {
      value: page.map((s) => (s.userId === undefined ? { connectionId: s.clientId } : { connectionId: s.clientId, userId: s.userId })),
    };
    const remainingTop = req.query.top === undefined ? undefined : req.query.top - page.length;
    if (more && (remainingTop === undefined || remainingTop > 0)) {
      const next = new URL(`${deps.publicEndpoint()}${req.url}`);
      next.searchParams.set('continuationToken', Buffer.from(page.at(-1)!.clientId, 'utf8').toString('base64url'));
      if (remainingTop !== undefined) next.searchParams.set('top', String(remainingTop));
      body.nextLink = next.toString();
    }
    return reply.code(200).send(body);
  });
  app.post<{ Params: Params; Querystring: { excluded?: string | string[]; reason?: string } }>(`${hubs}/groups/:group/::closeConnections`, { schema: { params: groupParams, querystring: closeQuery } }, async (req, reply) => {
    const { hub, group } = req.params as Required<Params>;
    const excluded = new Set(list(req.query.excluded));
    const close = broker.groupPage(hub!, group!, undefined, Number.POSITIVE_INFINITY).members.filter((s) => !excluded.has(s.clientId));
    for (const s of close) broker.closeSession(hub!, s.clientId, req.query.reason);
    return reply.code(204).send();
  });

  // ---- users -------------------------------------------------------------------------------------
  const sessionsOfUser = (hub: string, userId: string): SessionView[] => broker.sessionsOfUser(hub, userId);
  app.put<{ Params: Params }>(`${hubs}/users/:userId/groups/:group`, { schema: { params: groupParams } }, async (req, reply) => {
    const { hub, userId, group } = req.params as Required<Params>;
    if (!groupNameOk(group!, reply)) return reply;
    for (const s of sessionsOfUser(hub!, userId!)) if (!(await subscribe(broker, hub!, s.clientId, group!, reply))) return reply;
    return reply.code(200).send();
  });
  app.delete<{ Params: Params }>(`${hubs}/users/:userId/groups/:group`, { schema: { params: groupParams } }, async (req, reply) => {
    const { hub, userId, group } = req.params as Required<Params>;
    for (const s of sessionsOfUser(hub!, userId!)) await broker.unsubscribeSession(hub!, s.clientId, group!);
    return reply.code(204).send();
  });
  app.delete<{ Params: Params }>(`${hubs}/users/:userId/groups`, { schema: { params: groupParams } }, async (req, reply) => {
    const { hub, userId } = req.params as Required<Params>;
    for (const s of sessionsOfUser(hub!, userId!)) await unsubscribeAll(broker, hub!, s);
    return reply.code(204).send();
  });
  app.head<{ Params: Params }>(`${hubs}/users/:userId`, { schema: { params: groupParams } }, async (req, reply) =>
    reply.code(sessionsOfUser(req.params['hub']!, req.params['userId']!).length > 0 ? 200 : 404).send());
  app.post<{ Params: Params; Querystring: { excluded?: string | string[]; reason?: string } }>(`${hubs}/users/:userId/::closeConnections`, { schema: { params: groupParams, querystring: closeQuery } }, async (req, reply) => {
    const { hub, userId } = req.params as Required<Params>;
    const excluded = new Set(list(req.query.excluded));
    for (const s of sessionsOfUser(hub!, userId!)) if (!excluded.has(s.clientId)) broker.closeSession(hub!, s.clientId, req.query.reason);
    return reply.code(204).send();
  });

  // ---- connections --------------------------------------------------------------------------------
  app.head<{ Params: Params }>(`${hubs}/connections/:connectionId`, { schema: { params: groupParams } }, async (req, reply) =>
    reply.code(broker.hasSession(req.params['hub']!, req.params['connectionId']!) ? 200 : 404).send());
  app.delete<{ Params: Params; Querystring: { reason?: string } }>(`${hubs}/connections/:connectionId`, { schema: { params: groupParams, querystring: closeQuery } }, async (req, reply) => {
    broker.closeSession(req.params['hub']!, req.params['connectionId']!, req.query.reason);
    return reply.code(204).send();
  });
  app.delete<{ Params: Params }>(`${hubs}/connections/:connectionId/groups`, { schema: { params: groupParams } }, async (req, reply) => {
    const s = broker.sessionView(req.params['hub']!, req.params['connectionId']!);
    if (s) await unsubscribeAll(broker, req.params['hub']!, s);
    return reply.code(204).send();
  });
  app.post<{ Params: Params; Querystring: { excluded?: string | string[]; reason?: string } }>(`${hubs}/::closeConnections`, { schema: { querystring: closeQuery } }, async (req, reply) => {
    const hub = req.params['hub']!;
    const excluded = new Set(list(req.query.excluded));
    for (const s of broker.allSessions(hub)) if (!excluded.has(s.clientId)) broker.closeSession(hub, s.clientId, req.query.reason);
    return reply.code(204).send();
  });

  // ---- groups of many connections: 200 ---------------------------------------------------------------
  const groupsBody = {
    type: 'object',
    required: ['groups'],
    properties: { groups: { type: 'array', minItems: 1, maxItems: 100, items: name }, filter: { type: 'string', maxLength: 4096 } },
  } as const;
  for (const [path, add] of [[`${hubs}/::addToGroups`, true], [`${hubs}/::removeFromGroups`, false]] as const) {
    app.post<{ Params: Params; Body: { groups: string[]; filter?: string } }>(path, { schema: { body: groupsBody } }, async (req, reply) => {
      const hub = req.params['hub']!;
      const accept = receivers({ filter: req.body.filter }, reply);
      if (accept === false) return reply;
      for (const g of req.body.groups) if (!groupNameOk(g, reply)) return reply;
      // Every change is submitted at once, so they share group commits instead of one commit after another
      const work: Array<Promise<unknown>> = [];
      for (const s of broker.allSessions(hub)) {
        if (accept && !accept(s)) continue;
        for (const g of req.body.groups) work.push(add ? broker.subscribeSession(hub, s.clientId, g, 1) : broker.unsubscribeSession(hub, s.clientId, g));
      }
      const failed = (await Promise.allSettled(work)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        if (failed.reason instanceof RangeError) return sendError(reply, 400, 'InvalidRequest', `${failed.reason.message} (the other sessions were changed)`);
        throw failed.reason;
      }
      return reply.code(200).send();
    });
  }

  // ---- tokens ---------------------------------------------------------------------------------------
  app.post<{ Params: Params; Querystring: { userId?: string; role?: string | string[]; group?: string | string[]; minutesToExpire?: number; clientType?: string } }>(`${hubs}/::generateToken`, {
    schema: {
      querystring: {
        type: 'object',
        properties: {
          'api-version': { type: 'string' }, userId: { type: 'string', maxLength: MAX_NAME },
          role: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
          group: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
          minutesToExpire: { type: 'integer', minimum: 1, maximum: 525600 },
          clientType: { type: 'string' },
        },
      },
    },
  }, async (req, reply) => {
    const q = req.query;
    const kind = (q.clientType ?? 'default').toLowerCase();
    const base = deps.publicEndpoint();
    let path: string;
    if (kind === 'mqtt') path = `/clients/mqtt/hubs/${req.params['hub']}`;
    else if (kind === 'default') path = `/client/hubs/${req.params['hub']}`;
    else return sendError(reply, 400, 'InvalidClientType', 'clientType must be Default or MQTT');
    const token = await signClientToken(deps.signingKey(), {
      audience: `${base}${path}`, expiresInSec: (q.minutesToExpire ?? 60) * 60,
      ...(q.userId === undefined ? {} : { userId: q.userId }),
      ...(q.role === undefined ? {} : { roles: list(q.role) }),
      ...(q.group === undefined ? {} : { groups: list(q.group) }),
    });
    return reply.code(200).type('application/json; charset=utf-8').send({ token });
  });
}

/** Subscribe a session to a group with default options (QoS 1); false after replying 400 for a group that is not a valid filter here. */
async function subscribe(broker: Broker, hub: string, clientId: string, group: string, reply: FastifyReply): Promise<boolean> {
  try {
    await broker.subscribeSession(hub, clientId, group, 1);
    return true;
  } catch (err) {
    if (err instanceof RangeError) {
      sendError(reply, 400, 'InvalidGroupName', err.message);
      return false;
    }
    throw err;
  }
}

async function unsubscribeAll(broker: Broker, hub: string, s: SessionView): Promise<void> {
  await Promise.all([...s.groups.keys()].map((g) => broker.unsubscribeSession(hub, s.clientId, g)));
}
