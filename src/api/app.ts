// The REST API on the broker's HTTP port: one encapsulated Fastify scope under /api where every
// route needs an access-key token and every error is an Azure `ErrorDetail`. Routes are added per
// area (data plane, admin); main.ts passes the engine's facade and the access control in.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyError, FastifyInstance } from 'fastify';
import type { AccessControl } from '../access/access-control.ts';
import type { Principal } from '../auth/auth.ts';
import type { TokenVerifier } from '../auth/jwt.ts';
import { sendError } from './errors.ts';
import { requireAccessKeyToken } from './rest-auth.ts';
import { auditRoute, registerAdminRoutes, type AdminDeps } from './routes/admin.ts';
import { registerHubSettingsRoutes } from './routes/hub-settings.ts';
import { registerDataPlaneRoutes, type DataPlaneDeps } from './routes/data-plane.ts';
import { registerPermissionRoutes } from './routes/permissions.ts';

export interface ApiDeps extends DataPlaneDeps, AdminDeps {
  /** Append an audit row (through the store's group commit; failures are the callee's to log). */
  audit(row: { hub: string; event: string; clientId?: string; actor?: string; reasonCode?: number; detail?: Record<string, unknown> }): void;
  verifier: TokenVerifier;
  access: AccessControl;
  hasSession(hub: string, clientId: string): boolean;
  principalOf(hub: string, clientId: string): Principal | undefined;
  isValidHub(name: string): boolean;
}

/** An admin route's path parameters as an audit target: the hub left out (a column of its own), `*` named `topic`. */
function adminTarget(params: Record<string, string>): Record<string, string> | undefined {
  const t: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) if (k !== 'hub') t[k === '*' ? 'topic' : k] = v;
  return Object.keys(t).length > 0 ? t : undefined;
}

/** Mount the API routes on `fastify` (an encapsulated child scope: its hooks reach only these routes). */
export async function registerApi(fastify: FastifyInstance, deps: ApiDeps): Promise<void> {
  // The OpenAPI document is generated from the routes' schemas: registered before them
  await fastify.register(swagger, {
    openapi: {
      info: { title: 'Tern REST API', version: '1', description: 'Azure Web PubSub data plane and Tern administration. Requests carry `Authorization: Bearer <JWT>` signed HS256 with an access key, `aud` = the request URL.' },
      components: { securitySchemes: { accessKey: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      security: [{ accessKey: [] }],
    },
  });
  await fastify.register(swaggerUi, { routePrefix: '/api-docs' });
  fastify.get('/openapi.json', { schema: { hide: true } }, () => fastify.swagger());
  await fastify.register(async (api) => {
    api.setErrorHandler((err: FastifyError, req, reply) => {
      if (err.validation) return sendError(reply, 400, 'InvalidRequest', err.message);
      if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return sendError(reply, err.statusCode, err.code ?? 'BadRequest', err.message);
      req.log.error({ err, url: req.url }, 'REST request failed');
      return sendError(reply, 500, 'InternalServerError', 'the request could not be completed');
    });
    api.setNotFoundHandler((req, reply) => sendError(reply, 404, 'NotFound', `no route ${req.method} ${req.url.split('?')[0]}`));
    requireAccessKeyToken(api, deps.verifier);
    // Every call that can change state is audited: who, what, the answer. Routes that write their
    // own, richer rows on success (permissions, admin) are left to them then; their failures are
    // written here, as `admin_action` for admin routes, `rest_call` for the others.
    api.addHook('onResponse', async (req, reply) => {
      // (a request refused for its token changed nothing and must not fill the audit log either)
      if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS' || !req.actor) return;
      const route = auditRoute(req);
      if (route === '') return;
      const admin = route.startsWith('/admin');
      const failed = reply.statusCode >= 400;
      if ((admin || route.includes('/permissions/')) && !failed) return;
      const params = (req.params ?? {}) as Record<string, string>;
      // (admin rows name their target as an object, as the routes' own rows do: { clientId } or { topic })
      const target = admin ? adminTarget(params) : params['connectionId'] ?? params['userId'] ?? params['group'];
      const clientId = params['connectionId'] ?? params['clientId'];
      const errorCode = reply.getHeader('x-ms-error-code');
      deps.audit({
        hub: (params['hub'] ?? '').toLowerCase(), event: admin ? 'admin_action' : 'rest_call', actor: req.actor || undefined, reasonCode: reply.statusCode,
        ...(clientId ? { clientId } : {}),
        detail: {
          method: req.method, route, ...(target === undefined ? {} : { target }), status: reply.statusCode,
          ...(failed ? { result: 'failed', ...(typeof errorCode === 'string' ? { error: errorCode } : {}) } : {}),
        },
      });
    });
    registerPermissionRoutes(api, deps);
    registerHubSettingsRoutes(api, deps);
    registerDataPlaneRoutes(api, deps);
    registerAdminRoutes(api, deps);
  }, { prefix: '/api' });
}
