// PgStore: the Store on PostgreSQL. Owns the pool, the migrations and the periodic clean-up;
// units of work go to the group-commit writer (group-commit.ts), which applies each batch through
// a PgBatchConnection (pg-connection.ts). Start-up reads are in load.ts.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import { StoreError, type AuditPage, type AuditQuery, type IdBlock, type StoredAccess, type StoredState, type Store, type UnitOfWork } from '../store.ts';
import { GroupCommitWriter } from './group-commit.ts';
import type { HotRowCounts } from './hot-statement.ts';
import { auditQuerySql, toAuditRecord } from './audit-query.ts';
import { loadAccess, loadState } from './load.ts';
import { PgBatchConnection } from './pg-connection.ts';

const migrationsFolder = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../migrations');

/** Lock id held while migrating, so two nodes starting together don't race. */
const MIGRATION_LOCK = 0x7465726e; // "tern"

/** Connection, group-commit and audit settings of a PgStore. */
export interface PgStoreOptions {
  url: string;
  logger: { info(o: object, m?: string): void; warn(o: object, m?: string): void; error(o: object, m?: string): void };
  poolSize?: number;
  /**
   * Hold a group commit that holds QoS 1 deliveries already sent up to this many milliseconds once
   * sealed (and while it waits for the commit before it), for the acknowledgements that cancel their rows.
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
  /** Told of each group commit written: its rows and its latency in milliseconds (metrics). Must not throw. */
  onCommit?: (rows: number, ms: number) => void;
}

/** Audit rows deleted per statement when pruning, so that pruning never holds long locks. */
const AUDIT_PRUNE_BATCH = 5000;
const AUDIT_PRUNE_EVERY_MS = 60 * 60_000;

/** Ids per block of the id_blocks sequence (its increment, migrations/0003). */
const ID_BLOCK = 1048576;

/** Seconds of silence on a PostgreSQL connection before TCP keepalive probes start. */
const KEEPALIVE_IDLE_MS = 10_000;

type Row = Record<string, unknown>;

/** int8 as a JS number (ids and epoch milliseconds fit in 53 bits). */
const types = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text'),
};

/** The Store on PostgreSQL (DESIGN.md §3, §4). */
export class PgStore implements Store {
  readonly kind = 'postgres';
  readonly #pool: pg.Pool;
  readonly #db: NodePgDatabase;
  readonly #logger: PgStoreOptions['logger'];
  readonly #writer: GroupCommitWriter;
  readonly #auditRetentionDays: number;
  readonly #commitTimeoutMs: number;
  #auditTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #gcTimer: NodeJS.Timeout | undefined;
  /** Pool clients connected and not yet closed, and who waits for none to be left. */
  #openClients = 0;
  #clientsClosed: (() => void) | undefined;
  /** Rows written by the hot statement (messages, delivery inserts, updates, deletes), for the close log. */
  readonly #hotRows: HotRowCounts = { messages: 0, inserted: 0, updated: 0, deleted: 0 };

