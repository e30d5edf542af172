// Connection: one per MQTT client socket. Owns the byte channel, the packet reader, output
// batching, the ordered reply chain and the network-level limits of the client; it is the
// session's SessionLink. Protocol decisions are in channel.ts and handlers/.
import { encodePacket, PacketReader, type ReadResult } from '../mqtt/codec.ts';
import { MqttError } from '../mqtt/errors.ts';
import type { OutboundPacket, ProtocolVersion } from '../mqtt/packet.ts';
import { ReasonCode, reasonCodeName } from '../mqtt/reason-code.ts';
import type { OutboundAliases } from '../mqtt/session-state.ts';
import { handleIn } from './channel.ts';
import type { ChannelHost, Connected, ConnectedSink, Engine, LinkSettings } from './context.ts';
import type { Delivery, EncodeCache } from './delivery.ts';
import { encodeDelivery } from './delivery-encoder.ts';
import { OrderedSteps } from './ordered-steps.ts';
import { EventType, type Transport } from './events.ts';
import type { AcceptInfo, ByteChannel, ChannelSink, Principal } from './ports.ts';
import type { Session } from './session.ts';
import type { SessionLink } from './session-link.ts';
import type { CloseReason } from './session-manager.ts';

/** What a connection needs from the broker that owns it. */
export interface ConnectionHost {
  readonly engine: Engine;
  /** The connection's socket is gone; `publishWill` unless the client's DISCONNECT discarded it. */
  connectionClosed(conn: Connection, publishWill: boolean): void;
}

let dirty: Connection[] = [];
let flushScheduled = false;

function flushAll(): void {
  flushScheduled = false;
  const list = dirty;
  dirty = [];
  for (const c of list) {
    // One connection's failure must not keep the rest of the turn's output from leaving
    try {
      c.flush();
    } catch (e) {
      c.abort(e);
    }
  }
}

/** One client network connection and its protocol-level connection state. */
export class Connection implements ChannelSink, ChannelHost, ConnectedSink, SessionLink {
  readonly engine: Engine;
  readonly #host: ConnectionHost;
  readonly channel: ByteChannel;
  readonly info: AcceptInfo;
  readonly reader: PacketReader;
  /** 'new' until CONNECT is accepted; 'closed' once ended. */
  state: 'new' | 'connected' | 'closed' = 'new';
  version: ProtocolVersion = 4;
  clientId = '';
  /** The attached session, once CONNECT is accepted. */
  session: Session | undefined = undefined;
  /** Who the client is, once CONNECT is accepted. */
  principal: Principal | undefined = undefined;
  // The rest of the Connected context lives here too: the connection is its own context (one object
  // less per client), handed to handlers typed as Connected once attached
  /** Inbound topic aliases (5.0), created on first use. */
  inboundAliases: Map<number, string> | undefined = undefined;
  /** Inbound QoS 1 publishes whose PUBACK is not written yet. */
  inboundQos1Pending = 0;
  denials: Connected['denials'] = undefined;
  /** Retained publishes refused for the hub's retained limits. */
  retainedRefusals = 0;
  keepAliveSec = 0;
  /** Time by which the next packet must arrive (connect timeout, then 1.5 × keep alive). */
  deadlineMs: number;
  /** Outbound QoS 1/2 window: min(client's Receive Maximum, broker's maxInflight). */
  sendQuota: number;
  clientMaxPacketBytes = Number.POSITIVE_INFINITY;
  outboundAliases: OutboundAliases | undefined;
  /** Client asked for reason strings and user properties on errors (5.0 Request Problem Information). */
  problemInformation = true;
  /** Why the connection ended, for the audit log. */
  closeReason: CloseReason | undefined;
  /** CONNECT has arrived (it may still be being decided). */
  connectSeen = false;
  /** Set by DISCONNECT 0x00 so that the will is discarded [MQTT-3.1.2-10]. */
  discardWill = false;
  #out: Buffer[] = [];
  #outBytes = 0;
  #dirty = false;
  readonly #steps = new OrderedSteps(this);
  #backpressured = false;
  /** Bytes received while the CONNECT is not yet decided. */
  #preConnectBytes = 0;

