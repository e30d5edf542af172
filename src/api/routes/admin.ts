// Admin API (beyond Azure): list and inspect sessions, disconnect or end them, change their
// subscriptions, read and set retained messages, read grants, the audit trail and totals. Reads go
// through the broker facade and the Store port; every change is written to the audit log as an
// `admin_action` row with the calling key as actor.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AccessControl } from '../../access/access-control.ts';
import type { Broker } from '../../broker/broker.ts';
import type { Page, RetainedView, SessionDetail } from '../../broker/broker.ts';
import type { CommitFigures } from '../../observability/commit-stats.ts';
import type { AuditRecord, Store } from '../../store/store.ts';
import { sendError } from '../errors.ts';

export interface AdminDeps {
  broker: Broker;
  access: AccessControl;
  /** Where admin actions are audited and the audit trail is read. */
  store: Store;
  /** Epoch milliseconds (the audit rows' time). */
  now(): number;
  isValidHub(name: string): boolean;
  /** Largest retained payload accepted (bytes). */
  maxMessageBytes: number;
  /** The store's group-commit figures (undefined when the store commits nothing). */
  commitFigures(): CommitFigures | undefined;
}

type Params = Record<string, string>;

const MAX_PAGE = 1000;
const DEFAULT_PAGE = 100;
const HUB_NAME_RULE = 'hub name: a letter, then up to 127 letters, digits or _`,.[]';

const id = { type: 'string', minLength: 1, maxLength: 65535 } as const;
const limit = { type: 'integer', minimum: 1, maximum: MAX_PAGE, default: DEFAULT_PAGE } as const;
const cursor = { type: 'string', minLength: 1, maxLength: 4096 } as const;
const hubParams = { type: 'object', required: ['hub'], properties: { hub: { type: 'string', minLength: 1 } } } as const;
const sessionParams = { type: 'object', required: ['hub', 'clientId'], properties: { hub: { type: 'string', minLength: 1 }, clientId: id } } as const;
const topicParams = { type: 'object', required: ['hub', '*'], properties: { hub: { type: 'string', minLength: 1 }, '*': { type: 'string', minLength: 1, maxLength: 65535 } } } as const;
const qos = { type: 'integer', enum: [0, 1, 2] } as const;

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());
const encodeCursor = (v: unknown): string => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');

/** The cursor's value if it decodes and `valid` accepts it; undefined after replying 400. */
function decodeCursor<T>(raw: string | undefined, valid: (v: unknown) => v is T, reply: FastifyReply): T | null | undefined {
  if (raw === undefined) return null;
  try {
    const v: unknown = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
    if (valid(v)) return v;
  } catch {
    // not JSON: refused below
  }
  sendError(reply, 400, 'InvalidCursor', 'cursor: pass back the nextCursor of the previous page');
  return undefined;
}

const isKeyPair = (v: unknown): v is [string, string] => Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string';
const isString = (v: unknown): v is string => typeof v === 'string';
const isId = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) > 0;

function sessionJson(d: SessionDetail): Record<string, unknown> {
  return {
    hub: d.hub, clientId: d.clientId, userId: d.userId ?? null, connected: d.connected, persistent: d.persistent,
    protocolVersion: d.protocolVersion === 5 ? '5.0' : d.protocolVersion === 4 ? '3.1.1' : '3.1', expiryIntervalSec: d.expiryIntervalSec,
    connectedSince: iso(d.connectedAtMs), disconnectedAt: iso(d.disconnectedAtMs), remoteAddress: d.remoteAddress ?? null,
    subscriptions: d.subscriptions.map((s) => ({ ...s, subscriptionId: s.subscriptionId ?? null })),
    queued: d.queued, inflight: d.inflight, will: d.will ?? null,
  };
}

function retainedJson(m: RetainedView, withPayload: boolean): Record<string, unknown> {
  return {
    topic: m.topic, qos: m.qos, payloadBytes: m.payloadBytes, contentType: m.contentType ?? null, expiresAt: iso(m.expiresAtMs),
    ...(withPayload ? { payload: m.payload.toString('base64') } : {}),
  };
}

function auditJson(r: AuditRecord): Record<string, unknown> {
  return {
    id: r.id, at: iso(r.atMs), hub: r.hub, event: r.event, clientId: r.clientId ?? null, actor: r.actor ?? null,
    remoteAddress: r.remoteAddress ?? null, reasonCode: r.reasonCode ?? null, detail: r.detail ?? null,
  };
}

