// Group-commit compaction: the units of work that accumulated while the previous commit was in
// flight are folded into their net effect per row, so one transaction can apply them with a few
// multi-row statements in a fixed order. Pure; no SQL here.
import type { Message, QoS } from '../../mqtt/packet.ts';
import type {
  AuditEvent, DeliveryRecord, DeliveryState, HubSettingsRecord, PermissionRecord, PermissionSubjectKind, SessionRecord, SubscriptionRecord,
  UnitOfWork, WillRecord,
} from '../store.ts';

/** A change to grants or hub settings: rare (administration), so kept in call order and applied one by one. */
export type AccessChange =
  | { kind: 'grant'; record: PermissionRecord }
  | { kind: 'revoke'; hub: string; subjectKind: PermissionSubjectKind; subject: string; permission: string; target: string | null }
  | { kind: 'revokeAll'; hub: string; subjectKind: PermissionSubjectKind; subject: string }
  | { kind: 'hubSettings'; record: HubSettingsRecord };

const k2 = (hub: string, clientId: string): string => `${hub}\u0000${clientId}`;
const k3 = (hub: string, clientId: string, x: string | number): string => `${hub}\u0000${clientId}\u0000${x}`;

/** The subscription ids of a record that has none (shared; frozen: a push throws, typed number[] for DeliveryRecord). */
const NO_IDS: number[] = Object.freeze([]) as unknown as number[];

/**
 * A batch's own copy of a delivery record it writes, made with `new` (see QueuedDelivery in
 * broker/delivery.ts: records on the write path outlive a group commit, and object-literal sites
 * get pretenured by V8).
 */
class DeliveryRow implements DeliveryRecord {
  constructor(
    public id: number, public hub: string, public clientId: string, public messageId: number, public qos: QoS, public retain: boolean,
    public subscriptionIds: number[], public shareKey: string | undefined, public packetId: number, public state: DeliveryState,
    public sentAhead = false,
  ) {}

  /** A copy of `r` (its subscription ids too): what a batch writes does not change with `r`. */
  static copy(r: DeliveryRecord): DeliveryRow {
    const ids = r.subscriptionIds.length === 0 ? NO_IDS : r.subscriptionIds.slice();
    return new DeliveryRow(r.id, r.hub, r.clientId, r.messageId, r.qos, r.retain, ids, r.shareKey, r.packetId, r.state, r.sentAhead === true);
  }
}

/** What a batch does to one delivery row (a class: it lives until the commit; see QueuedDelivery). */
class DeliveryChange {
  insert: DeliveryRecord | undefined;
  /** The insert is of a QoS 1 delivery sent ahead of its commit: its PUBACK may cancel it first. */
  cancellable: boolean;
  update: { packetId: number; state: DeliveryState } | undefined = undefined;
  delete = false;

  constructor(insert: DeliveryRecord | undefined, cancellable: boolean) {
    this.insert = insert;
    this.cancellable = cancellable;
  }
}

/** The net effect of a batch of units of work. Apply in field order. */
export class Batch implements UnitOfWork {
  /** Sessions to delete with everything that belongs to them (before anything else). */
  readonly deletedSessions = new Map<string, { hub: string; clientId: string }>();
  readonly sessions = new Map<string, SessionRecord>();
  /** null: delete. */
  readonly subscriptions = new Map<string, SubscriptionRecord | { hub: string; clientId: string; topicFilter: string; deleted: true }>();
  readonly wills = new Map<string, WillRecord | { hub: string; clientId: string; deleted: true }>();
  readonly messages = new Map<number, Message>();
  readonly retained = new Map<string, Message | { hub: string; topicName: string; deleted: true }>();
  readonly deliveries = new Map<number, DeliveryChange>();
  /** The calls its units made, OP_SLOTS slots each (RecordingUnit), for `replay`. */
  readonly log: unknown[] = [];
  readonly inboundQos2 = new Map<string, { hub: string; clientId: string; packetId: number; add: boolean }>();
  readonly audit: AuditEvent[] = [];
  /** Grants, revocations and hub settings, in call order. */
  readonly access: AccessChange[] = [];
  /**
   * Rows to change so far (roughly: one per call, one per delivery; an insert cancelled by its
   * delete counts for neither), to cap a group commit.
   */
  rows = 0;
  /** Payload and topic bytes so far (UTF-16 code units for topics), to cap a group commit. */
  bytes = 0;
  /** Inserts of QoS 1 deliveries already sent, not yet cancelled by their acknowledgement. */
  cancellable = 0;
  /** Called when `cancellable` drops to 0 (the writer may be holding the batch for it). */
  onAllCancelled: (() => void) | undefined;
  /**
   * True while the writer holds this batch, sealed and not yet written, for acknowledgements: a
   * delete made in the batch after it cancels an insert of this one (`takeBack`).
   */
  holding = false;
  /** Inserts cancelled here by deletes of later batches while held, in order (replayed with its units). */
  readonly lateDeletes: number[] = [];
  /** The held batch this one was opened behind, whose inserts its deletes may cancel (cleared once that batch is written). */
  behind: Batch | undefined;
  /** Deletes of the unit being built that may cancel an insert of `behind` (endUnit decides). */
  readonly #mayTakeBack: number[] = [];

