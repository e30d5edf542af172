// Prometheus metrics on a registry of their own: counters fed by broker events (an EventSink for
// the few rare events it needs), and values read at scrape time from the engine's plain counters,
// its sessions and the store. Nothing here runs per message: the hot path only bumps integers.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { EventType, type BrokerEvent, type EventSink, type Transport } from '../broker/events.ts';
import type { MessageStats, PerQos } from '../broker/stats.ts';
import { CommitStats } from './commit-stats.ts';

/** What is read at scrape time (main.ts wires the broker and the store in). */
export interface MetricsSource {
  /** The transport of each open client connection. */
  connectionTransports(): Iterable<Transport>;
  /** Sessions in every hub, connected or not. */
  sessionCount(): number;
  /** Deliveries queued (not yet sent) over every session. */
  queuedDeliveries(): number;
  /** The engine's message-flow counters. */
  stats(): Readonly<MessageStats>;
  store: { readonly healthy: boolean; readonly backlogUnits: number; readonly backlogBytes: number };
}

export interface MetricsOptions {
  /** Add prom-client's default process and Node.js metrics (process_*, nodejs_*); default true. */
  defaultMetrics?: boolean;
  /** Log lines dropped so far because stdout was not taking them (the LogSink's count). */
  logLinesDropped?: () => number;
}

const TRANSPORTS: readonly Transport[] = ['tcp', 'tls', 'ws', 'wss'];
const QOS = ['0', '1', '2'] as const;
/** Group-commit latency buckets (seconds): sub-millisecond to the default commit timeout. */
const COMMIT_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const COMMIT_ROWS_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

/** MQTT protocol label of a protocol level. */
function protocolLabel(version: number): string {
  return version === 5 ? '5.0' : version === 4 ? '3.1.1' : String(version);
}

/** A reason code as the spec writes it (0x87). */
function hex(code: number): string {
  return `0x${code.toString(16).padStart(2, '0')}`;
}

