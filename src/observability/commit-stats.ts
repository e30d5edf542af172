// Figures of the store's group commits for the admin API's stats: totals since start and the
// latency and batch size of the most recent commits (a ring of the last RECENT commits, so the
// percentiles follow the current load instead of averaging over the whole uptime).

/** How many of the latest commits the recent figures cover. */
export const RECENT = 1024;

/** What the admin API reports of the group commits. */
export interface CommitFigures {
  /** Commits and rows written since start. */
  commits: number;
  rows: number;
  /** Over the latest commits (at most RECENT): how many, their latency and batch size. */
  recent: {
    commits: number;
    latencyMs: { p50: number; p99: number; max: number };
    batchRows: { mean: number; max: number };
  };
}

export class CommitStats {
  #commits = 0;
  #rows = 0;
  readonly #ms = new Float64Array(RECENT);
  readonly #batch = new Float64Array(RECENT);

  /** One commit of `rows` rows that took `ms` milliseconds. */
  record(rows: number, ms: number): void {
    const i = this.#commits % RECENT;
    this.#ms[i] = ms;
    this.#batch[i] = rows;
    this.#commits++;
    this.#rows += rows;
  }

  figures(): CommitFigures {
    const n = Math.min(this.#commits, RECENT);
    const ms = Array.from(this.#ms.subarray(0, n)).sort((a, b) => a - b);
    let rows = 0;
    let maxRows = 0;
    for (let i = 0; i < n; i++) {
      rows += this.#batch[i]!;
      maxRows = Math.max(maxRows, this.#batch[i]!);
    }
    const at = (q: number): number => (n === 0 ? 0 : round(ms[Math.min(n - 1, Math.ceil(q * n) - 1)]!));
    return {
      commits: this.#commits, rows: this.#rows,
      recent: { commits: n, latencyMs: { p50: at(0.5), p99: at(0.99), max: n === 0 ? 0 : round(ms[n - 1]!) }, batchRows: { mean: n === 0 ? 0 : round(rows / n), max: maxRows } },
    };
  }
}

const round = (v: number): number => Math.round(v * 1000) / 1000;
