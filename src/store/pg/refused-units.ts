// Refused-row isolation: PostgreSQL refused a batch because of the data of some unit (say a
// retained message whose topic is too long for its index). The units are applied again in one
// transaction, bisected with savepoints down to single units, so that only the offending ones fail.
import type { StoreError } from '../store.ts';
import { replay, type Batch, type LogRange } from './batch.ts';
import { isDataError, toStoreError } from './sqlstate.ts';

/** The part of a batch connection isolation needs: one transaction with savepoints. */
export interface SavepointConnection {
  /** Open the transaction in which a refused batch's units are tried again, range by range. */
  begin(): Promise<void>;
  /** Write `batch` under a savepoint of the open transaction; on a data error roll back to the savepoint, then throw. */
  applyUnderSavepoint(batch: Batch): Promise<void>;
  commit(): Promise<void>;
  rollback(): Promise<void>;
}

/**
 * Apply the units of `batch` (its log at `units`, in order) again on `conn` and commit those
 * PostgreSQL takes; resolves with each unit's refusal (undefined: committed). `onRefused` hears each
 * refused unit's error. A failure of another kind on the way rolls everything back and is thrown.
 */
export async function isolateRefused(
  conn: SavepointConnection, batch: Batch, units: readonly LogRange[], onRefused: (e: unknown) => void,
): Promise<Array<StoreError | undefined>> {
  const { lateDeletes } = batch;
  const refused: Array<StoreError | undefined> = new Array(units.length);
  const applyRange = async (lo: number, hi: number): Promise<void> => {
    try {
      await conn.applyUnderSavepoint(replay(batch.log, units.slice(lo, hi), lateDeletes));
      return;
    } catch (e) {
      if (!isDataError(e)) throw e;
      if (hi - lo === 1) {
        onRefused(e);
        refused[lo] = toStoreError(e);
        return;
      }
    }
    const mid = (lo + hi) >> 1;
    await applyRange(lo, mid);
    await applyRange(mid, hi);
  };
  await conn.begin();
  try {
    // (the whole range is known to fail: start with its halves)
    const mid = units.length >> 1;
    await applyRange(0, mid);
    await applyRange(mid, units.length);
    await conn.commit();
  } catch (e) {
    await conn.rollback().catch(() => undefined);
    throw e;
  }
  return refused;
}