  putSession(s: SessionRecord): void {
    this.rows++;
    this.sessions.set(k2(s.hub, s.clientId), { ...s });
  }

  deleteSession(hub: string, clientId: string): void {
    this.rows++;
    const key = k2(hub, clientId);
    this.deletedSessions.set(key, { hub, clientId });
    // Earlier changes to this session in the batch are void; later ones apply after the delete.
    this.sessions.delete(key);
    const prefix = `${key}\u0000`;
    for (const k of this.subscriptions.keys()) if (k.startsWith(prefix)) this.subscriptions.delete(k);
    for (const k of this.inboundQos2.keys()) if (k.startsWith(prefix)) this.inboundQos2.delete(k);
    this.wills.delete(key);
    for (const [id, c] of this.deliveries) {
      if (c.insert && c.insert.hub === hub && c.insert.clientId === clientId) {
        this.deliveries.delete(id);
        if (c.cancellable) this.#cancelled();
      }
    }
  }

  #cancelled(): void {
    if (--this.cancellable === 0) this.onAllCancelled?.();
  }

  /** True if the batch changes more than messages, deliveries and inbound QoS 2 ids. */
  get hasColdChanges(): boolean {
    return this.retained.size > 0 || this.#hasOtherColdChanges;
  }

  /** True if the batch changes retained messages and nothing else (a message row alone is never written). */
  get onlyRetained(): boolean {
    return this.retained.size > 0 && !this.#hasOtherColdChanges && !this.#hasHotChanges;
  }

  /** True if applying the batch would change nothing (a message row alone is never written). */
  get isEmpty(): boolean {
    return !this.hasColdChanges && !this.#hasHotChanges;
  }

  /** Deliveries or inbound QoS 2 ids to write. */
  get #hasHotChanges(): boolean {
    return this.deliveries.size > 0 || this.inboundQos2.size > 0;
  }

  /** Cold changes other than retained messages. */
  get #hasOtherColdChanges(): boolean {
    return this.deletedSessions.size > 0 || this.sessions.size > 0 || this.subscriptions.size > 0 || this.wills.size > 0
      || this.audit.length > 0 || this.access.length > 0;
  }

  putSubscription(s: SubscriptionRecord): void {
    this.rows++;
    this.subscriptions.set(k3(s.hub, s.clientId, s.topicFilter), { ...s });
  }

  deleteSubscription(hub: string, clientId: string, topicFilter: string): void {
    this.rows++;
    this.subscriptions.set(k3(hub, clientId, topicFilter), { hub, clientId, topicFilter, deleted: true });
  }

  insertMessage(m: Message): void {
    this.rows++;
    this.bytes += m.payload.length + m.topicName.length;
    this.messages.set(m.id, m);
  }

  enqueueDeliveries(ds: DeliveryRecord[]): void {
    this.rows += ds.length;
    for (const d of ds) {
      const c = this.deliveries.get(d.id);
      if (c?.insert) continue;
      const cancellable = d.sentAhead === true;
      this.deliveries.set(d.id, new DeliveryChange(DeliveryRow.copy(d), cancellable));
      if (cancellable) this.cancellable++;
    }
  }

  updateDelivery(id: number, packetId: number, state: DeliveryState): void {
    this.rows++;
    const c = this.deliveries.get(id);
    if (c?.delete) return;
    if (c?.insert) {
      c.insert.packetId = packetId;
      c.insert.state = state;
    } else if (c) {
      c.update = { packetId, state };
    } else {
      const change = new DeliveryChange(undefined, false);
      change.update = { packetId, state };
      this.deliveries.set(id, change);
    }
  }

  deleteDelivery(id: number): void {
    const c = this.deliveries.get(id);
    if (c?.insert) {
      // Inserted and deleted in one batch: nothing to write (nor counted against the batch's cap:
      // a fan-out's acknowledgements would otherwise fill it with rows that are never written)
      this.deliveries.delete(id);
      this.rows--;
      if (c.cancellable) this.#cancelled();
      return;
    }
    this.rows++;
    const change = new DeliveryChange(undefined, false);
    change.delete = true;
    this.deliveries.set(id, change);
    // Maybe inserted by the held batch before this one: decided once the unit is complete (endUnit)
    if (c === undefined && this.behind?.holding === true) this.#mayTakeBack.push(id);
  }

  /**
   * A unit was built into this batch. If it did nothing but delete deliveries (acknowledgements,
   * expiry), each of its deletes of a delivery the held batch behind this one inserts cancels that
   * insert instead: neither row is written (the held batch is written before this one, so the net
   * effect is the same). A unit that also writes other rows keeps its deletes here, with the rest
   * of its rows: a shared-subscription handoff deletes one delivery and inserts another, and the two
   * must commit together, or a crash between two commits could leave the message with neither.
   */
  endUnit(onlyDeletes: boolean): void {
    if (this.#mayTakeBack.length === 0) return;
    if (onlyDeletes) {
      for (const id of this.#mayTakeBack) {
        if (this.deliveries.get(id)?.delete === true && this.behind?.takeBack(id) === true) {
          this.deliveries.delete(id);
          this.rows--;
        }
      }
    }
    this.#mayTakeBack.length = 0;
  }

  /**
   * While held: cancel the insert of delivery `id` here, for a delete made in a later batch; true
   * if there was one. Recorded in `lateDeletes`, so that a replay of this batch's units leaves it out too.
   */
  takeBack(id: number): boolean {
    if (!this.holding) return false;
    const c = this.deliveries.get(id);
    if (!c?.insert) return false;
    this.deliveries.delete(id);
    this.rows--;
    this.lateDeletes.push(id);
    if (c.cancellable) this.#cancelled();
    return true;
  }

  putRetained(m: Message): void {
    this.rows++;
    this.bytes += m.payload.length + m.topicName.length;
    this.retained.set(k2(m.hub, m.topicName), m);
  }

  deleteRetained(hub: string, topicName: string): void {
    this.rows++;
    this.bytes += topicName.length;
    this.retained.set(k2(hub, topicName), { hub, topicName, deleted: true });
  }

  putWill(w: WillRecord): void {
    this.rows++;
    this.bytes += w.message.payload.length + w.message.topicName.length;
    this.wills.set(k2(w.hub, w.clientId), { ...w });
  }

  deleteWill(hub: string, clientId: string): void {
    this.rows++;
    this.wills.set(k2(hub, clientId), { hub, clientId, deleted: true });
  }

  addInboundQos2(r: { hub: string; clientId: string; packetId: number }): void {
    this.rows++;
    this.inboundQos2.set(k3(r.hub, r.clientId, r.packetId), { ...r, add: true });
  }

  deleteInboundQos2(hub: string, clientId: string, packetId: number): void {
    this.rows++;
    this.inboundQos2.set(k3(hub, clientId, packetId), { hub, clientId, packetId, add: false });
  }

  appendAudit(e: AuditEvent): void {
    this.rows++;
    this.audit.push(e);
  }

  grantPermission(record: PermissionRecord): void {
    this.rows++;
    this.access.push({ kind: 'grant', record: { ...record } });
  }

  revokePermission(hub: string, subjectKind: PermissionSubjectKind, subject: string, permission: string, target: string | null): void {
    this.rows++;
    this.access.push({ kind: 'revoke', hub, subjectKind, subject, permission, target });
  }

  revokeAllPermissions(hub: string, subjectKind: PermissionSubjectKind, subject: string): void {
    this.rows++;
    this.access.push({ kind: 'revokeAll', hub, subjectKind, subject });
  }

  putHubSettings(record: HubSettingsRecord): void {
    this.rows++;
    this.access.push({ kind: 'hubSettings', record: { ...record } });
  }
}

