// Small per-session and per-connection protocol state: packet-id allocation and topic aliases.
// Pure data structures.

/** Allocates packet identifiers 1..65535, skipping ids still in use [MQTT-2.2.1-3]. */
export class PacketIdAllocator {
  #next = 1;

  /** Next free id, or 0 if all 65535 are in use. */
  allocate(inUse: { has(id: number): boolean; readonly size: number }): number {
    if (inUse.size >= 65535) return 0;
    for (;;) {
      const id = this.#next;
      this.#next = id === 65535 ? 1 : id + 1;
      if (!inUse.has(id)) return id;
    }
  }
}

/** Topic aliases the server assigns toward one client (MQTT 5 §3.3.2.3.4), up to the client's maximum. */
export class OutboundAliases {
  readonly #byTopic = new Map<string, number>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  /**
   * Alias for `topicName`: `{ alias, isNew }` where a new alias must be sent with the topic name
   * and only counts once `record` is called (after the packet is known to be sent), or undefined
   * once every alias is taken (then the full name is sent without an alias).
   */
  lookup(topicName: string): { alias: number; isNew: boolean } | undefined {
    const known = this.#byTopic.get(topicName);
    if (known !== undefined) return { alias: known, isNew: false };
    if (this.#byTopic.size >= this.#max) return undefined;
    return { alias: this.#byTopic.size + 1, isNew: true };
  }

  /** Remember a new alias returned by `lookup` once its packet went out. */
  record(topicName: string, alias: number): void {
    this.#byTopic.set(topicName, alias);
  }
}
