// Tries keyed by topic levels: TopicTree maps filters to subscribers (matched by topic name);
// RetainedTree maps topic names to one value each (matched by filter). Pure data structures.

interface FilterNode<V> {
  children: Map<string, FilterNode<V>> | undefined;
  values: Set<V> | undefined;
}

function newFilterNode<V>(): FilterNode<V> {
  return { children: undefined, values: undefined };
}

/** Subscription trie: add/remove values under a filter, match a topic name to every value. */
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
    node.values ??= new Set();
    if (node.values.has(value)) return false;
    node.values.add(value);
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
    if (!node.values?.delete(value)) return false;
    this.#size--;
    if (node.values.size === 0) node.values = undefined;
    for (let i = levels.length; i > 0; i--) {
      const n = path[i]!;
      if (n.values || (n.children && n.children.size > 0)) break;
      path[i - 1]!.children!.delete(levels[i - 1]!);
    }
    return true;
  }

  /** Call `visit` for each value whose filter matches `topicName` ([MQTT-4.7.2-1] for '$' topics). */
  match(topicName: string, visit: (value: V) => void): void {
    const levels = topicName.split('/');
    const isDollar = topicName.charCodeAt(0) === 0x24;
    this.#matchFrom(this.#root, levels, 0, isDollar, visit);
  }

  #matchFrom(node: FilterNode<V>, levels: string[], i: number, isDollar: boolean, visit: (v: V) => void): void {
    const children = node.children;
    if (!children) return;
    const wildOk = !(isDollar && i === 0);
    if (wildOk) {
      const hash = children.get('#');
      if (hash?.values) for (const v of hash.values) visit(v);
    }
    if (i === levels.length) return;
    const exact = children.get(levels[i]!);
    if (exact) {
      if (i + 1 === levels.length) {
        if (exact.values) for (const v of exact.values) visit(v);
        // "a/#" also matches "a" [MQTT-4.7.1-2 example]
        const hash = exact.children?.get('#');
        if (hash?.values) for (const v of hash.values) visit(v);
      } else {
        this.#matchFrom(exact, levels, i + 1, isDollar, visit);
      }
    }
    if (wildOk) {
      const plus = children.get('+');
      if (plus) {
        if (i + 1 === levels.length) {
          if (plus.values) for (const v of plus.values) visit(v);
          const hash = plus.children?.get('#');
          if (hash?.values) for (const v of hash.values) visit(v);
        } else {
          this.#matchFrom(plus, levels, i + 1, isDollar, visit);
        }
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
  #size = 0;

  get size(): number {
    return this.#size;
  }

  set(topicName: string, value: V): void {
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
    if (node.value === undefined) this.#size++;
    node.value = value;
  }

  get(topicName: string): V | undefined {
    let node: NameNode<V> | undefined = this.#root;
    for (const level of topicName.split('/')) {
      node = node.children?.get(level);
      if (!node) return undefined;
    }
    return node.value;
  }

  delete(topicName: string): boolean {
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
    node.value = undefined;
    this.#size--;
    for (let i = levels.length; i > 0; i--) {
      const n = path[i]!;
      if (n.value !== undefined || (n.children && n.children.size > 0)) break;
      path[i - 1]!.children!.delete(levels[i - 1]!);
    }
    return true;
  }

  /** Call `visit` for every stored value whose topic name matches `topicFilter`. */
  match(topicFilter: string, visit: (value: V) => void): void {
    this.#matchFrom(this.#root, topicFilter.split('/'), 0, visit);
  }

  #matchFrom(node: NameNode<V>, levels: string[], i: number, visit: (v: V) => void): void {
    if (i === levels.length) {
      if (node.value !== undefined) visit(node.value);
      return;
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
      return;
    }
    if (!children) return;
    if (level === '+') {
      for (const [name, child] of children) {
        if (i === 0 && name.startsWith('$')) continue; // [MQTT-4.7.2-1]
        this.#matchFrom(child, levels, i + 1, visit);
      }
      return;
    }
    const next = children.get(level);
    if (next) this.#matchFrom(next, levels, i + 1, visit);
  }

  #visitAll(node: NameNode<V>, visit: (v: V) => void): void {
    if (node.value !== undefined) visit(node.value);
    if (node.children) for (const child of node.children.values()) this.#visitAll(child, visit);
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
