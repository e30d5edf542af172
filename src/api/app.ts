// The REST API on the broker's HTTP port: one encapsulated Fastify scope under /api where every
// route needs an access-key token and every error is an Azure `ErrorDetail`. Routes are added per
// area (data plane, admin); main.ts passes the engine's facade and the access control in.
import type { FastifyError, FastifyInstance } from 'fastify';
import type { AccessControl } from '../access/access-control.ts';
import type { Principal } from '../auth/auth.ts';
import type { TokenVerifier } from '../auth/jwt.ts';
import { sendError } from './errors.ts';
import { requireAccessKeyToken } from './rest-auth.ts';
import { registerAdminRoutes, type AdminDeps } from './routes/admin.ts';
import { registerHubSettingsRoutes } from './routes/hub-settings.ts';
import { registerDataPlaneRoutes, type DataPlaneDeps } from './routes/data-plane.ts';
import { registerPermissionRoutes } from './routes/permissions.ts';

export interface ApiDeps extends DataPlaneDeps, AdminDeps {
  verifier: TokenVerifier;
  access: AccessControl;
  hasSession(hub: string, clientId: string): boolean;
  principalOf(hub: string, clientId: string): Principal | undefined;
  isValidHub(name: string): boolean;
}

/** Mount the API routes on `fastify` (an encapsulated child scope: its hooks reach only these routes). */
export async function registerApi(fastify: FastifyInstance, deps: ApiDeps): Promise<void> {
  await fastify.register(async (api) => {
    api.setErrorHandler((err: FastifyError, req, reply) => {
      if (err.validation) return sendError(reply, 400, 'InvalidRequest', err.message);
      if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return sendError(reply, err.statusCode, err.code ?? 'BadRequest', err.message);
      req.log.error({ err, url: req.url }, 'REST request failed');
      return sendError(reply, 500, 'InternalServerError', 'the request could not be completed');
    });
    api.setNotFoundHandler((req, reply) => sendError(reply, 404, 'NotFound', `no route ${req.method} ${req.url.split('?')[0]}`));
    requireAccessKeyToken(api, deps.verifier);
    registerPermissionRoutes(api, deps);
    registerHubSettingsRoutes(api, deps);
    registerDataPlaneRoutes(api, deps);
    registerAdminRoutes(api, deps);
  }, { prefix: '/api' });
}
