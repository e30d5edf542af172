// The audit log: a subscriber of broker events that appends one `audit_events` row per audited
// event through the store's group-commit writer. Owns the mapping from events to rows (columns and
// `detail` fields); README's SQL queries depend on it. Failures are logged, never thrown.
import { EventType, type BrokerEvent, type EventSink } from '../broker/events.ts';
import { assertNever } from '../mqtt/errors.ts';
import type { AuditEvent, Clock, Logger, Store } from '../broker/ports.ts';

/** The events written to the audit log (MessageDropped is not: it is counted and logged instead). */
const AUDITED: readonly EventType[] = [
  EventType.Connect, EventType.ConnectRefused, EventType.Disconnect, EventType.Takeover, EventType.Subscribe,
  EventType.Unsubscribe, EventType.SessionExpired, EventType.QueueOverflow, EventType.RetainedQuotaExceeded,
  EventType.InflightLimitExceeded, EventType.AccessDenied, EventType.UpgradeRefused,
];

/** The audit row of an event (without its time), or undefined if the event is not audited. */
export function toAuditRow(e: BrokerEvent): Omit<AuditEvent, 'atMs'> | undefined {
  switch (e.type) {
    case EventType.Connect:
      return {
        hub: e.hub, event: e.type, clientId: e.clientId, actor: e.userId, remoteAddress: e.remoteAddress,
        detail: {
          method: e.method, transport: e.transport, protocolVersion: e.protocolVersion,
          cleanStart: e.cleanStart, sessionPresent: e.sessionPresent, username: e.username,
        },
      };
    case EventType.ConnectRefused:
      return {
        hub: e.hub, event: e.type, clientId: e.clientId, reasonCode: e.reasonCode, remoteAddress: e.remoteAddress,
        detail: { reason: e.reason, transport: e.transport, protocolVersion: e.protocolVersion },
      };
    case EventType.Disconnect:
      return {
        hub: e.hub, event: e.type, clientId: e.clientId, remoteAddress: e.remoteAddress, reasonCode: e.reasonCode, actor: e.initiatedBy,
        detail: { initiatedBy: e.initiatedBy, willPublished: e.willPublished },
      };
    case EventType.Takeover:
      return { hub: e.hub, event: e.type, clientId: e.clientId, actor: 'broker', remoteAddress: e.remoteAddress, detail: { previousAddress: e.previousAddress } };
    case EventType.Subscribe:
      return { hub: e.hub, event: e.type, clientId: e.clientId, actor: e.userId, detail: { filters: e.filters } };
    case EventType.Unsubscribe:
      return { hub: e.hub, event: e.type, clientId: e.clientId, actor: e.userId, detail: { topicFilters: e.topicFilters, removed: e.removed } };
    case EventType.SessionExpired:
      return { hub: e.hub, event: e.type, clientId: e.clientId, actor: 'broker' };
    case EventType.QueueOverflow:
      return {
        hub: e.hub, event: e.type, clientId: e.clientId, actor: 'broker',
        detail: { dropped: e.dropped, topicName: e.topicName, queued: e.queued, queuedBytes: e.queuedBytes },
      };
    case EventType.RetainedQuotaExceeded:
      return {
        hub: e.hub, event: e.type, clientId: e.clientId, actor: e.userId,
        detail: { topicName: e.topicName, payloadBytes: e.payloadBytes, refusals: e.refusals, retained: e.retained, retainedBytes: e.retainedBytes },
      };
    case EventType.InflightLimitExceeded:
      return { hub: e.hub, event: e.type, clientId: e.clientId, actor: 'broker', detail: { limit: e.limit } };
    case EventType.AccessDenied:
      return {
        hub: e.hub, event: e.type, clientId: e.clientId, actor: e.userId, reasonCode: 0x87,
        detail: { action: e.action, name: e.name, count: e.count },
      };
    case EventType.UpgradeRefused:
      return { hub: e.hub, event: e.type, remoteAddress: e.remoteAddress, detail: { status: e.status, reason: e.reason, transport: e.transport } };
    case EventType.MessageDropped:
    case EventType.SessionEnded:
      return undefined;
    default:
      return assertNever(e);
  }
}

/** Writes audited broker events to `audit_events`. */
export class AuditLog implements EventSink {
  readonly types = AUDITED;
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #logger: Logger;

  constructor(store: Store, clock: Clock, logger: Logger) {
    this.#store = store;
    this.#clock = clock;
    this.#logger = logger;
  }

  emit(event: BrokerEvent): void {
    const row = toAuditRow(event);
    if (!row) return;
    const e: AuditEvent = { ...row, atMs: this.#clock.now() };
    this.#store.transaction((tx) => tx.appendAudit(e))
      .catch((err: unknown) => this.#logger.warn({ err, event: e.event, clientId: e.clientId }, 'could not write audit event'));
  }
}
