// The group-commit writer (DESIGN.md §4): units of work accumulate in an open batch while the
// previous commit is in flight; one commit at a time, each batch in one transaction, a batch with
// QoS 1 deliveries sent ahead sealed and held for their acknowledgements, each unit's promise
// settled in submission order. No SQL here: it drives the BatchConnection it is given.
import { StoreError, type UnitOfWork } from '../store.ts';
import { Batch, OP_SLOTS, RecordingUnit, type LogRange } from './batch.ts';
import { isolateRefused, type SavepointConnection } from './refused-units.ts';
import { isDataError, toStoreError } from './sqlstate.ts';

/** One database connection checked out for one batch (PostgreSQL in production, a fake in tests). */
export interface BatchConnection extends SavepointConnection {
  /**
   * Write a non-empty batch in one transaction; a failed one is rolled back, so the connection stays
   * usable after a data error.
   */
  apply(batch: Batch): Promise<void>;
  /** The watchdog gave up on this connection: end it now, so that its pending statement fails. */
  abandon(): void;
  /** Hand the connection back; a `broken` one is discarded. */
  release(broken: boolean): void;
}

/** A cancellable timer. */
export interface WriterTimer {
  cancel(): void;
}

/** Monotonic time in milliseconds and timers, injected so tests can control them. */
export interface WriterClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): WriterTimer;
}

/** performance.now() and Node's timers. */
export const monotonicClock: WriterClock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
};

type Logger = Record<'info' | 'warn' | 'error', (o: object, m?: string) => void>;

/** Where the writer's connections come from, its clock, and its limits. */
export interface GroupCommitOptions {
  /** Check out a connection for one batch (the pool's connect; it may fail). */
  connect: () => Promise<BatchConnection>;
  logger: Logger;
  clock?: WriterClock;
  /**
   * Hold a batch that holds QoS 1 deliveries sent ahead up to this long, once sealed, for the
   * acknowledgements that cancel their rows (default 0).
   */
  holdMs?: number;
  /** A commit unanswered after this long is abandoned: its connection ended, its units failed (default 10 s). */
  commitTimeoutMs?: number;
  /** A batch takes no more units once it changes this many rows or carries this many bytes (the crossing unit is its last). */
  maxBatchRows?: number;
  maxBatchBytes?: number;
  /** Told of each batch written to the database: its rows and how long its commit took (ms). Must not throw. */
  onCommit?: (rows: number, ms: number) => void;
}

/** True if the calls logged from slot `from` on are all deletes of deliveries (an acknowledgement, expiry). */
function onlyDeletes(log: readonly unknown[], from: number): boolean {
  for (let i = from; i < log.length; i += OP_SLOTS) if (log[i] !== 'deleteDelivery') return false;
  return true;
}

/**
 * A unit of work waiting for its commit, with the slots of its batch's log it recorded (to commit
 * it alone if need be); or several consecutive units of one fate key, settled together. (A class:
 * it lives until the commit; see QueuedDelivery.)
 */
class Waiter implements LogRange {
  /** Units it settles (1 unless units with its fate key joined it). */
  units = 1;
  fate: object | undefined = undefined;
  promise: Promise<void> | undefined = undefined;

  constructor(readonly start: number, public end: number, readonly resolve: () => void, readonly reject: (e: unknown) => void) {}
}

/** Units settled by `waiters`. */
function unitsOf(waiters: readonly Waiter[]): number {
  let n = 0;
  for (const w of waiters) n += w.units;
  return n;
}