/** True for the `{ deleted: true }` markers of a Batch. */
export function isDeleted(x: object): x is { deleted: true } {
  return (x as { deleted?: boolean }).deleted === true;
}

/** Slots per recorded call in a Batch's `log`: the method's name, then up to five arguments (undefined-padded). */
export const OP_SLOTS = 6;

/** The part of a batch's log one unit (or several joined ones) recorded: slots `start` to `end`. */
export interface LogRange {
  readonly start: number;
  readonly end: number;
}

/**
 * The unit of work handed to one `transaction` builder: applies each call to the shared batch and
 * records it in the batch's log, so that the unit can be applied again on its own (`replay`)
 * should PostgreSQL refuse the batch because of one unit's data. Arguments are kept by reference;
 * callers pass fresh records. (One flat log per batch, no array per call: the log lives until the
 * batch commits, and V8 pretenures array literals whose arrays survive: see QueuedDelivery.)
 */
export class RecordingUnit implements UnitOfWork {
  readonly #batch: Batch;

  constructor(batch: Batch) {
    this.#batch = batch;
  }

  #rec(name: keyof UnitOfWork, a?: unknown, b?: unknown, c?: unknown, d?: unknown, e?: unknown): void {
    this.#batch.log.push(name, a, b, c, d, e);
  }

  putSession(s: SessionRecord): void { this.#rec('putSession', s); this.#batch.putSession(s); }
  deleteSession(hub: string, clientId: string): void { this.#rec('deleteSession', hub, clientId); this.#batch.deleteSession(hub, clientId); }
  putSubscription(s: SubscriptionRecord): void { this.#rec('putSubscription', s); this.#batch.putSubscription(s); }
  deleteSubscription(hub: string, clientId: string, topicFilter: string): void {
    this.#rec('deleteSubscription', hub, clientId, topicFilter);
    this.#batch.deleteSubscription(hub, clientId, topicFilter);
  }
  insertMessage(m: Message): void { this.#rec('insertMessage', m); this.#batch.insertMessage(m); }
  enqueueDeliveries(ds: DeliveryRecord[]): void { this.#rec('enqueueDeliveries', ds); this.#batch.enqueueDeliveries(ds); }
  updateDelivery(id: number, packetId: number, state: DeliveryState): void {
    this.#rec('updateDelivery', id, packetId, state);
    this.#batch.updateDelivery(id, packetId, state);
  }
  deleteDelivery(id: number): void { this.#rec('deleteDelivery', id); this.#batch.deleteDelivery(id); }
  putRetained(m: Message): void { this.#rec('putRetained', m); this.#batch.putRetained(m); }
  deleteRetained(hub: string, topicName: string): void { this.#rec('deleteRetained', hub, topicName); this.#batch.deleteRetained(hub, topicName); }
  putWill(w: WillRecord): void { this.#rec('putWill', w); this.#batch.putWill(w); }
  deleteWill(hub: string, clientId: string): void { this.#rec('deleteWill', hub, clientId); this.#batch.deleteWill(hub, clientId); }
  addInboundQos2(r: { hub: string; clientId: string; packetId: number }): void { this.#rec('addInboundQos2', r); this.#batch.addInboundQos2(r); }
  deleteInboundQos2(hub: string, clientId: string, packetId: number): void {
    this.#rec('deleteInboundQos2', hub, clientId, packetId);
    this.#batch.deleteInboundQos2(hub, clientId, packetId);
  }
  appendAudit(e: AuditEvent): void { this.#rec('appendAudit', e); this.#batch.appendAudit(e); }
  grantPermission(r: PermissionRecord): void { this.#rec('grantPermission', r); this.#batch.grantPermission(r); }
  revokePermission(hub: string, kind: PermissionSubjectKind, subject: string, permission: string, target: string | null): void {
    this.#rec('revokePermission', hub, kind, subject, permission, target);
    this.#batch.revokePermission(hub, kind, subject, permission, target);
  }
  revokeAllPermissions(hub: string, kind: PermissionSubjectKind, subject: string): void {
    this.#rec('revokeAllPermissions', hub, kind, subject);
    this.#batch.revokeAllPermissions(hub, kind, subject);
  }
  putHubSettings(r: HubSettingsRecord): void { this.#rec('putHubSettings', r); this.#batch.putHubSettings(r); }
}

/**
 * A fresh batch holding the net effect of the units recorded in `log` at `ranges`, applied in
 * order, then of `lateDeletes` (inserts a held batch gave back to later deletes; those not among
 * the units delete nothing).
 */
export function replay(log: readonly unknown[], ranges: readonly LogRange[], lateDeletes: readonly number[] = []): Batch {
  const b = new Batch();
  for (const r of ranges) {
    for (let i = r.start; i < r.end; i += OP_SLOTS) {
      (b[log[i] as keyof UnitOfWork] as (...a: unknown[]) => void).call(b, log[i + 1], log[i + 2], log[i + 3], log[i + 4], log[i + 5]);
    }
  }
  for (const id of lateDeletes) {
    const c = b.deliveries.get(id);
    if (c?.insert) b.deleteDelivery(id);
  }
  return b;
}
