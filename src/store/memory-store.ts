// MemoryStore: the reference Store, kept in process memory. Used by unit tests and as the
// start-up default until a database is configured; "durable" only for the life of the process.
import type { Message } from '../mqtt/packet.ts';
import type {
  AuditEvent, AuditPage, AuditQuery, AuditRecord, DeliveryRecord, DeliveryState, HubSettingsRecord, IdBlock, InboundQos2Record, PermissionRecord, SessionRecord, StoredAccess,
  StoredState, Store, SubscriptionRecord, UnitOfWork, WillRecord,
} from './store.ts';

const key = (hub: string, id: string): string => `${hub}\u0000${id}`;
const MAX_AUDIT_EVENTS = 10_000;
/** Ids per `reserveIds` block. */
const ID_BLOCK = 1 << 20;

/** In-process Store; units of work submitted in one tick commit together. */
export class MemoryStore implements Store {
  readonly kind = 'memory';
  readonly healthy = true;
  readonly #sessions = new Map<string, SessionRecord>();
  readonly #subscriptions = new Map<string, Map<string, SubscriptionRecord>>();
  readonly #messages = new Map<number, Message>();
  readonly #deliveries = new Map<number, DeliveryRecord>();
  readonly #retained = new Map<string, Message>();
  readonly #wills = new Map<string, WillRecord>();
  readonly #inboundQos2 = new Map<string, Set<number>>();
  readonly #permissions: PermissionRecord[] = [];
  readonly #hubSettings = new Map<string, HubSettingsRecord>();
  /** Deliveries and retained entries referencing each message. */
  readonly #refs = new Map<number, number>();
  #pending: Array<{ ops: Array<() => void>; resolve: () => void }> = [];
  #scheduled = false;
  /** The audit trail, oldest first. */
  readonly auditEvents: AuditEvent[] = [];
  /** Each audit event's id (ordering the trail for queryAudit), kept beside the events as they are. */
  readonly #auditIds = new WeakMap<AuditEvent, number>();
  #auditSeq = 0;
  /** Number of commits performed (each may hold many units of work). */
  commits = 0;

  #nextIdBlock = 1;

  async open(): Promise<void> {}

  get backlogUnits(): number {
    return this.#pending.length;
  }

  /** (payload bytes are not counted here: units commit within the turn that submitted them) */
  readonly backlogBytes = 0;

