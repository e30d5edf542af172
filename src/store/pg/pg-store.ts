// PgStore: the Store on PostgreSQL. One writer commits everything that accumulated while the
// previous commit was in flight as one transaction of multi-row (unnest) statements; each
// unit's promise resolves, in submission order, when its batch commits (DESIGN.md §4).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import type { Message, MessageProperties, ProtocolVersion, QoS } from '../../mqtt/packet.ts';
import {
  StoreError, type DeliveryRecord, type DeliveryState, type IdBlock, type SessionRecord, type StoredState, type Store,
  type SubscriptionRecord, type UnitOfWork, type WillRecord,
} from '../store.ts';
import { boolArray, numberArray, packBytes, textArray } from './arrays.ts';
import { Batch, isDeleted, RecordingUnit, replay, type UnitOp } from './batch.ts';

const migrationsFolder = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../migrations');

/** Lock id held while migrating, so two nodes starting together don't race. */
const MIGRATION_LOCK = 0x7465726e; // "tern"

export interface PgStoreOptions {
  url: string;
  logger: { info(o: object, m?: string): void; warn(o: object, m?: string): void; error(o: object, m?: string): void };
  poolSize?: number;
  /**
   * Hold a group commit up to this many milliseconds (counted from the first such delivery joining
   * it) while it holds QoS 1 deliveries already sent, whose acknowledgements cancel their rows.
   */
  commitHoldMs?: number;
  /**
   * A commit still unanswered after this many milliseconds is abandoned: its connection is
   * destroyed, its units fail and the store counts as unhealthy (default 10 s).
   */
  commitTimeoutMs?: number;
  /**
   * A group commit takes no more units once it changes this many rows or carries this many payload
   * bytes (the unit that crosses the cap is its last); later units wait for the next commit, in order.
   */
  maxBatchRows?: number;
  maxBatchBytes?: number;
  /** Audit rows older than this many days are deleted (hourly, in bounded batches); 0 keeps them (default 90). */
  auditRetentionDays?: number;
  /** An audit row's detail larger than this (JSON bytes) is replaced by a truncated copy with a marker (default 4096). */
  maxAuditDetailBytes?: number;
}

/** Audit rows deleted per statement when pruning, so that pruning never holds long locks. */
const AUDIT_PRUNE_BATCH = 5000;
const AUDIT_PRUNE_EVERY_MS = 60 * 60_000;

/** Ids per block of the id_blocks sequence (its increment, migrations/0003). */
const ID_BLOCK = 1048576;

/** Seconds of silence on a PostgreSQL connection before TCP keepalive probes start. */
const KEEPALIVE_IDLE_MS = 10_000;

type Row = Record<string, unknown>;

/** A unit of work waiting for its commit, with what it wrote (to commit it alone if need be). */
interface Waiter {
  ops: readonly UnitOp[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * SQLSTATE classes of errors caused by the rows written rather than by the connection or the
 * server's state: cardinality (21), data exception (22, e.g. U+0000 in text or jsonb), integrity
 * constraint (23), program limit exceeded (54, e.g. a key too long for its index).
 */
const DATA_ERROR_CLASSES = new Set(['21', '22', '23', '54']);

function isDataError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length === 5 && DATA_ERROR_CLASSES.has(code.slice(0, 2));
}

function toStoreError(e: unknown): StoreError {
  if (e instanceof StoreError) return e;
  const refused = isDataError(e);
  return new StoreError(`${refused ? 'rows refused' : 'commit failed'}: ${(e as Error).message}`, { cause: e, refused });
}

/** U+0000, which jsonb cannot store, in audit detail strings (they may quote what a client sent). */
const NUL = /\u0000/g;

/** The first `n` UTF-16 units of `s`, one fewer if the cut would split a surrogate pair (jsonb refuses a lone one). */
function cutBefore(s: string, n: number): string {
  const code = s.charCodeAt(n - 1);
  return s.slice(0, code >= 0xd800 && code <= 0xdbff ? n - 1 : n);
}

/**
 * An audit row's detail as jsonb text, at most `maxBytes` (not below ~64): a larger one is replaced by
 * `{"truncated": true, "bytes": <size of the full JSON>, "head": <its first characters>}`.
 */
export function auditDetailJson(detail: Record<string, unknown> | undefined, maxBytes: number): string | null {
  if (!detail) return null;
  const json = JSON.stringify(detail, (_k, v: unknown) => (typeof v === 'string' && v.includes('\u0000') ? v.replace(NUL, '\ufffd') : v));
  const bytes = Buffer.byteLength(json);
  if (bytes <= maxBytes) return json;
  // Cut by characters, then shortened until the escaped result fits
  let head = cutBefore(json, maxBytes);
  let out = JSON.stringify({ truncated: true, bytes, head });
  while (Buffer.byteLength(out) > maxBytes && head.length > 0) {
    head = cutBefore(head, Math.floor(head.length * 0.9));
    out = JSON.stringify({ truncated: true, bytes, head });
  }
  return out;
}

/** int8 as a JS number (ids and epoch milliseconds fit in 53 bits). */
const types = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text'),
};

