// A scripted database behind the group-commit writer's BatchConnection: no sockets, no PostgreSQL.
// Units are told apart by labels (the event of an audit row, `+d<id>` for a delivery inserted); a label the
// database refuses makes any batch holding it fail with that SQLSTATE, as PostgreSQL does.
import assert from 'node:assert/strict';
import type { Batch } from '../../../src/store/pg/batch.ts';
import { GroupCommitWriter, type BatchConnection, type GroupCommitOptions } from '../../../src/store/pg/group-commit.ts';
import type { UnitOfWork } from '../../../src/store/store.ts';

/** An error as pg reports a statement's failure: the SQLSTATE in `code`. */
export const sqlError = (code: string): Error => Object.assign(new Error(`statement failed (SQLSTATE ${code})`), { code });

/** The labels of what a batch writes, in order: audit events, then `+d<id>` / `~d<id>` / `-d<id>` for a delivery inserted, updated, deleted. */
export function labelsOf(b: Batch): string[] {
  const deliveries = [...b.deliveries].map(([id, c]) => `${c.insert ? '+' : c.delete ? '-' : '~'}d${id}`);
  return [...b.audit.map((e) => e.event), ...deliveries];
}

/** A unit of work labelled `label` (one audit row, one row to commit). */
export const unit = (label: string) => (tx: UnitOfWork): void => {
  tx.appendAudit({ hub: 'h', event: label, atMs: 0 });
};

/** Let the event loop turn until `ready()` holds (the writer yields once per batch with setImmediate); fail after 100 turns. */
export async function turnsUntil(ready: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (ready()) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  assert.fail(`never happened: ${what}`);
}

/** Let the event loop turn `n` times (units submitted in turns of their own). */
export async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** What the writer asked of the database, in order. */
export type Call = { kind: 'apply' | 'savepoint'; labels: string[] } | { kind: 'begin' | 'commit' | 'rollback' };

/** The database the fake connections write to, with what was committed and what the writer asked. */
export class FakeDatabase {
  /** Labels of each transaction that committed, in commit order. */
  readonly committed: string[][] = [];
  readonly calls: Call[] = [];
  /** `broken` of each release, in order. */
  readonly released: boolean[] = [];
  connects = 0;
  abandoned = 0;
  /** label → SQLSTATE of the data error any batch holding it fails with. */
  readonly refuse = new Map<string, string>();
  /** Failures of the next connect() calls, then of the next statements (apply or savepoint), consumed in order. */
  readonly failConnect: unknown[] = [];
  readonly failStatement: unknown[] = [];
  /** While true, a statement never answers (until its connection is abandoned). */
  hang = false;
  /** label → gate: a statement writing that label waits until the gate opens (`holdLabel`). */
  readonly #labelGates = new Map<string, Promise<void>>();
  #gate: Promise<void> | undefined;
  #openGate: (() => void) | undefined;
  #statementWaiters: Array<() => void> = [];

  /** Statements writing `label` wait until the returned function is called. */
  holdLabel(label: string): () => void {
    let open!: () => void;
    this.#labelGates.set(label, new Promise((resolve) => { open = resolve; }));
    return () => { this.#labelGates.delete(label); open(); };
  }

  /** Statements wait from now on until `open()`. */
  hold(): void {
    this.#gate = new Promise((resolve) => { this.#openGate = resolve; });
  }

  open(): void {
    this.#gate = undefined;
    this.#openGate?.();
  }

  /**
   * Hold the database, submit `build` to `w` and wait until its batch is being written: a commit in
   * flight, settled (`done`) once `open()` is called.
   */
  async writing(w: GroupCommitWriter, build: (tx: UnitOfWork) => void): Promise<{ done: Promise<void> }> {
    this.hold();
    const applied = this.nextStatement();
    const done = w.submit(build);
    await applied;
    return { done };
  }

  /** Resolves once the next statement (apply or savepoint) has been issued. */
  nextStatement(): Promise<void> {
    return new Promise((resolve) => this.#statementWaiters.push(resolve));
  }

  readonly connect = async (): Promise<BatchConnection> => {
    this.connects++;
    const failure = this.failConnect.shift();
    if (failure) throw failure;
    return new FakeConnection(this);
  };

  /** Every batch given to apply (to inspect what the writer keeps of them). */
  readonly applied: Batch[] = [];

  /** How many applied batches still point to a held batch before them (Batch.behind). */
  heldBehind(): number {
    return this.applied.filter((b) => b.behind !== undefined).length;
  }

  /** A writer on this database. */
  writer(opts: Partial<GroupCommitOptions> = {}): GroupCommitWriter {
    return new GroupCommitWriter({ connect: this.connect, logger: quiet, ...opts });
  }

  /** Issue a statement writing `labels`: waits, hangs or fails as scripted. */
  async statement(kind: 'apply' | 'savepoint', labels: string[], hung: (reject: (e: unknown) => void) => void): Promise<void> {
    this.calls.push({ kind, labels });
    const waiters = this.#statementWaiters;
    this.#statementWaiters = [];
    for (const w of waiters) w();
    if (this.#gate) await this.#gate;
    for (const l of labels) {
      const gate = this.#labelGates.get(l);
      if (gate) await gate;
    }
    if (this.hang) await new Promise<never>((_, reject) => hung(reject));
    const failure = this.failStatement.shift();
    if (failure) throw failure;
    for (const l of labels) {
      const code = this.refuse.get(l);
      if (code) throw sqlError(code);
    }
  }
}

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

class FakeConnection implements BatchConnection {
  readonly #db: FakeDatabase;
  /** Labels written inside the open transaction. */
  #pending: string[] | undefined;
  #abort: ((e: unknown) => void) | undefined;

  constructor(db: FakeDatabase) {
    this.#db = db;
  }

  async apply(batch: Batch): Promise<void> {
    const labels = labelsOf(batch);
    this.#db.applied.push(batch);
    await this.#db.statement('apply', labels, (reject) => { this.#abort = reject; });
    this.#db.committed.push(labels);
  }

  async begin(): Promise<void> {
    this.#db.calls.push({ kind: 'begin' });
    this.#pending = [];
  }

  async applyUnderSavepoint(batch: Batch): Promise<void> {
    const labels = labelsOf(batch);
    await this.#db.statement('savepoint', labels, (reject) => { this.#abort = reject; });
    this.#pending!.push(...labels);
  }

  async commit(): Promise<void> {
    this.#db.calls.push({ kind: 'commit' });
    this.#db.committed.push(this.#pending!);
    this.#pending = undefined;
  }

  async rollback(): Promise<void> {
    this.#db.calls.push({ kind: 'rollback' });
    this.#pending = undefined;
  }

  abandon(): void {
    this.#db.abandoned++;
    this.#abort?.(new Error('Connection terminated unexpectedly'));
  }

  release(broken: boolean): void {
    this.#db.released.push(broken);
  }
}