  async whenBacklogBelow(): Promise<void> {
    while (this.#pending.length > 0) await new Promise<void>((r) => queueMicrotask(r));
  }

  async reserveIds(): Promise<IdBlock> {
    const first = this.#nextIdBlock;
    this.#nextIdBlock += ID_BLOCK;
    return { first, count: ID_BLOCK };
  }
  async close(): Promise<void> {}

  async load(): Promise<StoredState> {
    const subscriptions: SubscriptionRecord[] = [];
    for (const m of this.#subscriptions.values()) for (const s of m.values()) subscriptions.push({ ...s });
    const inboundQos2: InboundQos2Record[] = [];
    for (const [k, ids] of this.#inboundQos2) {
      const [hub, clientId] = k.split('\u0000') as [string, string];
      for (const packetId of ids) inboundQos2.push({ hub, clientId, packetId });
    }
    const referenced = new Set<number>();
    for (const d of this.#deliveries.values()) referenced.add(d.messageId);
    return {
      sessions: [...this.#sessions.values()].map((s) => ({ ...s })),
      subscriptions,
      messages: [...this.#messages.values()].filter((m) => referenced.has(m.id)),
      deliveries: [...this.#deliveries.values()].map((d) => ({ ...d, subscriptionIds: [...d.subscriptionIds] })),
      retained: [...this.#retained.values()],
      wills: [...this.#wills.values()].map((w) => ({ ...w })),
      inboundQos2,
    };
  }

  async loadAccess(): Promise<StoredAccess> {
    return { permissions: this.#permissions.map((p) => ({ ...p })), hubSettings: [...this.#hubSettings.values()].map((h) => ({ ...h })) };
  }

  async queryAudit(q: AuditQuery): Promise<AuditPage> {
    const rows: AuditRecord[] = [];
    for (let i = this.auditEvents.length - 1; i >= 0 && rows.length <= q.limit; i--) {
      const e = this.auditEvents[i]!;
      const id = this.#auditIds.get(e)!;
      if (q.beforeId !== undefined && id >= q.beforeId) continue;
      if (q.fromMs !== undefined && e.atMs < q.fromMs) continue;
      if (q.toMs !== undefined && e.atMs >= q.toMs) continue;
      if ((q.hub !== undefined && e.hub !== q.hub) || (q.clientId !== undefined && e.clientId !== q.clientId)
        || (q.actor !== undefined && e.actor !== q.actor) || (q.event !== undefined && e.event !== q.event)) continue;
      rows.push(e.detail ? { ...e, id, detail: { ...e.detail } } : { ...e, id });
    }
    // One row past the limit says whether another page may follow
    const more = rows.length > q.limit;
    if (more) rows.length = q.limit;
    return { rows, nextCursor: more ? rows.at(-1)!.id : undefined };
  }

  transaction(build: (tx: UnitOfWork) => void): Promise<void> {
    const ops: Array<() => void> = [];
    build(this.#unitOfWork(ops));
    return new Promise<void>((resolve) => {
      this.#pending.push({ ops, resolve });
      if (!this.#scheduled) {
        this.#scheduled = true;
        queueMicrotask(() => this.#commit());
      }
    });
  }

  #commit(): void {
    const batch = this.#pending;
    this.#pending = [];
    this.#scheduled = false;
    this.commits++;
    for (const unit of batch) for (const op of unit.ops) op();
    for (const unit of batch) unit.resolve();
  }

  #unitOfWork(ops: Array<() => void>): UnitOfWork {
    return {
      putSession: (s) => ops.push(() => this.#sessions.set(key(s.hub, s.clientId), { ...s })),
      deleteSession: (hub, clientId) => ops.push(() => this.#deleteSession(hub, clientId)),
      putSubscription: (s) => ops.push(() => {
        const k = key(s.hub, s.clientId);
        let m = this.#subscriptions.get(k);
        if (!m) this.#subscriptions.set(k, (m = new Map()));
        m.set(s.topicFilter, { ...s });
      }),
      deleteSubscription: (hub, clientId, topicFilter) => ops.push(() => {
        this.#subscriptions.get(key(hub, clientId))?.delete(topicFilter);
      }),
      insertMessage: (m) => ops.push(() => { if (!this.#messages.has(m.id)) this.#messages.set(m.id, m); }),
      enqueueDeliveries: (ds) => ops.push(() => {
        for (const d of ds) {
          if (this.#deliveries.has(d.id)) continue;
          this.#deliveries.set(d.id, { ...d, subscriptionIds: [...d.subscriptionIds] });
          this.#ref(d.messageId, 1);
        }
      }),
      updateDelivery: (id: number, packetId: number, state: DeliveryState) => ops.push(() => {
        const d = this.#deliveries.get(id);
        if (d) { d.packetId = packetId; d.state = state; }
      }),
      deleteDelivery: (id) => ops.push(() => this.#deleteDelivery(id)),
      putRetained: (m) => ops.push(() => {
        const k = key(m.hub, m.topicName);
        const previous = this.#retained.get(k);
        this.#retained.set(k, m);
        this.#ref(m.id, 1);
        if (previous) this.#ref(previous.id, -1);
      }),
      deleteRetained: (hub, topicName) => ops.push(() => {
        const k = key(hub, topicName);
        const previous = this.#retained.get(k);
        if (!previous) return;
        this.#retained.delete(k);
        this.#ref(previous.id, -1);
      }),
      putWill: (w) => ops.push(() => this.#wills.set(key(w.hub, w.clientId), { ...w })),
      deleteWill: (hub, clientId) => ops.push(() => { this.#wills.delete(key(hub, clientId)); }),
      addInboundQos2: (r) => ops.push(() => {
        const k = key(r.hub, r.clientId);
        let s = this.#inboundQos2.get(k);
        if (!s) this.#inboundQos2.set(k, (s = new Set()));
        s.add(r.packetId);
      }),
      deleteInboundQos2: (hub, clientId, packetId) => ops.push(() => {
        this.#inboundQos2.get(key(hub, clientId))?.delete(packetId);
      }),
      appendAudit: (e) => ops.push(() => {
        const row = { ...e };
        this.#auditIds.set(row, ++this.#auditSeq);
        this.auditEvents.push(row);
        // Memory mode keeps only the most recent events
        if (this.auditEvents.length > MAX_AUDIT_EVENTS) this.auditEvents.splice(0, this.auditEvents.length - MAX_AUDIT_EVENTS);
      }),
      grantPermission: (r) => ops.push(() => {
        const same = this.#permissions.some((p) => p.hub === r.hub && p.subjectKind === r.subjectKind && p.subject === r.subject
          && p.permission === r.permission && p.target === r.target);
        if (!same) this.#permissions.push({ ...r });
      }),
      revokePermission: (hub, kind, subject, permission, target) => ops.push(() => {
        this.#removePermissions((p) => p.hub === hub && p.subjectKind === kind && p.subject === subject && p.permission === permission && p.target === target);
      }),
      revokeAllPermissions: (hub, kind, subject) => ops.push(() => {
        this.#removePermissions((p) => p.hub === hub && p.subjectKind === kind && p.subject === subject);
      }),
      putHubSettings: (r) => ops.push(() => { this.#hubSettings.set(r.hub, { ...r }); }),
    };
  }

  #removePermissions(match: (p: PermissionRecord) => boolean): void {
    for (let i = this.#permissions.length - 1; i >= 0; i--) if (match(this.#permissions[i]!)) this.#permissions.splice(i, 1);
  }

  #deleteSession(hub: string, clientId: string): void {
    const k = key(hub, clientId);
    this.#sessions.delete(k);
    this.#subscriptions.delete(k);
    this.#wills.delete(k);
    this.#inboundQos2.delete(k);
    for (const d of [...this.#deliveries.values()]) {
      if (d.hub === hub && d.clientId === clientId) this.#deleteDelivery(d.id);
    }
  }

  /** Count references (deliveries, retained entries) to a message; at zero it is garbage. */
  #ref(messageId: number, delta: number): void {
    const refs = (this.#refs.get(messageId) ?? 0) + delta;
    if (refs > 0) {
      this.#refs.set(messageId, refs);
    } else {
      this.#refs.delete(messageId);
      this.#messages.delete(messageId);
    }
  }

  #deleteDelivery(id: number): void {
    const d = this.#deliveries.get(id);
    if (!d) return;
    this.#deliveries.delete(id);
    this.#ref(d.messageId, -1);
  }
}