/**
 * Message properties as jsonb text: correlation data base64-encoded, user properties as a list of
 * [key, value] pairs, since jsonb reorders an object's keys and their order must be kept
 * [MQTT-3.3.2-17/18] (a key given several times keeps its values' order too).
 */
function propsToJson(p: MessageProperties | undefined): string | null {
  if (!p) return null;
  let userProperties: Array<[string, string]> | undefined;
  if (p.userProperties) {
    userProperties = [];
    for (const [k, v] of Object.entries(p.userProperties)) {
      if (Array.isArray(v)) for (const x of v) userProperties.push([k, x]);
      else userProperties.push([k, v]);
    }
  }
  return JSON.stringify({ ...p, correlationData: p.correlationData?.toString('base64'), userProperties });
}

function propsFromJson(v: unknown): MessageProperties | undefined {
  if (v === null || v === undefined) return undefined;
  const o = v as Omit<MessageProperties, 'correlationData' | 'userProperties'> & {
    correlationData?: string; userProperties?: Array<[string, string]> | MessageProperties['userProperties'];
  };
  const out: MessageProperties = { ...o, correlationData: undefined, userProperties: undefined };
  if (o.correlationData !== undefined) out.correlationData = Buffer.from(o.correlationData, 'base64');
  else delete out.correlationData;
  if (Array.isArray(o.userProperties)) {
    const u: Record<string, string | string[]> = {};
    for (const [k, x] of o.userProperties) {
      const prev = u[k];
      u[k] = prev === undefined ? x : Array.isArray(prev) ? [...prev, x] : [prev, x];
    }
    out.userProperties = u;
  } else if (o.userProperties !== undefined) {
    out.userProperties = o.userProperties; // rows written before pairs were used
  } else {
    delete out.userProperties;
  }
  return out;
}

export class PgStore implements Store {
  readonly kind = 'postgres';
  readonly #pool: pg.Pool;
  readonly #logger: PgStoreOptions['logger'];
  #open: Batch = new Batch();
  #waiters: Waiter[] = [];
  /** Full batches waiting for the writer, oldest first (all older than `#open`). */
  readonly #sealed: Array<{ batch: Batch; waiters: Waiter[] }> = [];
  /** Units submitted and not settled yet, and the bytes they carry (Batch.bytes). */
  #backlogUnits = 0;
  #backlogBytes = 0;
  #drainWaiters: Array<{ units: number; bytes: number; resolve: () => void }> = [];
  readonly #maxBatchRows: number;
  readonly #maxBatchBytes: number;
  readonly #auditRetentionDays: number;
  readonly #maxAuditDetailBytes: number;
  #auditTimer: NodeJS.Timeout | undefined;
  #committing = false;
  #healthy = true;
  #closed = false;
  #gcTimer: NodeJS.Timeout | undefined;
  readonly #holdMs: number;
  readonly #commitTimeoutMs: number;
  /** Commits performed and units committed, for metrics and tests. */
  commits = 0;
  units = 0;
  #commitMs = 0;
  /** Rows written by the hot statement (messages, delivery inserts, updates, deletes), for the close log. */
  readonly #hotRows = { messages: 0, inserted: 0, updated: 0, deleted: 0 };