/** Commits units of work in groups, one transaction at a time, in submission order. */
export class GroupCommitWriter {
  readonly #connect: () => Promise<BatchConnection>;
  readonly #logger: Logger;
  readonly #clock: WriterClock;
  readonly #holdMs: number;
  readonly #commitTimeoutMs: number;
  readonly #maxBatchRows: number;
  readonly #maxBatchBytes: number;
  readonly #onCommit: ((rows: number, ms: number) => void) | undefined;
  #open: Batch;
  #waiters: Waiter[] = [];
  /** Full batches waiting for the writer, oldest first (all older than `#open`). */
  readonly #sealed: Array<{ batch: Batch; waiters: Waiter[] }> = [];
  /** Units submitted and not settled yet, and the bytes they carry (Batch.bytes). */
  #backlogUnits = 0;
  #backlogBytes = 0;
  #drainWaiters: Array<{ units: number; bytes: number; resolve: () => void }> = [];
  #idleWaiters: Array<() => void> = [];
  #committing = false;
  /** The batch being written, settled once its units are (never rejects); undefined when none is. */
  #writing: Promise<void> | undefined;
  /** Wakes the writer parked while a batch is written, when a unit is submitted. */
  #wake: (() => void) | undefined;
  #healthy = true;
  #closed = false;
  /** Commits performed and units committed, for metrics and tests. */
  commits = 0;
  units = 0;
  /** Milliseconds spent in successful commits, in total. */
  commitMs = 0;

  constructor(opts: GroupCommitOptions) {
    this.#connect = opts.connect;
    this.#logger = opts.logger;
    this.#clock = opts.clock ?? monotonicClock;
    this.#holdMs = opts.holdMs ?? 0;
    this.#commitTimeoutMs = opts.commitTimeoutMs ?? 10_000;
    this.#maxBatchRows = opts.maxBatchRows ?? 10_000;
    this.#maxBatchBytes = opts.maxBatchBytes ?? 16 * 1024 * 1024;
    this.#onCommit = opts.onCommit;
    this.#open = this.#newBatch();
  }

  /** False while commits are failing; true again after one succeeds. */
  get healthy(): boolean {
    return this.#healthy;
  }

  get backlogUnits(): number {
    return this.#backlogUnits;
  }

  get backlogBytes(): number {
    return this.#backlogBytes;
  }

