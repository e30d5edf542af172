// A sorted map for the ordered indexes over engine state that listings page through (REST and
// admin API): a B+ tree (sorted-btree) gives O(log n) seeks to a cursor and in-order walks, so one
// page costs its own size, not the size of the hub.
import btree from 'sorted-btree';

/**
 * A sorted map (B+ tree) with seeks: `entries(lowest)` walks keys ≥ lowest in order. (The
 * package is CommonJS: imported from ESM its exports object is the default, the class its
 * `default`; a CommonJS build of this file would get the class itself.)
 */
export const SortedMap: typeof btree.default = (btree as { default?: typeof btree.default }).default ?? (btree as unknown as typeof btree.default);
export type SortedMap<K, V> = InstanceType<typeof btree.default<K, V>>;

/** Ordinal string order (UTF-16 code units), the order of every cursor the API hands out. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
