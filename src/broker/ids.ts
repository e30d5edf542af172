// Ids for messages and deliveries, from blocks the store reserves (Store.reserveIds): unique
// across restarts and nodes whatever the wall clock does. The next block is reserved ahead.
import type { Clock, IdBlock, Logger, Store } from './ports.ts';

/** Hands out message and delivery ids. */
export class IdSource {
  readonly #store: Store;
  readonly #logger: Logger;
  #next: number;
  /** End of the block in use; the next block is reserved ahead at `#refillAt`. */
  #limit = Number.MAX_SAFE_INTEGER;
  #refillAt = -1;
  #spare: IdBlock | undefined;
  #reserving = false;
  #overflowing = false;

  constructor(store: Store, clock: Clock, logger: Logger) {
    this.#store = store;
    this.#logger = logger;
    // Until start(): unique on this node (a broker used before start, e.g. by a tool)
    this.#next = clock.now() * 1000;
  }

  /** Start counting from the first block, above every id already stored (`maxStoredId`). */
  async start(maxStoredId: number): Promise<void> {
    const block = await this.#store.reserveIds();
    this.#next = Math.max(block.first, maxStoredId + 1);
    this.#limit = block.first + block.count;
    this.#refillAt = Math.max(this.#next, block.first + (block.count >> 1));
  }

  /** A fresh id. */
  next(): number {
    if (this.#next >= this.#limit) this.#nextBlock();
    const id = this.#next++;
    if (id === this.#refillAt) this.#reserve();
    return id;
  }

  /** Move on to the block reserved ahead; without one, keep counting (unique on this node) until it comes. */
  #nextBlock(): void {
    const spare = this.#spare;
    this.#spare = undefined;
    if (spare && spare.first + spare.count > this.#next) {
      this.#next = Math.max(this.#next, spare.first);
      this.#limit = spare.first + spare.count;
      this.#refillAt = Math.max(this.#next, spare.first + (spare.count >> 1));
      return;
    }
    if (!this.#overflowing) {
      this.#logger.warn({ nextId: this.#next }, 'no id block reserved in time (is the store reachable?); counting on past the block until one is');
    }
    this.#overflowing = true;
    this.#limit = Number.MAX_SAFE_INTEGER;
    this.#reserve();
  }

  #reserve(): void {
    if (this.#reserving) return;
    this.#reserving = true;
    this.#store.reserveIds().then((block) => {
      this.#reserving = false;
      this.#spare = block;
      if (this.#overflowing) {
        this.#overflowing = false;
        this.#nextBlock();
      }
    }, (err: unknown) => {
      this.#reserving = false;
      this.#logger.warn({ err }, 'could not reserve a block of ids; trying again shortly');
      this.#refillAt = this.#next + 1024;
    });
  }
}