  constructor(opts: PgStoreOptions) {
    this.#logger = opts.logger;
    this.#commitTimeoutMs = opts.commitTimeoutMs ?? 10_000;
    this.#auditRetentionDays = opts.auditRetentionDays ?? 90;
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
      this.#openClients++;
      client.on('error', (err) => this.#logger.warn({ err }, 'PostgreSQL connection failed'));
    });
    // Emitted once a client's connection has closed (pool.end() resolves before that)
    this.#pool.on('remove', () => {
      if (--this.#openClients === 0) this.#clientsClosed?.();
    });
    this.#db = drizzle({ client: this.#pool, casing: 'snake_case' });
    const batchOpts = { maxAuditDetailBytes: opts.maxAuditDetailBytes ?? 4096, counts: this.#hotRows };
    this.#writer = new GroupCommitWriter({
      connect: async () => new PgBatchConnection(await this.#pool.connect(), batchOpts),
      logger: this.#logger,
      holdMs: opts.commitHoldMs ?? 0,
      commitTimeoutMs: this.#commitTimeoutMs,
      maxBatchRows: opts.maxBatchRows ?? 10_000,
      maxBatchBytes: opts.maxBatchBytes ?? 16 * 1024 * 1024,
      ...(opts.onCommit === undefined ? {} : { onCommit: opts.onCommit }),
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
      // (A message stored inside its delivery's row has its id only in deliveries.message_id.)
      await client.query(`SELECT setval('id_blocks', x.m) FROM (SELECT GREATEST(
        (SELECT max(id) FROM messages), (SELECT max(id) FROM deliveries), (SELECT max(message_id) FROM deliveries),
        (SELECT max(message_id) FROM retained_messages)) AS m) x
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
    return this.#writer.healthy;
  }

  /** Commits performed and units committed (a batch that wrote nothing counts as a commit), for metrics and tests. */
  get commits(): number {
    return this.#writer.commits;
  }

  get units(): number {
    return this.#writer.units;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#gcTimer);
    clearInterval(this.#auditTimer);
    await this.#writer.close();
    // Ending a connection waits for the server's goodbye, which a server that stopped answering never sends
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      // The pool's end resolves once its clients are told to end, not once their connections are
      // closed: an embedded server stopped right after would still find them open and say so
      this.#pool.end().then(() => this.#allClientsClosed()).then(() => true),
      new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), this.#commitTimeoutMs); }),
    ]);
    clearTimeout(timer);
    if (!ended) this.#logger.warn({ timeoutMs: this.#commitTimeoutMs }, 'PostgreSQL connections did not close in time; left behind');
    const { commits, units, commitMs } = this.#writer;
    this.#logger.info({ commits, units, unitsPerCommit: commits ? +(units / commits).toFixed(1) : 0, commitMs: commits ? +(commitMs / commits).toFixed(2) : 0, rows: this.#hotRows }, 'PostgreSQL store closed');
  }

  /** Resolves once every client the pool connected has closed its connection. */
  #allClientsClosed(): Promise<void> {
    if (this.#openClients <= 0) return Promise.resolve();
    return new Promise((resolve) => { this.#clientsClosed = resolve; });
  }

  transaction(build: (tx: UnitOfWork) => void, fate?: object): Promise<void> {
    return this.#writer.submit(build, fate);
  }

  get backlogUnits(): number {
    return this.#writer.backlogUnits;
  }

  get backlogBytes(): number {
    return this.#writer.backlogBytes;
  }

  whenBacklogBelow(units: number, bytes: number): Promise<void> {
    return this.#writer.whenBacklogBelow(units, bytes);
  }

  loadAccess(): Promise<StoredAccess> {
    return loadAccess(this.#db);
  }

  load(): Promise<StoredState> {
    return loadState(this.#db);
  }

  async queryAudit(q: AuditQuery): Promise<AuditPage> {
    const { text, values } = auditQuerySql(q);
    let r: pg.QueryResult<Row>;
    try {
      r = await this.#boundedQuery(text, values);
    } catch (e) {
      throw new StoreError(`audit query failed: ${(e as Error).message}`, { cause: e });
    }
    const rows = r.rows.map(toAuditRecord);
    const more = rows.length > q.limit;
    if (more) rows.length = q.limit;
    return { rows, nextCursor: more ? rows.at(-1)!.id : undefined };
  }

  /**
   * Delete messages that no delivery references any more (retained copies are separate rows; a
   * message inside its delivery's row goes with that row).
   */
  async collectGarbage(): Promise<number> {
    const r = await this.#pool.query(`DELETE FROM messages m WHERE m.created_at_ms < $1
      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.message_payload IS NULL)`, [Date.now() - 60_000]);
    return r.rowCount ?? 0;
  }

  async reserveIds(): Promise<IdBlock> {
    // (int8, parsed as a number by the pool's type parser)
    const r = await this.#boundedQuery<{ first: number }>(`SELECT nextval('id_blocks') AS first`);
    return { first: r.rows[0]!.first, count: ID_BLOCK };
  }

  /**
   * A background statement (id blocks, audit pruning in batches) bounded by the commit
   * timeout: on a server that stopped answering it fails, and its connection is discarded, instead
   * of holding a pool slot until TCP keepalive gives up.
   */
  #boundedQuery<R extends pg.QueryResultRow = Row>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    return this.#pool.query<R>({ text, values, query_timeout: this.#commitTimeoutMs } as pg.QueryConfig);
  }

  /** Run a read-only query (audit, admin tools, tests). */
  async query(sql: string, params: unknown[] = []): Promise<Row[]> {
    return (await this.#pool.query(sql, params)).rows as Row[];
  }
}
