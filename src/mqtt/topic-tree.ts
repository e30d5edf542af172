// Tries keyed by topic levels: TopicTree maps filters to subscribers (matched by topic name);
// RetainedTree maps topic names to one value each (matched by filter, listed in name order). Pure
// data structures.
import { compareStrings, SortedMap } from './sorted-map.ts';

interface FilterNode<V> {
  children: Map<string, FilterNode<V>> | undefined;
  /** One value is kept as itself, more in a Set: most filters have a single subscriber. */
  values: Set<V> | V | undefined;
}

function newFilterNode<V>(): FilterNode<V> {
  return { children: undefined, values: undefined };
}

function visitValues<V>(node: FilterNode<V> | undefined, visit: (v: V) => void): void {
  const values = node?.values;
  if (values === undefined) return;
  if (values instanceof Set) for (const v of values) visit(v);
  else visit(values);
}

/**
 * Subscription trie: add/remove values under a filter, match a topic name to every value.
 * A value must not itself be a Set (one value is stored bare, several in a Set).
 */
export class TopicTree<V> {
  readonly #root: FilterNode<V> = newFilterNode();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Add `value` under `topicFilter`; returns false if it was already there. */
  add(topicFilter: string, value: V): boolean {
    let node = this.#root;
    for (const level of topicFilter.split('/')) {
      node.children ??= new Map();
      let next = node.children.get(level);
      if (!next) {
        next = newFilterNode();
        node.children.set(level, next);
      }
      node = next;
    }
    const values = node.values;
    if (values === undefined) {
      node.values = value;
    } else if (values instanceof Set) {
      if (values.has(value)) return false;
      values.add(value);
    } else {
      if (values === value) return false;
      node.values = new Set([values, value]);
    }
    this.#size++;
    return true;
  }

  /** Remove `value` from `topicFilter`, pruning empty branches; returns whether it was present. */
  remove(topicFilter: string, value: V): boolean {
    const levels = topicFilter.split('/');
    const path: FilterNode<V>[] = [this.#root];
    let node = this.#root;
    for (const level of levels) {
      const next = node.children?.get(level);
      if (!next) return false;
      path.push(next);
      node = next;
    }
    const values = node.values;
    if (values instanceof Set) {
      if (!values.delete(value)) return false;
      if (values.size === 1) node.values = values.values().next().value;
    } else if (values === value) {
      node.values = undefined;
    } else {
      return false;
    }
    this.#size--;
    for (let i = levels.length; i > 0; i--) {
      const n = path[i]!;
      if (n.values !== undefined || (n.children && n.children.size > 0)) break;
      path[i - 1]!.children!.delete(levels[i - 1]!);
    }
    return true;
  }

  /** Walk stacks reused by `match` (no allocation per message); a re-entrant match gets its own. */
  readonly #stackNodes: FilterNode<V>[] = [];
  readonly #stackDepths: number[] = [];
  #walking = false;

  /**
   * Call `visit` for each value whose filter matches `topicName` ([MQTT-4.7.2-1] for '$' topics).
   * Iterative, with an explicit stack: no topic depth can overflow the call stack.
   */
  match(topicName: string, visit: (value: V) => void): void {
    const levels = topicName.split('/');
    const isDollar = topicName.charCodeAt(0) === 0x24;
    const reentrant = this.#walking;
    const nodes = reentrant ? [] : this.#stackNodes;
    const depths = reentrant ? [] : this.#stackDepths;
    this.#walking = true;
    let top = 0;
    nodes[top] = this.#root;
    depths[top++] = 0;
    try {
      while (top > 0) {
        top--;
        const node = nodes[top]!;
        const i = depths[top]!;
        const children = node.children;
        if (!children) continue;
        const wildOk = !(isDollar && i === 0);
        if (wildOk) visitValues(children.get('#'), visit);
        if (i === levels.length) continue;
        // '+' is pushed first so that the exact branch is walked first
        if (wildOk) {
          const plus = children.get('+');
          if (plus) {
            if (i + 1 === levels.length) {
              visitValues(plus, visit);
              visitValues(plus.children?.get('#'), visit);
            } else {
              nodes[top] = plus;
              depths[top++] = i + 1;
            }
          }
        }
        const exact = children.get(levels[i]!);
        if (exact) {
          if (i + 1 === levels.length) {
            visitValues(exact, visit);
            // "a/#" also matches "a" [MQTT-4.7.1-2 example]
            visitValues(exact.children?.get('#'), visit);
          } else {
            nodes[top] = exact;
            depths[top++] = i + 1;
          }
        }
      }
    } finally {
      if (!reentrant) {
        this.#walking = false;
        // keep the arrays for the next walk, but not the long tail a deep topic left: up to 64 stale node
        // references stay (overwritten by the next walk), so a pruned subtree is held at most that long
        nodes.length = Math.min(nodes.length, 64);
      }
    }
  }
}

interface NameNode<V> {
  children: Map<string, NameNode<V>> | undefined;
  value: V | undefined;
}

/** One value per topic name (retained messages), looked up by topic filter. */
export class RetainedTree<V> {
  readonly #root: NameNode<V> = { children: undefined, value: undefined };
  /** The node of every stored topic name: `get` and a replacing `set` in one lookup, without splitting the name. */
  readonly #byName = new Map<string, NameNode<V>>();
  /** The stored topic names in order (listings page through it; changed only when a name comes or goes). */
  readonly #names = new SortedMap<string, true>(undefined, compareStrings);
  readonly #sizeOf: ((v: V) => number) | undefined;
  #size = 0;
  #bytes = 0;

