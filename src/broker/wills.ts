// Wills (MQTT 5 §3.1.2.5, §3.1.3.2): the will record taken from CONNECT, its publication at
// disconnection + Will Delay Interval (a stored time, so it holds across restarts), or sooner when
// the session ends. A will is published through the publish path like any message.
import { compactProperties } from '../mqtt/codec.ts';
import type { ConnectPacket, Message } from '../mqtt/packet.ts';
import type { IdSource } from './ids.ts';
import { wakeAt, type Clock, type Logger, type WillRecord } from './ports.ts';
import type { PublishPath } from './publish-path.ts';
import type { Session } from './session.ts';

/** Schedules and publishes sessions' wills. */
export class Wills {
  readonly #publishing: PublishPath;
  readonly #ids: IdSource;
  readonly #clock: Clock;
  readonly #logger: Logger;

  constructor(publishing: PublishPath, ids: IdSource, clock: Clock, logger: Logger) {
    this.#publishing = publishing;
    this.#ids = ids;
    this.#clock = clock;
    this.#logger = logger;
  }

  /** The will of a CONNECT that has one, as stored. */
  record(hub: string, clientId: string, packet: ConnectPacket): WillRecord | undefined {
    const will = packet.will;
    if (!will) return undefined;
    const props = will.properties;
    const message: Message = {
      id: 0, hub, topicName: will.topicName, payload: will.payload, qos: will.qos,
      retain: will.retain, properties: compactProperties(props), publisherId: clientId, createdAtMs: this.#clock.now(),
    };
    return { hub, clientId, message, delayIntervalSec: props?.willDelayInterval ?? 0, messageExpiryIntervalSec: props?.messageExpiryInterval };
  }

  /**
   * [MQTT-3.1.3-9] publish the will at disconnectedAtMs + its Will Delay Interval, or when the
   * session ends if that is sooner (SessionManager.end). Computed from the stored time.
   */
  schedule(session: Session): void {
    const will = session.will;
    if (!will) return;
    this.cancel(session);
    const clock = this.#clock;
    const atMs = (session.disconnectedAtMs ?? clock.now()) + will.delayIntervalSec * 1000;
    if (atMs <= clock.now()) {
      this.publish(session);
      return;
    }
    session.willTimer = wakeAt(clock, atMs, () => {
      session.willTimer = undefined;
      if (!session.isConnected) this.publish(session);
    });
  }

  /** Stop waiting to publish the session's will (it stays the session's). */
  cancel(session: Session): void {
    session.willTimer?.cancel();
    session.willTimer = undefined;
  }

  /** Publish and forget the session's will. */
  publish(session: Session): void {
    const will = session.will;
    if (!will) return;
    session.will = undefined;
    this.cancel(session);
    const now = this.#clock.now();
    const message: Message = {
      ...will.message, id: this.#ids.next(), createdAtMs: now,
      expiresAtMs: will.messageExpiryIntervalSec ? now + will.messageExpiryIntervalSec * 1000 : undefined,
    };
    if (message.retain && this.#publishing.isOverRetainedCaps(message)) {
      // The will is still published, but not kept: the hub's retained caps hold for wills too
      message.retain = false;
      this.#logger.info({ clientId: session.clientId, hub: session.hub.name, topicName: message.topicName }, 'retained will published without retain: hub retained limit reached');
    }
    const persistent = session.persistent;
    this.#publishing.publish(message, persistent ? (tx) => tx.deleteWill(session.hub.name, session.clientId) : undefined)
      .catch((err: unknown) => this.#logger.error({ err, clientId: session.clientId }, 'could not publish will'));
  }
}
