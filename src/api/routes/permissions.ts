// Data plane: grant, revoke and check a connection's permission (spec §6.5 rows 22–24), with
// exact success codes (the SDK throws on any other): PUT 200, DELETE 204, HEAD 200/404.
// For MQTT the connection is a session (client id); a grant lasts as long as that session.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PERMISSIONS, SessionGoneError, type AccessControl, type Permission } from '../../access/access-control.ts';
import type { Principal } from '../../auth/auth.ts';
import { sendError } from '../errors.ts';

export interface PermissionRouteDeps {
  access: AccessControl;
  /** Whether the session exists (connected or not). */
  hasSession(hub: string, clientId: string): boolean;
  /** The principal of the connection holding that session, if one does (its token roles count too). */
  principalOf(hub: string, clientId: string): Principal | undefined;
  isValidHub(name: string): boolean;
}

interface Params { hub: string; permission: string; connectionId: string }
interface Query { targetName?: string }

const MAX_GROUP_NAME = 1024;

/** The request's hub, permission and target, or undefined after replying 400. */
function parse(req: FastifyRequest<{ Params: Params; Querystring: Query }>, reply: FastifyReply, deps: PermissionRouteDeps):
  { hub: string; permission: Permission; connectionId: string; target: string | null } | undefined {
  const { hub, permission, connectionId } = req.params;
  if (!deps.isValidHub(hub)) {
    sendError(reply, 400, 'InvalidHubName', 'hub name: a letter, then up to 127 letters, digits or _`,.[]');
    return undefined;
  }
  if (!(PERMISSIONS as readonly string[]).includes(permission)) {
    sendError(reply, 400, 'InvalidPermission', `permission must be one of ${PERMISSIONS.join(', ')}`);
    return undefined;
  }
  if (connectionId.length === 0) {
    sendError(reply, 400, 'InvalidConnectionId', 'connection id must not be empty');
    return undefined;
  }
  const target = req.query.targetName ?? null;
  if (target !== null && (target.length === 0 || target.length > MAX_GROUP_NAME || target.trim() === '')) {
    sendError(reply, 400, 'InvalidTargetName', `targetName: 1 to ${MAX_GROUP_NAME} characters, not only white space`);
    return undefined;
  }
  return { hub, permission: permission as Permission, connectionId, target };
}

const schema = {
  params: { type: 'object', properties: { hub: { type: 'string' }, permission: { type: 'string' }, connectionId: { type: 'string' } }, required: ['hub', 'permission', 'connectionId'] },
  querystring: { type: 'object', properties: { targetName: { type: 'string' }, 'api-version': { type: 'string' } } },
} as const;

export function registerPermissionRoutes(app: FastifyInstance, deps: PermissionRouteDeps): void {
  const path = '/hubs/:hub/permissions/:permission/connections/:connectionId';
  app.put<{ Params: Params; Querystring: Query }>(path, { schema }, async (req, reply) => {
    const p = parse(req, reply, deps);
    if (!p) return reply;
    if (!deps.hasSession(p.hub, p.connectionId)) return sendError(reply, 404, 'NotFound', `connection ${p.connectionId} does not exist in hub ${p.hub}`);
    try {
      await deps.access.grant(p.hub, p.connectionId, p.permission, p.target, req.actor);
    } catch (err) {
      if (err instanceof SessionGoneError) return sendError(reply, 404, 'NotFound', err.message);
      throw err;
    }
    return reply.code(200).send();
  });
  app.delete<{ Params: Params; Querystring: Query }>(path, { schema }, async (req, reply) => {
    const p = parse(req, reply, deps);
    if (!p) return reply;
    await deps.access.revoke(p.hub, p.connectionId, p.permission, p.target, req.actor);
    return reply.code(204).send();
  });
  app.head<{ Params: Params; Querystring: Query }>(path, { schema }, async (req, reply) => {
    const p = parse(req, reply, deps);
    if (!p) return reply;
    const has = deps.access.check(p.hub, p.connectionId, p.permission, p.target, deps.principalOf(p.hub, p.connectionId));
    return reply.code(has ? 200 : 404).send();
  });
}