/** A route as audit rows name it: without the /api prefix, `:send`-style segments as the SDK writes them. */
export function auditRoute(req: FastifyRequest): string {
  return (req.routeOptions.url ?? '').replaceAll('::', ':').replace(/^\/api/, '');
}

export function registerAdminRoutes(app: FastifyInstance, deps: AdminDeps): void {
  const { broker } = deps;
  const hubKey = (hub: string): string => hub.toLowerCase();
  /** A hub this node holds something in, or one with stored settings. */
  const knownHub = (hub: string): boolean => broker.findHub(hub) !== undefined || deps.access.configuredHubs().some((h) => h.hub === hubKey(hub));

  /** Append the `admin_action` audit row of a change that was made; a failed write is logged (the change stands). */
  const audited = async (req: FastifyRequest, hub: string, clientId: string | undefined, target: Record<string, unknown>, result: string): Promise<void> => {
    try {
      await deps.store.transaction((tx) => tx.appendAudit({
        hub: hubKey(hub), event: 'admin_action', ...(clientId === undefined ? {} : { clientId }), actor: req.actor, atMs: deps.now(),
        detail: { method: req.method, route: auditRoute(req), target, result },
      }));
    } catch (err) {
      req.log.warn({ err, hub, clientId, target }, 'admin action not audited');
    }
  };

  void app.register(async (admin) => {
    // Every route naming a hub checks its name first
    admin.addHook('preHandler', async (req, reply) => {
      const hub = (req.params as Params | undefined)?.['hub'];
      if (hub !== undefined && !deps.isValidHub(hub)) return sendError(reply, 400, 'InvalidHubName', HUB_NAME_RULE);
      const q = (req.query as Params | undefined)?.['hub'];
      if (q !== undefined && !deps.isValidHub(q)) return sendError(reply, 400, 'InvalidHubName', HUB_NAME_RULE);
      return undefined;
    });
    const notFound = (reply: FastifyReply, hub: string, clientId: string): FastifyReply =>
      sendError(reply, 404, 'NotFound', `session ${clientId} does not exist in hub ${hub}`);

    // ---- sessions ------------------------------------------------------------------------------------
    admin.get<{ Querystring: { hub?: string; userId?: string; connected?: boolean; persistent?: boolean; clientIdPrefix?: string; limit: number; cursor?: string } }>('/sessions', {
      schema: {
        querystring: {
          type: 'object',
          properties: {
            hub: { type: 'string', minLength: 1 }, userId: { type: 'string', maxLength: 1024 }, connected: { type: 'boolean' }, persistent: { type: 'boolean' },
            clientIdPrefix: { type: 'string', maxLength: 65535 }, limit, cursor,
          },
        },
      },
    }, async (req, reply) => {
      const q = req.query;
      const after = decodeCursor(q.cursor, isKeyPair, reply);
      if (after === undefined) return reply;
      const page = broker.listSessions({
        limit: q.limit, ...(after === null ? {} : { after }), ...(q.hub === undefined ? {} : { hub: q.hub }), ...(q.userId === undefined ? {} : { userId: q.userId }),
        ...(q.connected === undefined ? {} : { connected: q.connected }), ...(q.persistent === undefined ? {} : { persistent: q.persistent }),
        ...(q.clientIdPrefix === undefined ? {} : { clientIdPrefix: q.clientIdPrefix }),
      });
      const body: { value: unknown[]; nextCursor?: string } = { value: page.items.map((s) => ({ ...s, userId: s.userId ?? null })) };
      if (page.next !== undefined) body.nextCursor = encodeCursor(page.next);
      return body;
    });

    const session = '/hubs/:hub/sessions/:clientId';
    admin.get<{ Params: Params }>(session, { schema: { params: sessionParams } }, async (req, reply) => {
      const { hub, clientId } = req.params as Required<Params>;
      const d = broker.sessionDetail(hub!, clientId!);
      return d ? sessionJson(d) : notFound(reply, hub!, clientId!);
    });
    admin.post<{ Params: Params; Querystring: { reason?: string } }>(`${session}/::disconnect`, {
      schema: { params: sessionParams, querystring: { type: 'object', properties: { reason: { type: 'string', maxLength: 1024 } } } },
    }, async (req, reply) => {
      const { hub, clientId } = req.params as Required<Params>;
      if (!broker.hasSession(hub!, clientId!)) return notFound(reply, hub!, clientId!);
      // 0x98 Administrative action; a persistent session stays (disconnected), as after any disconnect
      if (!broker.disconnectClient(hub!, clientId!, 0x98, req.query.reason)) return sendError(reply, 409, 'NotConnected', `session ${clientId} is not connected`);
      await audited(req, hub!, clientId, { clientId, reason: req.query.reason ?? null }, 'disconnected');
      return reply.code(204).send();
    });
    admin.delete<{ Params: Params; Querystring: { reason?: string } }>(session, {
      schema: { params: sessionParams, querystring: { type: 'object', properties: { reason: { type: 'string', maxLength: 1024 } } } },
    }, async (req, reply) => {
      const { hub, clientId } = req.params as Required<Params>;
      if (!broker.closeSession(hub!, clientId!, req.query.reason)) return notFound(reply, hub!, clientId!);
      await audited(req, hub!, clientId, { clientId }, 'session ended');
      return reply.code(204).send();
    });

    // ---- subscriptions -------------------------------------------------------------------------------
    admin.put<{ Params: Params; Querystring: { filter: string; qos: 0 | 1 | 2 } }>(`${session}/subscriptions`, {
      schema: { params: sessionParams, querystring: { type: 'object', required: ['filter'], properties: { filter: { type: 'string', minLength: 1, maxLength: 65535 }, qos: { ...qos, default: 1 } } } },
    }, async (req, reply) => {
      const { hub, clientId } = req.params as Required<Params>;
      const { filter, qos: wanted } = req.query;
      if (!broker.hasSession(hub!, clientId!)) return notFound(reply, hub!, clientId!);
      try {
        if (!(await broker.subscribeSession(hub!, clientId!, filter, wanted))) return notFound(reply, hub!, clientId!);
      } catch (err) {
        if (err instanceof RangeError) return sendError(reply, 400, 'InvalidTopicFilter', err.message);
        throw err;
      }
      const granted = broker.sessionDetail(hub!, clientId!)?.subscriptions.find((s) => s.filter === filter);
      await audited(req, hub!, clientId, { clientId, filter, qos: wanted }, 'subscribed');
      return reply.code(200).send({ filter, qos: granted?.qos ?? wanted });
    });
    admin.delete<{ Params: Params; Querystring: { filter: string } }>(`${session}/subscriptions`, {
      schema: { params: sessionParams, querystring: { type: 'object', required: ['filter'], properties: { filter: { type: 'string', minLength: 1, maxLength: 65535 } } } },
    }, async (req, reply) => {
      const { hub, clientId } = req.params as Required<Params>;
      if (!broker.hasSession(hub!, clientId!)) return notFound(reply, hub!, clientId!);
      const removed = await broker.unsubscribeSession(hub!, clientId!, req.query.filter);
      await audited(req, hub!, clientId, { clientId, filter: req.query.filter }, removed ? 'unsubscribed' : 'no such subscription');
      return reply.code(204).send();
    });

    // ---- retained messages ---------------------------------------------------------------------------
    admin.get<{ Params: Params; Querystring: { filter: string; limit: number; cursor?: string; includePayload: boolean } }>('/hubs/:hub/retained', {
      schema: {
        params: hubParams,
        querystring: {
          type: 'object',
          properties: { filter: { type: 'string', minLength: 1, maxLength: 65535, default: '#' }, limit, cursor, includePayload: { type: 'boolean', default: false } },
        },
      },
    }, async (req, reply) => {
      const hub = req.params['hub']!;
      const q = req.query;
      const after = decodeCursor(q.cursor, isString, reply);
      if (after === undefined) return reply;
      if (!knownHub(hub)) return sendError(reply, 404, 'NotFound', `hub ${hub} does not exist`);
      let page: Page<RetainedView, string>;
      try {
        page = broker.retainedMessages(hub, q.filter, after ?? undefined, q.limit);
      } catch (err) {
        if (err instanceof RangeError) return sendError(reply, 400, 'InvalidTopicFilter', err.message);
        throw err;
      }
      const body: { value: unknown[]; nextCursor?: string } = { value: page.items.map((m) => retainedJson(m, q.includePayload)) };
      if (page.next !== undefined) body.nextCursor = encodeCursor(page.next);
      return body;
    });
    // The topic is the rest of the path (URL-encoded: a topic name holds '/' and may hold '#'-free anything)
    admin.get<{ Params: Params }>('/hubs/:hub/retained/*', { schema: { params: topicParams } }, async (req, reply) => {
      const m = broker.retainedMessage(req.params['hub']!, req.params['*']!);
      return m ? retainedJson(m, true) : sendError(reply, 404, 'NotFound', `no retained message at ${req.params['*']}`);
    });
    admin.delete<{ Params: Params }>('/hubs/:hub/retained/*', { schema: { params: topicParams } }, async (req, reply) => {
      const hub = req.params['hub']!;
      const topic = req.params['*']!;
      // [MQTT-3.3.1-6] a retained message with an empty payload removes the one stored at its topic
      if (!(await publishRetained(broker, hub, topic, Buffer.alloc(0), 0, undefined, reply))) return reply;
      await audited(req, hub, undefined, { topic }, 'retained message removed');
      return reply.code(204).send();
    });
    // Bodies of any content type arrive as the payload's bytes
    void admin.register(async (raw) => {
      raw.removeAllContentTypeParsers();
      raw.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: deps.maxMessageBytes }, (_req, body, done) => done(null, body));
      raw.put<{ Params: Params; Querystring: { qos: 0 | 1 | 2 } }>('/hubs/:hub/retained/*', {
        schema: { params: topicParams, querystring: { type: 'object', properties: { qos: { ...qos, default: 0 } } } },
      }, async (req, reply) => {
        const hub = req.params['hub']!;
        const topic = req.params['*']!;
        const payload = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        if (payload.length === 0) return sendError(reply, 400, 'InvalidRequest', 'a retained message needs a payload (DELETE removes one)');
        const contentType = req.headers['content-type'];
        if (!(await publishRetained(broker, hub, topic, payload, req.query.qos, contentType, reply))) return reply;
        await audited(req, hub, undefined, { topic, qos: req.query.qos, payloadBytes: payload.length }, 'retained message set');
        return reply.code(200).send({ topic, qos: req.query.qos, payloadBytes: payload.length, contentType: contentType ?? null });
      });
    });

    // ---- grants, audit, stats ------------------------------------------------------------------------
    admin.get<{ Params: Params }>('/hubs/:hub/permissions', { schema: { params: hubParams } }, async (req, reply) => {
      const hub = req.params['hub']!;
      if (!knownHub(hub)) return sendError(reply, 404, 'NotFound', `hub ${hub} does not exist`);
      return {
        value: deps.access.listGrants(hub).map((g) => ({
          subjectKind: g.subjectKind, subject: g.subject, permission: g.permission, target: g.target, grantedBy: g.grantedBy ?? null, grantedAt: iso(g.grantedAtMs),
        })),
      };
    });

    admin.get<{ Querystring: { from?: string; to?: string; hub?: string; clientId?: string; userId?: string; event?: string; limit: number; cursor?: string } }>('/audit', {
      schema: {
        querystring: {
          type: 'object',
          properties: {
            from: { type: 'string', format: 'date-time' }, to: { type: 'string', format: 'date-time' }, hub: { type: 'string', minLength: 1 },
            clientId: id, userId: { type: 'string', minLength: 1, maxLength: 1024 }, event: { type: 'string', minLength: 1, maxLength: 64 }, limit, cursor,
          },
        },
      },
    }, async (req, reply) => {
      const q = req.query;
      const before = decodeCursor(q.cursor, isId, reply);
      if (before === undefined) return reply;
      const page = await deps.store.queryAudit({
        limit: q.limit,
        ...(before === null ? {} : { beforeId: before }),
        ...(q.from === undefined ? {} : { fromMs: Date.parse(q.from) }),
        ...(q.to === undefined ? {} : { toMs: Date.parse(q.to) }),
        ...(q.hub === undefined ? {} : { hub: hubKey(q.hub) }),
        ...(q.clientId === undefined ? {} : { clientId: q.clientId }),
        ...(q.userId === undefined ? {} : { actor: q.userId }),
        ...(q.event === undefined ? {} : { event: q.event }),
      });
      const body: { value: unknown[]; nextCursor?: string } = { value: page.rows.map(auditJson) };
      if (page.nextCursor !== undefined) body.nextCursor = encodeCursor(page.nextCursor);
      return body;
    });

    admin.get('/stats', async () => {
      const totals = broker.totals();
      return { ...totals, store: { ...totals.store, commits: deps.commitFigures() ?? null }, messages: broker.stats };
    });
  }, { prefix: '/admin' });
}

/** Publish a retained message from the server; false after replying 400 for a topic or size the broker refuses. */
async function publishRetained(broker: Broker, hub: string, topicName: string, payload: Buffer, qos: 0 | 1 | 2, contentType: string | undefined, reply: FastifyReply): Promise<boolean> {
  try {
    await broker.publishFromServer({ hub, topicName, payload, qos, retain: true, ...(contentType === undefined ? {} : { properties: { contentType } }) });
    return true;
  } catch (err) {
    if (err instanceof RangeError) {
      sendError(reply, 400, 'InvalidTopicName', err.message);
      return false;
    }
    throw err;
  }
}
