// Which PostgreSQL errors are about the rows written (refused data, never worth retrying) and which
// are about the connection or the server (transient: the caller may try again). Pure.
import { StoreError } from '../store.ts';

/**
 * SQLSTATE classes of errors caused by the rows written rather than by the connection or the
 * server's state: cardinality (21), data exception (22, e.g. U+0000 in text or jsonb), integrity
 * constraint (23), program limit exceeded (54, e.g. a key too long for its index).
 */
const DATA_ERROR_CLASSES = new Set(['21', '22', '23', '54']);

/** True for an error whose SQLSTATE says the database refused the rows themselves. */
export function isDataError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length === 5 && DATA_ERROR_CLASSES.has(code.slice(0, 2));
}

/** The StoreError a unit fails with: `refused` for data errors, so callers never retry those. */
export function toStoreError(e: unknown): StoreError {
  if (e instanceof StoreError) return e;
  const refused = isDataError(e);
  return new StoreError(`${refused ? 'rows refused' : 'commit failed'}: ${(e as Error).message}`, { cause: e, refused });
}