  constructor(opts: PgStoreOptions) {
    this.#logger = opts.logger;
    this.#holdMs = opts.commitHoldMs ?? 0;
    this.#commitTimeoutMs = opts.commitTimeoutMs ?? 10_000;
    this.#maxBatchRows = opts.maxBatchRows ?? 10_000;
    this.#maxBatchBytes = opts.maxBatchBytes ?? 16 * 1024 * 1024;
    this.#auditRetentionDays = opts.auditRetentionDays ?? 90;
    this.#maxAuditDetailBytes = opts.maxAuditDetailBytes ?? 4096;
    this.#pool = new pg.Pool({
      connectionString: opts.url, max: opts.poolSize ?? 4, types, connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 30_000, application_name: 'tern',
      // A server or network that vanished without a word is noticed by the kernel, not after ~15 min
      keepAlive: true, keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
    });
    // An idle client losing its server must not crash the process; the pool replaces it.
    this.#pool.on('error', (err) => this.#logger.warn({ err }, 'idle PostgreSQL connection failed'));
    // Nor may a checked-out one (a server restart in the middle of a commit): pg emits 'error' on
    // the client besides failing its query, and the pool listens only while the client is idle.
    this.#pool.on('connect', (client) => {
      client.on('error', (err) => this.#logger.warn({ err }, 'PostgreSQL connection failed'));
    });
  }

  /** Apply the migrations in migrations/ (idempotent; serialized across nodes by an advisory lock). */
  async open(): Promise<void> {
    const client = await this.#pool.connect().catch((e: unknown) => {
      throw new StoreError(`cannot connect to PostgreSQL: ${(e as Error).message}`, { cause: e });
    });
    try {
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      await migrate(drizzle({ client }), { migrationsFolder });
      // Ids counted past a block while PostgreSQL was unreachable (Broker.nextId) may have been
      // committed once it answered again: the next block starts above every stored id. Only ever
      // moves the sequence forward.
      await client.query(`SELECT setval('id_blocks', x.m) FROM (SELECT GREATEST(
        (SELECT max(id) FROM messages), (SELECT max(id) FROM deliveries), (SELECT max(message_id) FROM retained_messages)) AS m) x
        WHERE x.m >= (SELECT last_value FROM id_blocks)`);
    } catch (e) {
      throw new StoreError(`migration failed: ${(e as Error).message}`, { cause: e });
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
      client.release();
    }
    this.#gcTimer = setInterval(() => {
      this.collectGarbage().catch((err: unknown) => this.#logger.warn({ err }, 'message garbage collection failed'));
    }, 60_000);
    this.#gcTimer.unref();
    if (this.#auditRetentionDays > 0) {
      const prune = (): void => {
        this.pruneAudit().catch((err: unknown) => this.#logger.warn({ err }, 'audit pruning failed'));
      };
      prune();
      this.#auditTimer = setInterval(prune, AUDIT_PRUNE_EVERY_MS);
      this.#auditTimer.unref();
    }
  }

  /**
   * Delete audit rows older than the retention, `batchRows` at a time (each its own statement), until
   * none is left; resolves with the number deleted. A no-op when retention is off.
   */
  async pruneAudit(batchRows = AUDIT_PRUNE_BATCH): Promise<{ deleted: number; statements: number }> {
    let deleted = 0;
    let statements = 0;
    if (this.#auditRetentionDays <= 0) return { deleted, statements };
    for (;;) {
      const r = await this.#boundedQuery(`DELETE FROM audit_events WHERE id IN (
        SELECT id FROM audit_events WHERE at < now() - make_interval(days => $1) ORDER BY at LIMIT $2)`, [this.#auditRetentionDays, batchRows]);
      statements++;
      deleted += r.rowCount ?? 0;
      if ((r.rowCount ?? 0) < batchRows || this.#closed) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (deleted > 0) this.#logger.info({ deleted, retentionDays: this.#auditRetentionDays }, 'old audit rows deleted');
    return { deleted, statements };
  }

  get healthy(): boolean {
    return this.#healthy;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#gcTimer);
    clearInterval(this.#auditTimer);
    // (each commit is bounded by the commit timeout and each connection attempt by its own)
    while (this.#committing || this.#waiters.length > 0 || this.#sealed.length > 0) {
      if (!this.#committing) void this.#commit();
      await new Promise((r) => setTimeout(r, 5));
    }
    // Ending a connection waits for the server's goodbye, which a server that stopped answering never sends
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      this.#pool.end().then(() => true),
      new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), this.#commitTimeoutMs); }),
    ]);
    clearTimeout(timer);
    if (!ended) this.#logger.warn({ timeoutMs: this.#commitTimeoutMs }, 'PostgreSQL connections did not close in time; left behind');
    this.#logger.info({ commits: this.commits, units: this.units, unitsPerCommit: this.commits ? +(this.units / this.commits).toFixed(1) : 0, commitMs: this.commits ? +(this.#commitMs / this.commits).toFixed(2) : 0, rows: this.#hotRows }, 'PostgreSQL store closed');
  }

  transaction(build: (tx: UnitOfWork) => void): Promise<void> {
    if (this.#closed && !this.#committing && this.#waiters.length === 0 && this.#sealed.length === 0) {
      return Promise.reject(new StoreError('store is closed'));
    }
    if (this.#waiters.length > 0 && (this.#open.rows >= this.#maxBatchRows || this.#open.bytes >= this.#maxBatchBytes)) {
      // Full: it is committed as it is, and this unit starts the next batch
      this.#sealed.push({ batch: this.#open, waiters: this.#waiters });
      this.#open = new Batch();
      this.#waiters = [];
    }
    const open = this.#open;
    const bytesBefore = open.bytes;
    const unit = new RecordingUnit(open);
    build(unit);
    this.#backlogUnits++;
    this.#backlogBytes += open.bytes - bytesBefore;
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ ops: unit.ops, resolve, reject });
      if (!this.#committing) void this.#commit();
    });
  }

  get backlogUnits(): number {
    return this.#backlogUnits;
  }

  get backlogBytes(): number {
    return this.#backlogBytes;
  }

  whenBacklogBelow(units: number, bytes: number): Promise<void> {
    if (this.#backlogUnits <= units && this.#backlogBytes <= bytes) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push({ units, bytes, resolve }));
  }

  /** A batch settled (committed or failed): it leaves the backlog. */
  #settled(batch: Batch, waiters: readonly Waiter[]): void {
    this.#backlogUnits -= waiters.length;
    this.#backlogBytes -= batch.bytes;
    if (this.#drainWaiters.length === 0) return;
    const still: Array<{ units: number; bytes: number; resolve: () => void }> = [];
    for (const w of this.#drainWaiters) {
      if (this.#backlogUnits <= w.units && this.#backlogBytes <= w.bytes) w.resolve();
      else still.push(w);
    }
    this.#drainWaiters = still;
  }

  async #commit(): Promise<void> {
    this.#committing = true;
    while (this.#waiters.length > 0 || this.#sealed.length > 0) {
      // Let the event loop read what has arrived first: acknowledgements read now still cancel
      // their delivery rows inside this batch instead of costing a delete in the next one.
      await new Promise<void>((resolve) => setImmediate(resolve));
      let batch: Batch;
      let waiters: Waiter[];
      let full = this.#sealed.shift();
      if (!full) {
        await this.#hold(this.#open);
        // A unit that arrived during the hold may have sealed the held batch (it was full): that older
        // batch goes first, or a delete could commit before its insert
        full = this.#sealed.shift();
      }
      if (full) {
        ({ batch, waiters } = full);
      } else {
        batch = this.#open;
        waiters = this.#waiters;
        this.#open = new Batch();
        this.#waiters = [];
      }
      if (batch.isEmpty) {
        // e.g. every delivery acknowledged before the commit: nothing to write, no connection needed
        // (and it says nothing about the server)
        this.commits++;
        this.units += waiters.length;
        for (const w of waiters) w.resolve();
        this.#settled(batch, waiters);
        continue;
      }
      let client: pg.PoolClient;
      try {
        client = await this.#pool.connect();
      } catch (e) {
        this.#fail(waiters, e);
        this.#settled(batch, waiters);
        continue;
      }
      let broken = false;
      try {
        const t0 = performance.now();
        await this.#guard(client, this.#commitOn(client, batch, waiters));
        this.#commitMs += performance.now() - t0;
        this.#reachable();
      } catch (e) {
        // (data errors are settled in #commitOn; what reaches here is about the connection or server)
        broken = !isDataError(e);
        this.#fail(waiters, e);
      } finally {
        // A data error leaves the connection usable (its transaction was rolled back): keep it
        client.release(broken);
        this.#settled(batch, waiters);
      }
    }
    this.#committing = false;
  }

  /** Commit `batch` on `c` and settle its units; throws only what is not one unit's refused data. */
  async #commitOn(c: pg.PoolClient, batch: Batch, waiters: readonly Waiter[]): Promise<void> {
    try {
      await this.#apply(c, batch);
    } catch (e) {
      if (!isDataError(e)) throw e;
      if (waiters.length === 1) {
        this.#fail(waiters, e);
        return;
      }
      // One unit's rows refused (not a lost connection): that must not fail the other units with it
      await this.#isolate(c, waiters);
      return;
    }
    this.commits++;
    this.units += waiters.length;
    for (const w of waiters) w.resolve();
  }

  /**
   * Watchdog: `work` on `c`, abandoned after the commit timeout. A server or network that stopped
   * answering would otherwise hold the single writer (and every acknowledgement behind it) until
   * the kernel gives up on the socket.
   */
  #guard(c: pg.PoolClient, work: Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.#logger.error({ timeoutMs: this.#commitTimeoutMs }, 'commit timed out; its connection is abandoned');
        // Its pending query fails once the socket is gone; the client is then released as broken
        (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
        reject(new StoreError(`commit unanswered after ${this.#commitTimeoutMs} ms`));
      }, this.#commitTimeoutMs);
    });
    work.catch(() => undefined); // settled by the race below, or too late to matter
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
  }

  #reachable(): void {
    if (!this.#healthy) {
      this.#healthy = true;
      this.#logger.info({}, 'PostgreSQL reachable again; commits resumed');
    }
  }

  /**
   * While the batch holds QoS 1 deliveries already sent, wait (until the first of them is
   * `commitHoldMs` old at most) for their acknowledgements: each one that comes cancels an insert
   * and a later delete, and a batch whose deliveries were all acknowledged writes nothing at all.
   */
  async #hold(batch: Batch): Promise<void> {
    const remaining = this.#holdMs - (performance.now() - batch.firstCancellableAt);
    if (batch.cancellable === 0 || remaining <= 0 || this.#closed) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        batch.onAllCancelled = undefined;
        resolve();
      };
      const timer = setTimeout(done, remaining);
      batch.onAllCancelled = done;
    });
  }

  #fail(waiters: readonly Waiter[], e: unknown): void {
    if (isDataError(e)) {
      this.#logger.error({ err: e }, 'PostgreSQL refused the rows of a unit of work; that unit alone fails');
    } else if (this.#healthy) {
      this.#healthy = false;
      this.#logger.error({ err: e }, 'commit failed; acknowledgements are withheld until PostgreSQL answers again');
    }
    const err = toStoreError(e);
    for (const w of waiters) w.reject(err);
  }

  /**
   * PostgreSQL refused a batch because of the data of some unit (say a retained message whose topic
   * is too long for its index). Apply the units again in one transaction on the same connection,
   * bisecting with savepoints down to single units, so that only the offending units fail; the
   * others commit together and resolve, still in submission order. A failure of another kind on the
   * way rolls everything back and is thrown (the caller fails every unit, as a failed commit does).
   */
  async #isolate(c: pg.PoolClient, waiters: readonly Waiter[]): Promise<void> {
    const refused: Array<StoreError | undefined> = new Array(waiters.length);
    const applyRange = async (lo: number, hi: number): Promise<void> => {
      await c.query('SAVEPOINT unit');
      try {
        await this.#writeAll(c, replay(waiters.slice(lo, hi).map((w) => w.ops)));
        await c.query('RELEASE SAVEPOINT unit');
        return;
      } catch (e) {
        if (!isDataError(e)) throw e;
        await c.query('ROLLBACK TO SAVEPOINT unit; RELEASE SAVEPOINT unit');
        if (hi - lo === 1) {
          this.#logger.error({ err: e }, 'PostgreSQL refused the rows of a unit of work; that unit alone fails');
          refused[lo] = toStoreError(e);
          return;
        }
      }
      const mid = (lo + hi) >> 1;
      await applyRange(lo, mid);
      await applyRange(mid, hi);
    };
    await c.query('BEGIN');
    try {
      // (the whole range is known to fail: start with its halves)
      const mid = waiters.length >> 1;
      await applyRange(0, mid);
      await applyRange(mid, waiters.length);
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
    this.commits++;
    this.units += waiters.length;
    for (let i = 0; i < waiters.length; i++) {
      const err = refused[i];
      if (err) waiters[i]!.reject(err);
      else waiters[i]!.resolve();
    }
  }

  /** Write a non-empty batch in one transaction, on `c`; a failed transaction is rolled back (so `c` stays usable after a data error). */
  async #apply(c: pg.PoolClient, b: Batch): Promise<void> {
    if (!b.hasColdChanges) {
      // The common case, only messages and deliveries: one statement, one round trip, atomic
      await this.#writeHot(c, b);
      return;
    }
    await c.query('BEGIN');
    try {
      await this.#write(c, b);
      await this.#writeHot(c, b);
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  }

  /** Everything a batch changes, inside a transaction the caller opened. */
  async #writeAll(c: pg.PoolClient, b: Batch): Promise<void> {
    if (b.hasColdChanges) await this.#write(c, b);
    await this.#writeHot(c, b);
  }

  /** Messages, deliveries and inbound QoS 2 ids through tern_apply_hot (migrations/0002). */
  async #writeHot(c: pg.PoolClient, b: Batch): Promise<void> {
    if (b.deliveries.size === 0 && b.inboundQos2.size === 0) return; // messages are written only with a delivery
    const del: number[] = [];
    const ins: DeliveryRecord[] = [];
    const upd: Array<{ id: number; packetId: number; state: DeliveryState }> = [];
    for (const [id, ch] of b.deliveries) {
      if (ch.delete) del.push(id);
      else if (ch.insert) ins.push(ch.insert);
      else if (ch.update) upd.push({ id, ...ch.update });
    }
    // A message row only serves the deliveries inserted with it (every insert of a delivery comes
    // with its message): when all of them were acknowledged before this commit, skip the row.
    const ms: Message[] = [];
    if (b.messages.size > 0 && ins.length > 0) {
      const wanted = new Set<number>();
      for (const d of ins) wanted.add(d.messageId);
      for (const m of b.messages.values()) if (wanted.has(m.id)) ms.push(m);
    }
    if (ms.length === 0 && del.length === 0 && ins.length === 0 && upd.length === 0 && b.inboundQos2.size === 0) return;
    this.#hotRows.messages += ms.length;
    this.#hotRows.inserted += ins.length;
    this.#hotRows.updated += upd.length;
    this.#hotRows.deleted += del.length;
    const q = [...b.inboundQos2.values()];
    const qDel = q.filter((r) => !r.add);
    const qAdd = q.filter((r) => r.add);
    const payloads = packBytes(ms.map((m) => m.payload));
    await c.query(`SELECT tern_apply_hot($1::bigint[], $2::text[], $3::text[], $4::bytea, $5::int[], $6::smallint[], $7::bool[],
      $8::jsonb[], $9::bigint[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::text[], $15::text[], $16::bigint[],
      $17::smallint[], $18::bool[], $19::text[], $20::text[], $21::int[], $22::text[], $23::bigint[], $24::int[], $25::text[],
      $26::text[], $27::text[], $28::int[], $29::text[], $30::text[], $31::int[])`, [
      numberArray(ms.map((m) => m.id)), textArray(ms.map((m) => m.hub)), textArray(ms.map((m) => m.topicName)),
      payloads.bytes, payloads.lengths, numberArray(ms.map((m) => m.qos)), boolArray(ms.map((m) => m.retain)),
      textArray(ms.map((m) => propsToJson(m.properties))), numberArray(ms.map((m) => m.expiresAtMs)),
      textArray(ms.map((m) => m.publisherId)), numberArray(ms.map((m) => m.createdAtMs)),
      numberArray(del),
      numberArray(ins.map((d) => d.id)), textArray(ins.map((d) => d.hub)), textArray(ins.map((d) => d.clientId)),
      numberArray(ins.map((d) => d.messageId)), numberArray(ins.map((d) => d.qos)), boolArray(ins.map((d) => d.retain)),
      textArray(ins.map((d) => `{${d.subscriptionIds.join(',')}}`)), textArray(ins.map((d) => d.shareKey)),
      numberArray(ins.map((d) => d.packetId)), textArray(ins.map((d) => d.state)),
      numberArray(upd.map((u) => u.id)), numberArray(upd.map((u) => u.packetId)), textArray(upd.map((u) => u.state)),
      textArray(qDel.map((r) => r.hub)), textArray(qDel.map((r) => r.clientId)), numberArray(qDel.map((r) => r.packetId)),
      textArray(qAdd.map((r) => r.hub)), textArray(qAdd.map((r) => r.clientId)), numberArray(qAdd.map((r) => r.packetId)),
    ]);
  }

  /** Sessions, subscriptions, wills, retained messages and audit rows (rarer than messages). */
  async #write(c: pg.PoolClient, b: Batch): Promise<void> {
    if (b.deletedSessions.size > 0) {
      const hubs: string[] = [];
      const ids: string[] = [];
      for (const s of b.deletedSessions.values()) { hubs.push(s.hub); ids.push(s.clientId); }
      for (const table of ['sessions', 'subscriptions', 'wills', 'inbound_qos2', 'deliveries']) {
        await c.query(`DELETE FROM ${table} t USING unnest($1::text[], $2::text[]) AS d(hub, client_id)
          WHERE t.hub = d.hub AND t.client_id = d.client_id`, [hubs, ids]);
      }
    }
    if (b.sessions.size > 0) {
      const rows = [...b.sessions.values()];
      await c.query(`INSERT INTO sessions (hub, client_id, protocol_version, expiry_interval_sec, connected_at_ms, disconnected_at_ms, node_id)
        SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[])
        ON CONFLICT (hub, client_id) DO UPDATE SET protocol_version = excluded.protocol_version,
          expiry_interval_sec = excluded.expiry_interval_sec, connected_at_ms = excluded.connected_at_ms,
          disconnected_at_ms = excluded.disconnected_at_ms, node_id = excluded.node_id`, [
        rows.map((r) => r.hub), rows.map((r) => r.clientId), rows.map((r) => r.protocolVersion),
        rows.map((r) => r.expiryIntervalSec), rows.map((r) => r.connectedAtMs), rows.map((r) => r.disconnectedAtMs),
        rows.map((r) => r.nodeId),
      ]);
    }
    if (b.subscriptions.size > 0) {
      const all = [...b.subscriptions.values()];
      const del = all.filter(isDeleted) as Array<{ hub: string; clientId: string; topicFilter: string }>;
      const put = all.filter((x) => !isDeleted(x)) as SubscriptionRecord[];
      if (del.length) {
        await c.query(`DELETE FROM subscriptions t USING unnest($1::text[], $2::text[], $3::text[]) AS d(hub, client_id, f)
          WHERE t.hub = d.hub AND t.client_id = d.client_id AND t.topic_filter = d.f`,
        [del.map((r) => r.hub), del.map((r) => r.clientId), del.map((r) => r.topicFilter)]);
      }
      if (put.length) {
        await c.query(`INSERT INTO subscriptions (hub, client_id, topic_filter, qos, no_local, retain_as_published, retain_handling, subscription_id)
          SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::bool[], $6::bool[], $7::smallint[], $8::int[])
          ON CONFLICT (hub, client_id, topic_filter) DO UPDATE SET qos = excluded.qos, no_local = excluded.no_local,
            retain_as_published = excluded.retain_as_published, retain_handling = excluded.retain_handling,
            subscription_id = excluded.subscription_id`, [
          put.map((r) => r.hub), put.map((r) => r.clientId), put.map((r) => r.topicFilter), put.map((r) => r.qos),
          put.map((r) => r.noLocal), put.map((r) => r.retainAsPublished), put.map((r) => r.retainHandling),
          put.map((r) => r.subscriptionId ?? null),
        ]);
      }
    }
    if (b.wills.size > 0) {
      const all = [...b.wills.values()];
      const del = all.filter(isDeleted) as Array<{ hub: string; clientId: string }>;
      const put = all.filter((x) => !isDeleted(x)) as WillRecord[];
      if (del.length) {
        await c.query(`DELETE FROM wills t USING unnest($1::text[], $2::text[]) AS d(hub, client_id)
          WHERE t.hub = d.hub AND t.client_id = d.client_id`, [del.map((r) => r.hub), del.map((r) => r.clientId)]);
      }
      if (put.length) {
        // Payloads packed into one bytea sent as binary (a bytea[] would be spelled out in hex)
        const payloads = packBytes(put.map((w) => w.message.payload));
        await c.query(`INSERT INTO wills (hub, client_id, topic_name, payload, qos, retain, properties, delay_interval_sec, message_expiry_interval_sec, created_at_ms)
          SELECT u.hub, u.client_id, u.topic, substring($4::bytea FROM (u.off - u.len + 1)::int FOR u.len), u.qos, u.retain, u.props,
            u.delay, u.expiry, u.created
          FROM (
            SELECT t.*, sum(t.len) OVER (ORDER BY t.ord) AS off
            FROM unnest($1::text[], $2::text[], $3::text[], $5::int[], $6::smallint[], $7::bool[], $8::jsonb[], $9::bigint[], $10::bigint[], $11::bigint[])
              WITH ORDINALITY AS t(hub, client_id, topic, len, qos, retain, props, delay, expiry, created, ord)
          ) u
          ON CONFLICT (hub, client_id) DO UPDATE SET topic_name = excluded.topic_name, payload = excluded.payload,
            qos = excluded.qos, retain = excluded.retain, properties = excluded.properties,
            delay_interval_sec = excluded.delay_interval_sec, message_expiry_interval_sec = excluded.message_expiry_interval_sec,
            created_at_ms = excluded.created_at_ms`, [
          put.map((w) => w.hub), put.map((w) => w.clientId), put.map((w) => w.message.topicName), payloads.bytes, payloads.lengths,
          put.map((w) => w.message.qos), put.map((w) => w.message.retain), put.map((w) => propsToJson(w.message.properties)),
          put.map((w) => w.delayIntervalSec), put.map((w) => w.messageExpiryIntervalSec ?? null), put.map((w) => w.message.createdAtMs),
        ]);
      }
    }
    if (b.retained.size > 0) {
      const all = [...b.retained.values()];
      const del = all.filter(isDeleted) as Array<{ hub: string; topicName: string }>;
      const put = all.filter((x) => !isDeleted(x)) as Message[];
      if (del.length) {
        await c.query(`DELETE FROM retained_messages t USING unnest($1::text[], $2::text[]) AS d(hub, topic_name)
          WHERE t.hub = d.hub AND t.topic_name = d.topic_name`, [del.map((r) => r.hub), del.map((r) => r.topicName)]);
      }
      if (put.length) {
        const payloads = packBytes(put.map((m) => m.payload));
        await c.query(`INSERT INTO retained_messages (hub, topic_name, message_id, payload, qos, properties, expires_at_ms, publisher_id, created_at_ms)
          SELECT u.hub, u.topic, u.id, substring($4::bytea FROM (u.off - u.len + 1)::int FOR u.len), u.qos, u.props, u.expires,
            u.publisher, u.created
          FROM (
            SELECT t.*, sum(t.len) OVER (ORDER BY t.ord) AS off
            FROM unnest($1::text[], $2::text[], $3::bigint[], $5::int[], $6::smallint[], $7::jsonb[], $8::bigint[], $9::text[], $10::bigint[])
              WITH ORDINALITY AS t(hub, topic, id, len, qos, props, expires, publisher, created, ord)
          ) u
          ON CONFLICT (hub, topic_name) DO UPDATE SET message_id = excluded.message_id, payload = excluded.payload,
            qos = excluded.qos, properties = excluded.properties, expires_at_ms = excluded.expires_at_ms,
            publisher_id = excluded.publisher_id, created_at_ms = excluded.created_at_ms`, [
          put.map((m) => m.hub), put.map((m) => m.topicName), put.map((m) => m.id), payloads.bytes, payloads.lengths, put.map((m) => m.qos),
          put.map((m) => propsToJson(m.properties)), put.map((m) => m.expiresAtMs ?? null), put.map((m) => m.publisherId ?? null),
          put.map((m) => m.createdAtMs),
        ]);
      }
    }
    if (b.audit.length > 0) {
      const a = b.audit;
      await c.query(`INSERT INTO audit_events (at, hub, event, client_id, actor, remote_address, reason_code, detail)
        SELECT to_timestamp(d.ms / 1000.0), d.hub, d.event, d.client_id, d.actor, d.remote_address, d.reason_code, d.detail
        FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::jsonb[])
          AS d(ms, hub, event, client_id, actor, remote_address, reason_code, detail)`, [
        a.map((e) => e.atMs), a.map((e) => e.hub), a.map((e) => e.event), a.map((e) => e.clientId ?? null),
        a.map((e) => e.actor ?? null), a.map((e) => e.remoteAddress ?? null), a.map((e) => e.reasonCode ?? null),
        a.map((e) => auditDetailJson(e.detail, this.#maxAuditDetailBytes)),
      ]);
    }
  }

  async load(): Promise<StoredState> {
    const q = async (sql: string): Promise<Row[]> => (await this.#pool.query(sql)).rows as Row[];
    const [sessions, subs, deliveries, retained, wills, qos2] = await Promise.all([
      q('SELECT * FROM sessions'),
      q('SELECT * FROM subscriptions'),
      q('SELECT * FROM deliveries ORDER BY id'),
      q('SELECT * FROM retained_messages'),
      q('SELECT * FROM wills'),
      q('SELECT * FROM inbound_qos2'),
    ]);
    const messages = await q('SELECT * FROM messages m WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id)');
    const toMessage = (r: Row): Message => ({
      id: r['id'] as number, hub: r['hub'] as string, topicName: r['topic_name'] as string, payload: r['payload'] as Buffer,
      qos: r['qos'] as QoS, retain: r['retain'] as boolean, properties: propsFromJson(r['properties']),
      expiresAtMs: (r['expires_at_ms'] as number | null) ?? undefined, publisherId: (r['publisher_id'] as string | null) ?? undefined,
      createdAtMs: r['created_at_ms'] as number,
    });
    return {
      sessions: sessions.map((r): SessionRecord => ({
        hub: r['hub'] as string, clientId: r['client_id'] as string, protocolVersion: r['protocol_version'] as ProtocolVersion,
        expiryIntervalSec: r['expiry_interval_sec'] as number, connectedAtMs: r['connected_at_ms'] as number | null,
        disconnectedAtMs: r['disconnected_at_ms'] as number | null, nodeId: r['node_id'] as string,
      })),
      subscriptions: subs.map((r): SubscriptionRecord => ({
        hub: r['hub'] as string, clientId: r['client_id'] as string, topicFilter: r['topic_filter'] as string, qos: r['qos'] as QoS,
        noLocal: r['no_local'] as boolean, retainAsPublished: r['retain_as_published'] as boolean,
        retainHandling: r['retain_handling'] as 0 | 1 | 2, subscriptionId: (r['subscription_id'] as number | null) ?? undefined,
      })),
      messages: messages.map(toMessage),
      deliveries: deliveries.map((r): DeliveryRecord => ({
        id: r['id'] as number, hub: r['hub'] as string, clientId: r['client_id'] as string, messageId: r['message_id'] as number,
        qos: r['qos'] as QoS, retain: r['retain'] as boolean, subscriptionIds: r['subscription_ids'] as number[],
        shareKey: (r['share_key'] as string | null) ?? undefined, packetId: r['packet_id'] as number, state: r['state'] as DeliveryState,
      })),
      retained: retained.map((r) => toMessage({ ...r, id: r['message_id'], retain: true })),
      wills: wills.map((r): WillRecord => ({
        hub: r['hub'] as string, clientId: r['client_id'] as string, delayIntervalSec: r['delay_interval_sec'] as number,
        messageExpiryIntervalSec: (r['message_expiry_interval_sec'] as number | null) ?? undefined,
        message: toMessage({ ...r, id: 0, expires_at_ms: null, publisher_id: r['client_id'] }),
      })),
      inboundQos2: qos2.map((r) => ({ hub: r['hub'] as string, clientId: r['client_id'] as string, packetId: r['packet_id'] as number })),
    };
  }

  /** Delete messages that no delivery references any more (retained copies are separate rows). */
  async collectGarbage(): Promise<number> {
    const r = await this.#pool.query(`DELETE FROM messages m WHERE m.created_at_ms < $1
      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id)`, [Date.now() - 60_000]);
    return r.rowCount ?? 0;
  }

  async reserveIds(): Promise<IdBlock> {
    const r = await this.#boundedQuery(`SELECT nextval('id_blocks') AS first`);
    return { first: (r.rows[0] as Row)['first'] as number, count: ID_BLOCK };
  }

  /**
   * A background statement (id blocks, audit pruning in batches) bounded by the commit
   * timeout: on a server that stopped answering it fails, and its connection is discarded, instead
   * of holding a pool slot until TCP keepalive gives up.
   */
  #boundedQuery(text: string, values: unknown[] = []): Promise<pg.QueryResult> {
    return this.#pool.query({ text, values, query_timeout: this.#commitTimeoutMs } as pg.QueryConfig);
  }

  /** Run a read-only query (audit, admin tools, tests). */
  async query(sql: string, params: unknown[] = []): Promise<Row[]> {
    return (await this.#pool.query(sql, params)).rows as Row[];
  }
}
