// A pooled PostgreSQL connection as the group-commit writer's BatchConnection: a batch in one
// transaction (cold tables first, then the hot statement), savepoints to isolate a refused unit.
import type pg from 'pg';
import type { Batch } from './batch.ts';
import { retainedStatement, writeCold } from './cold-writes.ts';
import type { BatchConnection } from './group-commit.ts';
import { writeHot, type HotRowCounts } from './hot-statement.ts';
import { isDataError } from './sqlstate.ts';

/** Runs batches on one checked-out client of the pool. */
export class PgBatchConnection implements BatchConnection {
  readonly #c: pg.PoolClient;
  readonly #maxAuditDetailBytes: number;
  readonly #counts: HotRowCounts;

  constructor(client: pg.PoolClient, opts: { maxAuditDetailBytes: number; counts: HotRowCounts }) {
    this.#c = client;
    this.#maxAuditDetailBytes = opts.maxAuditDetailBytes;
    this.#counts = opts.counts;
  }

  async apply(b: Batch): Promise<void> {
    if (!b.hasColdChanges) {
      // The common case, only messages and deliveries: one statement, one round trip, atomic
      await writeHot(this.#c, b, this.#counts);
      return;
    }
    if (b.onlyRetained) {
      // (a bulk of retained publishes: one statement, its own transaction, one round trip)
      await this.#c.query(retainedStatement(b));
      return;
    }
    await this.#c.query('BEGIN');
    try {
      await this.#writeAll(b);
      await this.#c.query('COMMIT');
    } catch (e) {
      await this.#c.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  }

  async begin(): Promise<void> {
    await this.#c.query('BEGIN');
  }

  async applyUnderSavepoint(b: Batch): Promise<void> {
    await this.#c.query('SAVEPOINT unit');
    try {
      await this.#writeAll(b);
      await this.#c.query('RELEASE SAVEPOINT unit');
    } catch (e) {
      // (anything else aborts the whole transaction: the caller rolls it back)
      if (isDataError(e)) await this.#c.query('ROLLBACK TO SAVEPOINT unit; RELEASE SAVEPOINT unit');
      throw e;
    }
  }

  async commit(): Promise<void> {
    await this.#c.query('COMMIT');
  }

  async rollback(): Promise<void> {
    await this.#c.query('ROLLBACK');
  }

  abandon(): void {
    // pg has no public way to drop a client's socket; its pending query fails once the socket is gone
    (this.#c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  }

  release(broken: boolean): void {
    this.#c.release(broken);
  }

  /** Everything a batch changes, inside a transaction already open. */
  async #writeAll(b: Batch): Promise<void> {
    if (b.hasColdChanges) await writeCold(this.#c, b, this.#maxAuditDetailBytes);
    await writeHot(this.#c, b, this.#counts);
  }
}