  /** `sizeOf` gives each value's size, summed in `bytes`. */
  constructor(sizeOf?: (v: V) => number) {
    this.#sizeOf = sizeOf;
  }

  get size(): number {
    return this.#size;
  }

  /** Sum of `sizeOf` over the stored values (0 without `sizeOf`). */
  get bytes(): number {
    return this.#bytes;
  }

  set(topicName: string, value: V): void {
    const stored = this.#byName.get(topicName);
    if (stored !== undefined) {
      if (this.#sizeOf) this.#bytes += this.#sizeOf(value) - this.#sizeOf(stored.value!);
      stored.value = value;
      return;
    }
    let node = this.#root;
    for (const level of topicName.split('/')) {
      node.children ??= new Map();
      let next = node.children.get(level);
      if (!next) {
        next = { children: undefined, value: undefined };
        node.children.set(level, next);
      }
      node = next;
    }
    // (no value here: a stored name would have been found above)
    this.#size++;
    this.#names.set(topicName, true);
    if (this.#sizeOf) this.#bytes += this.#sizeOf(value);
    node.value = value;
    this.#byName.set(topicName, node);
  }

  get(topicName: string): V | undefined {
    return this.#byName.get(topicName)?.value;
  }

  delete(topicName: string): boolean {
    if (!this.#byName.delete(topicName)) return false;
    const levels = topicName.split('/');
    const path: NameNode<V>[] = [this.#root];
    let node = this.#root;
    for (const level of levels) {
      const next = node.children?.get(level);
      if (!next) return false;
      path.push(next);
      node = next;
    }
    if (node.value === undefined) return false;
    if (this.#sizeOf) this.#bytes -= this.#sizeOf(node.value);
    node.value = undefined;
    this.#size--;
    this.#names.delete(topicName);
    for (let i = levels.length; i > 0; i--) {
      const n = path[i]!;
      if (n.value !== undefined || (n.children && n.children.size > 0)) break;
      path[i - 1]!.children!.delete(levels[i - 1]!);
    }
    return true;
  }

  /** Stored topic names after `after` (all when undefined) in ordinal order, from `from` on when given. */
  *namesAfter(after: string | undefined, from?: string): IterableIterator<string> {
    const start = after !== undefined && (from === undefined || after >= from) ? after : from;
    for (const [name] of this.#names.entries(start)) {
      if (after !== undefined && name <= after) continue;
      yield name;
    }
  }

  /**
   * Call `visit` for every stored value whose topic name matches `topicFilter`. Iterative, with
   * an explicit stack: no depth of stored names or of the filter can overflow the call stack.
   */
  match(topicFilter: string, visit: (value: V) => void): void {
    const levels = topicFilter.split('/');
    const nodes: NameNode<V>[] = [this.#root];
    const depths: number[] = [0];
    while (nodes.length > 0) {
      const node = nodes.pop()!;
      const i = depths.pop()!;
      if (i === levels.length) {
        if (node.value !== undefined) visit(node.value);
        continue;
      }
      const level = levels[i]!;
      const children = node.children;
      if (level === '#') {
        // '#' matches the parent level too ("a/#" matches "a")
        if (node.value !== undefined && i > 0) visit(node.value);
        if (children) for (const [name, child] of children) {
          if (i === 0 && name.startsWith('$')) continue; // [MQTT-4.7.2-1]
          this.#visitAll(child, visit);
        }
        continue;
      }
      if (!children) continue;
      if (level === '+') {
        for (const [name, child] of children) {
          if (i === 0 && name.startsWith('$')) continue; // [MQTT-4.7.2-1]
          nodes.push(child);
          depths.push(i + 1);
        }
        continue;
      }
      const next = children.get(level);
      if (next) {
        nodes.push(next);
        depths.push(i + 1);
      }
    }
  }

  /** Visit every value at or below `start`, iteratively. */
  #visitAll(start: NameNode<V>, visit: (v: V) => void): void {
    const stack: NameNode<V>[] = [start];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.value !== undefined) visit(node.value);
      if (node.children) for (const child of node.children.values()) stack.push(child);
    }
  }

  /** Every stored value. */
  *values(): IterableIterator<V> {
    const stack: NameNode<V>[] = [this.#root];
    while (stack.length) {
      const n = stack.pop()!;
      if (n.value !== undefined) yield n.value;
      if (n.children) for (const c of n.children.values()) stack.push(c);
    }
  }
}
