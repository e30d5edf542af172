// What protocol handlers see: the engine's operations (Engine), a connection's reply side
// (ReplySink), and the per-connection contexts before (Connecting) and after (Connected) CONNACK.
// Types only: handlers import this, never connection.ts or broker.ts.
import type { OutboundPacket, ProtocolVersion } from '../mqtt/packet.ts';
import type { ReasonCode } from '../mqtt/reason-code.ts';
import type { OutboundAliases } from '../mqtt/session-state.ts';
import type { EventBus, Transport } from './events.ts';
import type { Hubs } from './hub.ts';
import type { IdSource } from './ids.ts';
import type { BrokerOptions } from './options.ts';
import type { AcceptInfo, Authenticator, Authorizer, Clock, Logger, Principal } from './ports.ts';
import type { PublishPath, Throttleable } from './publish-path.ts';
import type { Session } from './session.ts';
import type { SessionManager } from './session-manager.ts';
import type { MessageStats } from './stats.ts';
import type { Subscriptions } from './subscriptions.ts';

/** The engine as handlers use it: its configuration, ports and operations. */
export interface Engine {
  readonly options: BrokerOptions;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly authenticator: Authenticator;
  readonly authorizer: Authorizer;
  readonly events: EventBus;
  /** Message-flow counters (plain numbers; the hot path only increments them). */
  readonly stats: MessageStats;
  readonly hubs: Hubs;
  readonly ids: IdSource;
  /** Route → commit → dispatch of messages. */
  readonly publishing: PublishPath;
  /** Open, detach and end sessions; inbound QoS 2 state. */
  readonly sessions: SessionManager;
  /** Subscribe and unsubscribe sessions (retained replay included). */
  readonly subscriptions: Subscriptions;
}

/** The reply side of a connection: packets out, in the order their requests arrived. */
export interface ReplySink {
  /** False once the connection is closed. */
  readonly isOpen: boolean;
  /** True when no reply waits on an earlier commit: a reply sent now keeps packet order. */
  readonly repliesInOrder: boolean;
  /** Encode and queue a packet now, bypassing the reply order. */
  send(packet: OutboundPacket): void;
  /** Send a packet in reply order. */
  reply(packet: OutboundPacket): void;
  /**
   * Run `fn` after every earlier ordered step and after `wait` settles, so that replies leave in
   * the order their packets arrived [MQTT-4.6.0-2]. Skipped once closed unless `evenIfClosed`.
   */
  after(wait: Promise<unknown> | undefined, fn: () => void, onError?: (e: unknown) => void, evenIfClosed?: boolean): void;
  /** Close; with a reason code, 5.0 clients get DISCONNECT (or CONNACK before CONNACK) first. */
  end(reasonCode: ReasonCode | undefined, reason?: string): void;
}

/** A connection once its CONNECT is accepted: the reply side, plus what PUBLISH and DISCONNECT need. */
export interface ConnectedSink extends ReplySink, Throttleable {
  /** The client sent DISCONNECT: close; `discardWill` unless it asked for the will (0x04). */
  closeByClient(reasonCode: number, discardWill: boolean): void;
}

/** Everything a handler of a packet after CONNECT sees. Session and principal are always there. */
export interface Connected {
  readonly version: ProtocolVersion;
  readonly clientId: string;
  readonly session: Session;
  readonly principal: Principal;
  readonly engine: Engine;
  readonly out: ConnectedSink;
  /** Inbound topic aliases (5.0), created on first use. */
  inboundAliases: Map<number, string> | undefined;
  /** Inbound QoS 1 publishes whose PUBACK is not written yet. */
  inboundQos1Pending: number;
  /** Retained publishes refused for the hub's retained limits (logged and audited first, then every 1000th). */
  retainedRefusals: number;
  /** Authorization denials not yet reported, and when the last report went out (created on the first denial). */
  denials: { unreported: number; lastReportMs: number } | undefined;
}

/** What the session's link is told at CONNACK: the client's limits from its CONNECT. */
export interface LinkSettings {
  keepAliveSec: number;
  /** Outbound QoS 1/2 window: min(client's Receive Maximum, broker's maxInflight). */
  sendQuota: number;
  clientMaxPacketBytes: number;
  outboundAliases: OutboundAliases | undefined;
  /** Client asked for reason strings and user properties on errors (5.0 Request Problem Information). */
  problemInformation: boolean;
}

/** A connection whose CONNECT is being decided (the CONNECT handler's view). */
export interface Connecting extends ReplySink {
  readonly engine: Engine;
  /** Protocol version of the CONNECT (set by the handler). */
  version: ProtocolVersion;
  /** Client id (set by the handler once known or assigned). */
  clientId: string;
  /** The hub the transport put the connection in (as requested; not normalized). */
  readonly hubName: string;
  readonly remoteAddress: string;
  readonly transport: Transport;
  /** Credentials that came with the WebSocket upgrade. */
  readonly upgradeToken: string | undefined;
  readonly clientCertificate: AcceptInfo['clientCertificate'];
  /** Apply the client's limits (before the session is opened: keep alive counts from now). */
  configure(settings: LinkSettings): void;
  /** The CONNECT is accepted: attach `session` and become connected (the caller sends CONNACK). */
  attach(session: Session, principal: Principal): Connected;
}

/** What the packet dispatcher needs from a connection. */
export interface ChannelHost extends Connecting {
  /** CONNECT has arrived (it may still be being decided). */
  connectSeen: boolean;
  /** 'new' until CONNECT is accepted; 'closed' once ended. */
  readonly state: 'new' | 'connected' | 'closed';
  /** The connected context; set once CONNECT is accepted. */
  readonly connected: Connected | undefined;
}