  constructor(host: ConnectionHost, channel: ByteChannel, info: AcceptInfo) {
    this.#host = host;
    this.engine = host.engine;
    this.channel = channel;
    this.info = info;
    const options = host.engine.options;
    this.reader = new PacketReader(options.maxPacketBytes);
    this.deadlineMs = host.engine.clock.now() + options.connectTimeoutMs;
    this.sendQuota = options.maxInflight;
    channel.sink = this;
  }

  /** The hub the transport put this connection in (as requested). */
  get hubName(): string {
    return this.info.hub;
  }

  get remoteAddress(): string {
    return this.channel.remoteAddress;
  }

  get transport(): Transport {
    return this.channel.transport;
  }

  get upgradeToken(): string | undefined {
    return this.info.upgradeToken;
  }

  get clientCertificate(): AcceptInfo['clientCertificate'] {
    return this.info.clientCertificate;
  }

  /** The Connected context (this connection) once a session is attached. */
  get connected(): Connected | undefined {
    return this.session === undefined ? undefined : (this as unknown as Connected);
  }

  /** ConnectedSink: replies go out through the connection itself. */
  get out(): this {
    return this;
  }

  /** Reading paused (or acknowledgements held) while the store catches up (PublishPath.throttleIfBehind). */
  readPaused = false;

  /**
   * Stop reading until `resumeReading`. A transport that cannot pause (uWS) gets its later replies
   * held instead, until `drained`: with its acknowledgements held a client stops at its window.
   */
  pauseReading(drained: Promise<void>): void {
    this.readPaused = true;
    if (this.channel.pauseReading) this.channel.pauseReading();
    else this.after(drained, () => undefined);
  }

  get canPauseReading(): boolean {
    return this.channel.pauseReading !== undefined;
  }

  resumeReading(): void {
    if (!this.readPaused) return;
    this.readPaused = false;
    // (keep-alive is not checked while paused: the client's PINGREQs were not read)
    if (this.keepAliveSec > 0) this.deadlineMs = this.engine.clock.now() + this.keepAliveSec * 1500;
    this.channel.resumeReading?.();
  }

  get isOpen(): boolean {
    return this.state !== 'closed';
  }

  /** SessionLink: deliveries may be sent (CONNACK is out and the connection is open). */
  get isReady(): boolean {
    return this.state === 'connected';
  }

  /** True while the transport holds more than the soft buffer limit. */
  get isBackpressured(): boolean {
    return this.#backpressured;
  }

  /** Output not yet taken by the client: queued for this turn's write plus the transport's buffer. */
  get pendingBytes(): number {
    return this.#outBytes + this.channel.bufferedBytes();
  }

  /** Apply the client's limits from its CONNECT (Connecting). */
  configure(settings: LinkSettings): void {
    this.keepAliveSec = settings.keepAliveSec;
    this.sendQuota = settings.sendQuota;
    this.clientMaxPacketBytes = settings.clientMaxPacketBytes;
    this.outboundAliases = settings.outboundAliases;
    this.problemInformation = settings.problemInformation;
  }

  /** The CONNECT is accepted: take the session and become connected (Connecting). */
  attach(session: Session, principal: Principal): Connected {
    this.session = session;
    this.principal = principal;
    session.attach(this);
    this.state = 'connected';
    if (this.keepAliveSec > 0) this.deadlineMs = this.engine.clock.now() + this.keepAliveSec * 1500;
    return this as unknown as Connected;
  }

