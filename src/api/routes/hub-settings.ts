// Admin API (beyond Azure): read and change a hub's settings (anonymous connect policy, keep-alive
// cap, session limit). Stored in PostgreSQL; a change applies to the next CONNECT at once.
import type { FastifyInstance } from 'fastify';
import type { AccessControl, EffectiveHubSettings, HubSettingsPatch } from '../../access/access-control.ts';
import { sendError } from '../errors.ts';

const settingsBody = {
  type: 'object',
  // propertyNames, not additionalProperties: Fastify's validator strips unknown properties
  // quietly under additionalProperties: false, and a misspelt setting must be an error
  propertyNames: { enum: ['anonymousConnectPolicy', 'maxKeepAliveSec', 'maxSessions'] },
  minProperties: 1,
  properties: {
    anonymousConnectPolicy: { anyOf: [{ type: 'string', enum: ['allow', 'deny'] }, { type: 'null' }] },
    maxKeepAliveSec: { anyOf: [{ type: 'integer', minimum: 1, maximum: 65535 }, { type: 'null' }] },
    maxSessions: { anyOf: [{ type: 'integer', minimum: 1, maximum: 100000000 }, { type: 'null' }] },
  },
} as const;

function view(s: EffectiveHubSettings): Record<string, unknown> {
  return {
    hub: s.hub, anonymousConnectPolicy: s.anonymousConnectPolicy, maxKeepAliveSec: s.maxKeepAliveSec, maxSessions: s.maxSessions,
    stored: s.stored ? { anonymousConnectPolicy: s.stored.anonymousConnectPolicy, maxKeepAliveSec: s.stored.maxKeepAliveSec, maxSessions: s.stored.maxSessions, updatedAt: new Date(s.stored.updatedAtMs).toISOString() } : null,
  };
}

export function registerHubSettingsRoutes(app: FastifyInstance, deps: { access: AccessControl; isValidHub(name: string): boolean }): void {
  app.get('/admin/hubs', async () => ({ value: deps.access.configuredHubs().map((h) => view(deps.access.hubSettings(h.hub))) }));
  app.get<{ Params: { hub: string } }>('/admin/hubs/:hub/settings', async (req, reply) => {
    if (!deps.isValidHub(req.params.hub)) return sendError(reply, 400, 'InvalidHubName', 'hub name: a letter, then up to 127 letters, digits or _`,.[]');
    return view(deps.access.hubSettings(req.params.hub));
  });
  app.patch<{ Params: { hub: string }; Body: HubSettingsPatch }>('/admin/hubs/:hub/settings', { schema: { body: settingsBody } }, async (req, reply) => {
    if (!deps.isValidHub(req.params.hub)) return sendError(reply, 400, 'InvalidHubName', 'hub name: a letter, then up to 127 letters, digits or _`,.[]');
    return view(await deps.access.updateHubSettings(req.params.hub, req.body, req.actor));
  });
}
