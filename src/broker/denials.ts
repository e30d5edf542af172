// Authorization denials: every one is counted, and reported as an AccessDenied event (audited) at
// most once per interval per connection, so a client hammering a forbidden topic cannot flood the
// audit log. The event carries how many denials it stands for.
import type { Connected } from './context.ts';
import { EventType } from './events.ts';

/** Shortest time between two AccessDenied events of one connection. */
export const DENIAL_REPORT_INTERVAL_MS = 10_000;

/** Count a denied PUBLISH or SUBSCRIBE of `c` and report it unless one was reported within the interval. */
export function reportDenial(c: Connected, action: 'publish' | 'subscribe', name: string): void {
  const { engine } = c;
  engine.logger.debug({ clientId: c.clientId, action, name }, 'not authorized');
  const now = engine.clock.now();
  if (action === 'publish') engine.stats.deniedPublish++;
  else engine.stats.deniedSubscribe++;
  const d = (c.denials ??= { unreported: 0, lastReportMs: Number.NEGATIVE_INFINITY });
  d.unreported++;
  if (now - d.lastReportMs < DENIAL_REPORT_INTERVAL_MS) return;
  engine.events.emit({
    type: EventType.AccessDenied, hub: c.session.hub.name, clientId: c.clientId, userId: c.principal.userId, action, name, count: d.unreported,
  });
  d.unreported = 0;
  d.lastReportMs = now;
}