  /**
   * Build a unit synchronously into the open batch; resolves once its batch commits. A unit with
   * the `fate` of the unit submitted just before it (in the same batch) joins that unit: one
   * promise, one outcome, refused or committed together.
   */
  submit(build: (tx: UnitOfWork) => void, fate?: object): Promise<void> {
    if (this.#closed && this.#isIdle) return Promise.reject(new StoreError('store is closed'));
    if (this.#waiters.length > 0 && (this.#open.rows >= this.#maxBatchRows || this.#open.bytes >= this.#maxBatchBytes)) {
      // Full: it is committed as it is, and this unit starts the next batch
      this.#sealed.push({ batch: this.#open, waiters: this.#waiters });
      this.#open = this.#newBatch();
      this.#waiters = [];
    }
    const open = this.#open;
    const bytesBefore = open.bytes;
    const last = fate === undefined ? undefined : this.#waiters.at(-1);
    // (only the unit recorded last: its calls end where this unit's begin)
    const joined = last !== undefined && last.fate === fate && last.end === this.#open.log.length ? last : undefined;
    const first = open.log.length;
    build(new RecordingUnit(open));
    open.endUnit(onlyDeletes(open.log, first));
    this.#backlogUnits++;
    this.#backlogBytes += open.bytes - bytesBefore;
    if (joined !== undefined) {
      joined.end = open.log.length;
      joined.units++;
      return joined.promise!;
    }
    let waiter!: Waiter;
    const promise = new Promise<void>((resolve, reject) => {
      waiter = new Waiter(first, open.log.length, resolve, reject);
      this.#waiters.push(waiter);
      if (!this.#committing) void this.#commit();
      else this.#wake?.();
    });
    if (fate !== undefined) {
      waiter.fate = fate;
      waiter.promise = promise;
    }
    return promise;
  }

  /** Resolves once the backlog is at most `units` units and `bytes` bytes. */
  whenBacklogBelow(units: number, bytes: number): Promise<void> {
    if (this.#backlogUnits <= units && this.#backlogBytes <= bytes) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push({ units, bytes, resolve }));
  }

  /**
   * Take no new unit once the backlog is settled, and resolve then. Units still coming in while it
   * drains join it; each commit is bounded by the commit timeout and each connection attempt by its own.
   */
  async close(): Promise<void> {
    this.#closed = true;
    while (!this.#isIdle) {
      if (!this.#committing) void this.#commit();
      await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    }
  }

  get #isIdle(): boolean {
    return !this.#committing && this.#waiters.length === 0 && this.#sealed.length === 0;
  }

  #newBatch(): Batch {
    return new Batch();
  }

  /** A batch settled (committed or failed): it leaves the backlog. */
  #settled(batch: Batch, waiters: readonly Waiter[]): void {
    this.#backlogUnits -= unitsOf(waiters);
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
    /** The open batch has just waited, open, for the batch before it to be written. */
    let waited = false;
    for (;;) {
      if (this.#waiters.length === 0 && this.#sealed.length === 0) {
        // Parked until the batch being written settles or a unit is submitted (it may be sealed
        // and held meanwhile)
        const writing = this.#writing;
        if (writing === undefined) break;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          void writing.then(resolve);
        });
        this.#wake = undefined;
        continue;
      }
      // Let the event loop read what has arrived first: acknowledgements read now still cancel
      // their delivery rows inside this batch instead of costing a delete in the next one. (Not
      // after waiting through a write: that was the time for them.)
      if (!waited) await new Promise<void>((resolve) => setImmediate(resolve));
      let batch: Batch;
      let waiters: Waiter[];
      const full = this.#sealed.shift();
      if (full) {
        ({ batch, waiters } = full);
      } else {
        // A batch that stayed open through a write is not held after it: its acknowledgements
        // had that long to come, and holding it then would leave PostgreSQL idle
        const held = !waited && this.#open.cancellable > 0 && this.#holdMs > 0 && !this.#closed;
        if (!held && this.#writing !== undefined) {
          // Not to be held: stays open while the batch before it is written, so that every unit
          // submitted meanwhile joins it (sealed now, it would take only the first of them and
          // leave the rest a commit of their own)
          await this.#writing;
          waited = true;
          continue;
        }
        batch = this.#open;
        waiters = this.#waiters;
        this.#open = this.#newBatch();
        this.#waiters = [];
        if (held) {
          // Sealed, then held: later units form the next batch meanwhile, and an acknowledgement
          // among them takes its delivery's insert back out of this one (also while it then waits
          // for the batch being written: under load that is most of its hold)
          this.#open.behind = batch;
          batch.holding = true;
          await this.#hold(batch);
        }
      }
      // One commit at a time: in submission order, and each unit settled before the next batch's
      if (this.#writing !== undefined) await this.#writing;
      if (batch.holding) {
        // Written from here on: nothing takes back from it any more, and no later batch keeps it
        // (and, through it, every batch held before) alive
        batch.holding = false;
        if (this.#open.behind === batch) this.#open.behind = undefined;
        for (const sealed of this.#sealed) if (sealed.batch.behind === batch) sealed.batch.behind = undefined;
      }
      this.#start(batch, waiters);
      waited = false;
    }
    this.#committing = false;
    const idle = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of idle) resolve();
  }

  /** Write `batch`, then settle its units; the writer waits for that before writing another. */
  #start(batch: Batch, waiters: Waiter[]): void {
    const writing = this.#write(batch, waiters).then(() => {
      this.#settled(batch, waiters);
      if (this.#writing === writing) this.#writing = undefined;
    });
    this.#writing = writing;
  }

  /** Write `batch` and settle its units; never rejects. */
  async #write(batch: Batch, waiters: readonly Waiter[]): Promise<void> {
    if (batch.isEmpty) {
      // e.g. every delivery acknowledged before the commit: nothing to write, no connection needed
      // (and it says nothing about the server)
      this.commits++;
      this.units += unitsOf(waiters);
      for (const w of waiters) w.resolve();
      return;
    }
    let conn: BatchConnection;
    try {
      conn = await this.#connect();
    } catch (e) {
      this.#fail(waiters, e);
      return;
    }
    let broken = false;
    try {
      const t0 = this.#clock.now();
      await this.#guard(conn, this.#commitOn(conn, batch, waiters));
      const ms = this.#clock.now() - t0;
      this.commitMs += ms;
      this.#reachable();
      this.#observe(batch.rows, ms);
    } catch (e) {
      // (data errors are settled in #commitOn; what reaches here is about the connection or server)
      broken = !isDataError(e);
      this.#fail(waiters, e);
    } finally {
      // A data error leaves the connection usable (its transaction was rolled back): keep it
      conn.release(broken);
    }
  }

  /** Commit `batch` on `conn` and settle its units; throws only what is not one unit's refused data. */
  async #commitOn(conn: BatchConnection, batch: Batch, waiters: readonly Waiter[]): Promise<void> {
    try {
      await conn.apply(batch);
    } catch (e) {
      if (!isDataError(e)) throw e;
      if (waiters.length === 1) {
        this.#fail(waiters, e);
        return;
      }
      // One unit's rows refused (not a lost connection): that must not fail the other units with it
      await this.#isolate(conn, batch, waiters);
      return;
    }
    this.commits++;
    this.units += unitsOf(waiters);
    for (const w of waiters) w.resolve();
  }

  /**
   * Watchdog: `work` on `conn`, abandoned after the commit timeout. A server or network that stopped
   * answering would otherwise hold the single writer (and every acknowledgement behind it) until
   * the kernel gives up on the socket.
   */
  #guard(conn: BatchConnection, work: Promise<void>): Promise<void> {
    let timer: WriterTimer | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.#clock.setTimeout(() => {
        this.#logger.error({ timeoutMs: this.#commitTimeoutMs }, 'commit timed out; its connection is abandoned');
        // Its pending statement fails once the connection is gone; it is then released as broken
        conn.abandon();
        reject(new StoreError(`commit unanswered after ${this.#commitTimeoutMs} ms`));
      }, this.#commitTimeoutMs);
    });
    work.catch(() => undefined); // settled by the race below, or too late to matter
    return Promise.race([work, timeout]).finally(() => timer?.cancel());
  }

  /** Tell the observer of a commit; its failure is logged, never taken for the commit's. */
  #observe(rows: number, ms: number): void {
    if (this.#onCommit === undefined) return;
    try {
      this.#onCommit(rows, ms);
    } catch (err) {
      this.#logger.warn({ err }, 'commit observer failed');
    }
  }

  #reachable(): void {
    if (!this.#healthy) {
      this.#healthy = true;
      this.#logger.info({}, 'PostgreSQL reachable again; commits resumed');
    }
  }

  /**
   * Hold the sealed `batch`, which holds QoS 1 deliveries already sent, for up to `holdMs` for
   * their acknowledgements: each one that comes cancels an insert and a later delete, and a batch
   * whose deliveries were all acknowledged writes nothing at all. Under load the previous commit
   * took long enough for the early deliveries of the batch to be acknowledged already; the hold is
   * for the latest ones (a delete of those in the next batch would cost a row each).
   */
  async #hold(batch: Batch): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        timer.cancel();
        batch.onAllCancelled = undefined;
        resolve();
      };
      const timer = this.#clock.setTimeout(done, this.#holdMs);
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
   * PostgreSQL refused a batch because of the data of some unit: only the offending units fail
   * (isolateRefused); the others commit together and resolve, still in submission order. A
   * failure of another kind on the way is thrown (the caller fails every unit, as a failed commit does).
   */
  async #isolate(conn: BatchConnection, batch: Batch, waiters: readonly Waiter[]): Promise<void> {
    const refused = await isolateRefused(conn, batch, waiters, (err) => {
      this.#logger.error({ err }, 'PostgreSQL refused the rows of a unit of work; that unit alone fails');
    });
    this.commits++;
    this.units += unitsOf(waiters);
    for (let i = 0; i < waiters.length; i++) {
      const err = refused[i];
      if (err) waiters[i]!.reject(err);
      else waiters[i]!.resolve();
    }
  }
}
