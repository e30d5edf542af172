// Shared subscriptions across sessions: when a session leaves, its queued shared deliveries (and
// QoS 1 ones in flight: a duplicate is allowed at QoS 1, a loss is not) move to other members of
// their groups, stored first; a failed store puts them back where they were.
import type { QoS } from '../mqtt/packet.ts';
import { QueuedDelivery, toDeliveryRecord, type Delivery } from './delivery.ts';
import type { IdSource } from './ids.ts';
import type { Logger, Store } from './ports.ts';
import { pickSharedMember } from './router.ts';
import type { Session } from './session.ts';

/** A queued or QoS 1 shared delivery that can go to another member. */
function isMovable(d: Delivery): boolean {
  return d.shareKey !== undefined && (d.state === 'queued' || d.qos === 1) && d.state !== 'pubrec';
}

/** Moves a leaving session's shared-subscription deliveries to other members of their groups. */
export class SharedHandoff {
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #ids: IdSource;

  constructor(store: Store, logger: Logger, ids: IdSource) {
    this.#store = store;
    this.#logger = logger;
    this.#ids = ids;
  }

  /** Hand `session`'s shared deliveries to other members of their groups. */
  redistribute(session: Session): void {
    const hub = session.hub;
    const candidates = session.outbox.select(isMovable);
    if (candidates.length === 0) return;
    const moved: Array<{ from: Delivery; to: Delivery; target: Session }> = [];
    for (const d of candidates) {
      const group = hub.sharedGroups.get(d.shareKey!);
      if (!group) continue;
      const member = pickSharedMember(group, session, d.qos);
      if (!member || !member.session.isConnected) continue;
      // [MQTT-4.8.2-3] the new member's granted QoS; [MQTT-3.3.1-12] [MQTT-3.3.1-13] its Retain As Published
      const to = new QueuedDelivery(
        this.#ids.next(), d.message, Math.min(d.message.qos, member.qos) as QoS, member.retainAsPublished && d.message.retain,
        member.subscriptionId !== undefined ? [member.subscriptionId] : undefined, d.shareKey,
      );
      moved.push({ from: d, to, target: member.session });
    }
    if (moved.length === 0) return;
    const queuedBefore = session.outbox.remove(new Set(moved.map((m) => m.from)));
    const apply = (): void => { for (const m of moved) m.target.outbox.enqueue(m.to); };
    const durable = moved.some((m) => m.target.persistent) || session.persistent;
    if (!durable) {
      apply();
      return;
    }
    this.#store.transaction((tx) => {
      for (const m of moved) {
        if (session.persistent) tx.deleteDelivery(m.from.id);
        if (m.target.persistent) {
          tx.insertMessage(m.to.message);
          tx.enqueueDeliveries([toDeliveryRecord(m.target, m.to)]);
        }
      }
    }).then(apply, (err: unknown) => {
      // Nothing of the move is stored: the rows are still the leaving session's, so the deliveries go back to it
      this.#logger.error({ err, clientId: session.clientId, deliveries: moved.length }, 'could not move shared deliveries; they stay with their session');
      if (!session.isCurrent) return; // the session has ended meanwhile
      session.outbox.putBack(moved.map((m) => m.from), queuedBefore);
    });
  }
}
