// The steps of one connection that must happen in the order their packets arrived
// [MQTT-4.6.0-2], some of them after a commit: a queue drained from its head as the commits
// settle. Consecutive steps waiting for the same promise (units that share a commit) share one
// reaction to it, so a step costs one small object, not a chain of promises. A linked list: a
// publisher that always has a step waiting holds only the steps not run yet.

/** What a step waits for, settled once (several consecutive steps may share it). */
interface Gate {
  settled: boolean;
  failed: boolean;
  error: unknown;
}

interface Step {
  gate: Gate | undefined;
  fn: () => void;
  onError: ((e: unknown) => void) | undefined;
  evenIfClosed: boolean;
  next: Step | undefined;
}

/** The owner of the steps: whether it is still open, and how a step's own failure ends it. */
export interface StepOwner {
  readonly isOpen: boolean;
  fail(e: unknown): void;
}

/** Runs steps in submission order, each once what it waits for has settled. */
export class OrderedSteps {
  readonly #owner: StepOwner;
  #head: Step | undefined;
  #tail: Step | undefined;
  #lastWait: Promise<unknown> | undefined;
  #lastGate: Gate | undefined;
  /** A step is running: steps it adds run after it, never inside it. */
  #draining = false;

  constructor(owner: StepOwner) {
    this.#owner = owner;
  }

  /** No step is waiting: one added now with nothing to wait for runs at once. */
  get idle(): boolean {
    return this.#head === undefined && !this.#draining;
  }

  /**
   * Run `fn` after every earlier step and after `wait` settles; if `wait` rejects, `onError` instead
   * (the owner's `fail` when there is none). Once the owner is closed, steps are skipped unless
   * `evenIfClosed`. With nothing to wait for and no step waiting, `fn` runs now (and may throw).
   */
  add(wait: Promise<unknown> | undefined, fn: () => void, onError?: (e: unknown) => void, evenIfClosed = false): void {
    if (wait === undefined && this.idle) {
      fn();
      return;
    }
    let gate: Gate | undefined;
    if (wait !== undefined) {
      if (wait === this.#lastWait && this.#lastGate !== undefined && !this.#lastGate.settled) {
        gate = this.#lastGate;
      } else {
        const g: Gate = { settled: false, failed: false, error: undefined };
        gate = g;
        this.#lastWait = wait;
        this.#lastGate = g;
        // Reacted to at once: a rejection is never left unhandled while earlier steps wait
        wait.then(() => this.#settle(g, false, undefined), (e: unknown) => this.#settle(g, true, e));
      }
    }
    const step: Step = { gate, fn, onError, evenIfClosed, next: undefined };
    if (this.#tail === undefined) this.#head = step;
    else this.#tail.next = step;
    this.#tail = step;
    // (added behind steps that are all settled, while they run: the running drain takes it)
  }

  #settle(gate: Gate, failed: boolean, error: unknown): void {
    gate.settled = true;
    gate.failed = failed;
    gate.error = error;
    if (this.#lastGate === gate) {
      this.#lastWait = undefined;
      this.#lastGate = undefined;
    }
    this.#drain();
  }

  /** Run the steps at the head whose gates have settled, in order. */
  #drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    try {
      for (let step = this.#head; step !== undefined; step = this.#head) {
        if (step.gate !== undefined && !step.gate.settled) break;
        this.#head = step.next;
        if (this.#head === undefined) this.#tail = undefined;
        if (!this.#owner.isOpen && !step.evenIfClosed) continue;
        try {
          if (step.gate?.failed !== true) step.fn();
          else if (step.onError) step.onError(step.gate.error);
          else this.#owner.fail(step.gate.error);
        } catch (e) {
          this.#owner.fail(e);
        }
      }
    } finally {
      this.#draining = false;
    }
  }
}