  /** ChannelSink: bytes from the transport. */
  channelData(bytes: Buffer): void {
    if (this.state === 'closed') return;
    if (this.keepAliveSec > 0) this.deadlineMs = this.engine.clock.now() + this.keepAliveSec * 1500;
    if (this.state === 'new') {
      this.#preConnectBytes += bytes.length;
      if (this.#preConnectBytes > this.engine.options.maxPreConnectBytes) {
        this.#tooMuchBeforeConnect();
        return;
      }
    }
    try {
      this.reader.push(bytes, this.#onResult);
    } catch (e) {
      this.fail(e);
    }
  }

  readonly #onResult = (r: ReadResult): boolean => this.#onPacket(r);

  /** The client streamed more than the broker buffers before its CONNECT is decided. */
  #tooMuchBeforeConnect(): void {
    const { logger, options, hubs, events } = this.engine;
    logger.warn({ clientId: this.clientId || undefined, remoteAddress: this.remoteAddress, bytes: this.#preConnectBytes, limit: options.maxPreConnectBytes }, 'client sent too many bytes before its CONNECT was decided; connection closed');
    if (this.clientId) {
      events.emit({
        type: EventType.ConnectRefused, hub: hubs.key(this.info.hub), clientId: this.clientId, reasonCode: ReasonCode.QuotaExceeded,
        remoteAddress: this.remoteAddress, reason: 'too many bytes before CONNECT was decided', transport: this.transport, protocolVersion: this.version,
      });
    }
    this.end(ReasonCode.QuotaExceeded);
  }

  #onPacket(r: ReadResult): boolean {
    if (this.state === 'closed') return false;
    if (r.kind === 'unsupported-protocol') {
      // [MQTT-3.1.2-2] unsupported level: CONNACK 0x01 (3.1.1 format), then close
      this.write(Buffer.from([0x20, 0x02, 0x00, 0x01]));
      this.end(undefined);
      return false;
    }
    try {
      handleIn(this, r.packet);
    } catch (e) {
      this.fail(e);
      return false;
    }
    return this.isOpen;
  }

  /** End the connection because of an error: MqttError → DISCONNECT with its code (5.0). */
  fail(e: unknown): void {
    if (this.state === 'closed') return;
    if (e instanceof MqttError) {
      this.engine.logger.debug({ clientId: this.clientId, reasonCode: e.reasonCode, err: e.message }, 'protocol error');
      this.end(e.reasonCode, e.message);
    } else {
      this.engine.logger.error({ clientId: this.clientId, err: e }, 'connection failed');
      this.end(ReasonCode.UnspecifiedError);
    }
  }

  /**
   * End the connection at once because its transport failed (a write threw): nothing more is
   * written to it, its session is detached as after a network failure.
   */
  abort(e: unknown): void {
    if (this.state === 'closed') return;
    this.engine.logger.error({ clientId: this.clientId, err: e }, 'connection transport failed; connection closed');
    this.closeReason ??= { by: 'network' };
    this.state = 'closed';
    this.#out = [];
    this.#outBytes = 0;
    try {
      this.channel.close();
    } catch {
      // the transport is already failing; the connection is gone either way
    }
    this.#host.connectionClosed(this, !this.discardWill);
  }

  /** ChannelSink: the transport buffer drained. */
  channelDrain(): void {
    if (this.state === 'closed') return;
    if (this.channel.bufferedBytes() < this.engine.options.softBufferBytes) {
      this.#backpressured = false;
      this.connected?.session.outbox.pump();
    }
  }

  /** ChannelSink: the transport is gone. */
  channelClosed(): void {
    if (this.state === 'closed') return;
    this.closeReason ??= { by: 'network' };
    this.state = 'closed';
    this.#out = [];
    this.#host.connectionClosed(this, !this.discardWill);
  }

  /** Queue bytes for this event-loop turn's batched write. */
  write(bytes: Buffer): void {
    if (this.state === 'closed') return;
    this.#out.push(bytes);
    this.#outBytes += bytes.length;
    if (!this.#dirty) {
      this.#dirty = true;
      dirty.push(this);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushAll);
      }
    }
  }

  /** Write everything queued as one transport write. */
  flush(): void {
    this.#dirty = false;
    const out = this.#out;
    if (out.length === 0) return;
    const bytes = out.length === 1 ? out[0]! : Buffer.concat(out, this.#outBytes);
    this.#out = [];
    this.#outBytes = 0;
    const ok = this.channel.write(bytes);
    if (!ok || this.channel.bufferedBytes() > this.engine.options.softBufferBytes) this.#backpressured = true;
    // A retained replay continues once its previous page has been written (a transport that took
    // everything sends no drain event)
    else if (this.state === 'connected' && this.connected!.session.outbox.feed !== undefined) this.#continueFeed(this.connected!.session);
  }

  #continueFeed(session: Session): void {
    try {
      session.outbox.pump();
    } catch (e) {
      this.fail(e); // this connection only: the other connections of this turn still flush
    }
  }

  /** Encode and queue a packet now, bypassing the reply chain. */
  send(packet: OutboundPacket): void {
    const bytes = encodePacket(packet, this.version);
    if (bytes.length > this.clientMaxPacketBytes) {
      // [MQTT-3.1.2-24] never exceed the client's Maximum Packet Size: drop properties, else the packet
      if ('properties' in packet && packet.properties) {
        this.send({ ...packet, properties: undefined } as OutboundPacket);
      }
      return;
    }
    this.write(bytes);
  }

  /** True when no reply waits on an earlier commit: a reply sent now keeps packet order. */
  get repliesInOrder(): boolean {
    return this.#steps.idle;
  }

  /**
   * Run `fn` after every earlier ordered step and after `wait` settles, so that replies leave in
   * the order their packets arrived [MQTT-4.6.0-2] even when some wait for a commit. Once the
   * connection is closed the steps are skipped, unless `evenIfClosed` (work that must happen
   * whether or not the reply can still be sent, like handing a stored message to subscribers).
   */
  after(wait: Promise<unknown> | undefined, fn: () => void, onError?: (e: unknown) => void, evenIfClosed = false): void {
    this.#steps.add(wait, fn, onError, evenIfClosed);
  }

  /** Send a reply in packet order (see `after`). */
  reply(packet: OutboundPacket): void {
    this.after(undefined, () => this.send(packet));
  }

  /** SessionLink: PUBREL for an outbound QoS 2 delivery the client acknowledged with PUBREC. */
  release(packetId: number): void {
    this.send({ type: 'pubrel', packetId, reasonCode: 0 });
  }

  /** SessionLink: encode (or take from `cache`) and queue a PUBLISH; false if it exceeds the client's maximum packet size. */
  deliver(d: Delivery, dup: boolean, cache: EncodeCache | undefined): boolean {
    const bytes = encodeDelivery(d, dup, cache, this.version, this.outboundAliases, this.clientMaxPacketBytes, this.engine.clock);
    if (bytes === undefined) {
      // [MQTT-3.1.2-25] a message too large for the client is discarded as if delivered
      this.engine.logger.debug({ clientId: this.clientId, topicName: d.message.topicName }, 'message exceeds client maximum packet size; discarded');
      return false;
    }
    this.write(bytes);
    const stats = this.engine.stats;
    stats.sent[d.qos]++;
    stats.sentBytes[d.qos] += d.message.payload.length;
    return true;
  }

  /** ConnectedSink: the client's DISCONNECT; the will is discarded unless it asked for it [MQTT-3.1.2-10]. */
  closeByClient(reasonCode: number, discardWill: boolean): void {
    this.discardWill = discardWill;
    this.closeReason = { by: 'client', reasonCode };
    this.end(undefined);
  }

  /**
   * Close the connection. With a reason code on 5.0 after CONNECT, DISCONNECT goes out first
   * [MQTT-4.13.2-1]. The session is detached; its will follows the will rules.
   */
  end(reasonCode: ReasonCode | undefined, reason?: string): void {
    if (this.state === 'closed') return;
    this.closeReason ??= { by: 'server', reasonCode };
    const wasConnected = this.state === 'connected';
    const properties = reason && this.problemInformation ? { reasonString: reason } : undefined;
    if (reasonCode !== undefined && wasConnected && this.version === 5) {
      this.send({ type: 'disconnect', reasonCode, properties });
    } else if (reasonCode !== undefined && !wasConnected && this.reader.protocolVersion === 5 && reasonCode >= 0x80) {
      // [MQTT-3.2.2-?] before CONNACK, an error is reported with CONNACK and the reason code
      this.version = 5;
      this.send({ type: 'connack', sessionPresent: false, reasonCode, properties });
    }
    this.state = 'closed';
    this.flush();
    this.#out = [];
    this.channel.close();
    this.#host.connectionClosed(this, !this.discardWill);
    this.engine.logger.debug({ clientId: this.clientId, reasonCode, reason: reasonCode !== undefined ? reasonCodeName(reasonCode) : undefined }, 'connection ended by broker');
  }
}