/** The broker's metrics; `scrape()` renders them in the Prometheus text format. */
export class Metrics implements EventSink {
  readonly types: readonly EventType[] = [EventType.Connect, EventType.ConnectRefused, EventType.UpgradeRefused];
  readonly registry = new Registry();
  #source: MetricsSource | undefined;
  readonly #loopDelay: IntervalHistogram;
  readonly #connects: Counter<'transport' | 'protocol'>;
  readonly #connectRefusals: Counter<'reason_code'>;
  readonly #upgradeRefusals: Counter<'status'>;
  readonly #commitSeconds: Histogram;
  readonly #commitRows: Histogram;

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    // `self` in collect callbacks: prom-client calls them with the metric as `this`
    const self = this;
    new Gauge({
      name: 'tern_connections', help: 'Open client connections, by transport.', labelNames: ['transport'], registers,
      collect() {
        const counts = new Map<Transport, number>(TRANSPORTS.map((t) => [t, 0]));
        for (const t of self.#source?.connectionTransports() ?? []) counts.set(t, (counts.get(t) ?? 0) + 1);
        for (const [transport, n] of counts) this.set({ transport }, n);
      },
    });
    new Gauge({
      name: 'tern_sessions', help: 'Sessions in every hub, connected or not.', registers,
      collect() { this.set(self.#source?.sessionCount() ?? 0); },
    });
    new Gauge({
      name: 'tern_queue_depth', help: 'Deliveries queued and not yet sent, over every session.', registers,
      collect() { this.set(self.#source?.queuedDeliveries() ?? 0); },
    });
    this.#connects = new Counter({ name: 'tern_connects_total', help: 'CONNECTs accepted, by transport and MQTT protocol version.', labelNames: ['transport', 'protocol'], registers });
    this.#connectRefusals = new Counter({ name: 'tern_connect_refusals_total', help: 'Connections refused at or before CONNACK, by reason code (MQTT 5 values).', labelNames: ['reason_code'], registers });
    this.#upgradeRefusals = new Counter({ name: 'tern_upgrade_refusals_total', help: 'WebSocket upgrades refused before any MQTT, by HTTP status.', labelNames: ['status'], registers });
    // (from the engine's counters: AccessDenied events are rate-limited per connection and lag behind)
    new Counter({
      name: 'tern_access_denied_total', help: 'PUBLISH and SUBSCRIBE requests refused by the authorizer, by action.', labelNames: ['action'], registers,
      collect() {
        const s = self.#source?.stats();
        this.reset();
        this.inc({ action: 'publish' }, s?.deniedPublish ?? 0);
        this.inc({ action: 'subscribe' }, s?.deniedSubscribe ?? 0);
      },
    });
    const logLinesDropped = opts.logLinesDropped;
    if (logLinesDropped) {
      new Counter({
        name: 'tern_log_lines_dropped_total', help: 'Log lines dropped because stdout was not taking them (its buffer was full, or its reader gone).', registers,
        collect() {
          this.reset();
          this.inc(logLinesDropped());
        },
      });
    }
    const perQos = (name: string, help: string, read: (s: Readonly<MessageStats>) => PerQos): void => {
      new Counter({
        name, help, labelNames: ['qos'], registers,
        collect() {
          const s = self.#source?.stats();
          this.reset();
          for (const q of QOS) this.inc({ qos: q }, s ? read(s)[Number(q)]! : 0);
        },
      });
    };
    perQos('tern_messages_received_total', 'PUBLISH packets received from clients, by QoS.', (s) => s.received);
    perQos('tern_bytes_received_total', 'Payload bytes of the PUBLISH packets received from clients, by QoS.', (s) => s.receivedBytes);
    perQos('tern_messages_sent_total', 'PUBLISH packets sent to clients (resends included), by the QoS delivered.', (s) => s.sent);
    perQos('tern_bytes_sent_total', 'Payload bytes of the PUBLISH packets sent to clients, by QoS.', (s) => s.sentBytes);
    new Counter({
      name: 'tern_messages_dropped_total', help: 'Deliveries dropped, by reason.', labelNames: ['reason'], registers,
      collect() {
        const s = self.#source?.stats();
        this.reset();
        this.inc({ reason: 'queue_overflow' }, s?.droppedQueueFull ?? 0);
        this.inc({ reason: 'client_buffer_full' }, s?.droppedQos0 ?? 0);
        this.inc({ reason: 'retained_too_large' }, s?.droppedRetainedTooLarge ?? 0);
      },
    });
    new Gauge({
      name: 'tern_store_backlog_units', help: 'Units of work submitted to the store and not yet committed or failed.', registers,
      collect() { this.set(self.#source?.store.backlogUnits ?? 0); },
    });
    new Gauge({
      name: 'tern_store_backlog_bytes', help: 'Payload bytes of the units of work in the store backlog.', registers,
      collect() { this.set(self.#source?.store.backlogBytes ?? 0); },
    });
    new Gauge({
      name: 'tern_store_healthy', help: '1 while store commits succeed, 0 while they fail.', registers,
      collect() { this.set(self.#source?.store.healthy === false ? 0 : 1); },
    });
    this.#commitSeconds = new Histogram({ name: 'tern_commit_seconds', help: 'PostgreSQL group-commit latency.', buckets: COMMIT_SECONDS_BUCKETS, registers });
    this.#commitRows = new Histogram({ name: 'tern_commit_batch_rows', help: 'Rows written per PostgreSQL group commit.', buckets: COMMIT_ROWS_BUCKETS, registers });
    const loopDelay = (this.#loopDelay = monitorEventLoopDelay({ resolution: 10 }));
    loopDelay.enable();
    new Gauge({
      name: 'tern_event_loop_lag_seconds', help: '99th percentile of the event loop delay since the previous scrape.', registers,
      collect() {
        // (NaN-free: an empty histogram reports 0)
        this.set(loopDelay.count > 0 ? loopDelay.percentile(99) / 1e9 : 0);
        loopDelay.reset();
      },
    });
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Start reading the engine and the store at scrape time (before this, their values read 0). */
  watch(source: MetricsSource): void {
    this.#source = source;
  }

  /** The latest group commits' figures (admin stats). */
  readonly commits = new CommitStats();

  /** The group-commit observer (PgStore `onCommit`): one batch of `rows` committed in `ms`. */
  readonly observeCommit = (rows: number, ms: number): void => {
    this.commits.record(rows, ms);
    this.#commitRows.observe(rows);
    this.#commitSeconds.observe(ms / 1000);
  };

  emit(event: BrokerEvent): void {
    switch (event.type) {
      case EventType.Connect:
        this.#connects.inc({ transport: event.transport, protocol: protocolLabel(event.protocolVersion) });
        break;
      case EventType.ConnectRefused:
        this.#connectRefusals.inc({ reason_code: hex(event.reasonCode) });
        break;
      case EventType.UpgradeRefused:
        this.#upgradeRefusals.inc({ status: String(event.status) });
        break;
      default:
        break; // (not among `types`)
    }
  }

  /** The content type of `scrape()`'s text (text/plain; version=0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in the Prometheus text exposition format. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /** Stop the event loop monitor (tests; the process exit does it otherwise). */
  close(): void {
    this.#loopDelay.disable();
  }
}
