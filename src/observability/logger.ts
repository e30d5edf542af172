// The process logger: JSON lines (pino) on stdout, never blocking the event loop: a log reader
// that stops reading costs dropped, counted lines, not a stalled broker. (pino's own stdout
// destination writes synchronously: a full pipe blocked the whole broker, SIGTERM included.)
import { writeSync } from 'node:fs';
import { pino } from 'pino';

export type AppLogger = pino.Logger;

/** Default bound of the log bytes waiting for stdout. */
export const DEFAULT_LOG_BUFFER_BYTES = 8 * 1024 * 1024;

/** The stream lines go to: process.stdout, or a test's stream. */
export interface LogOutput {
  write(chunk: string): boolean;
  readonly writableLength: number;
  on(event: 'error', listener: (err: Error) => void): unknown;
  once(event: 'drain', listener: () => void): unknown;
}

/** pino's level-50/60 lines (error, fatal) start so: they pass the bound (they say why the broker fails). */
const URGENT_LINE = /^\{"level":(?:50|60),/;

/**
 * Where log lines go. stdout on a pipe or socket (a container runtime, systemd, a supervisor) is
 * an asynchronous libuv stream in Node.js on POSIX: a write never waits for the reader, and what
 * the reader has not taken yet waits in the stream's buffer, bounded here at `maxBufferBytes`:
 * beyond it, lines are dropped and counted, and once the buffer drains one line says how many.
 * (stdout on a file or a terminal is written synchronously by Node.js, without waiting on a
 * reader.) pino calls `write` once per line.
 */
export class LogSink {
  #dropped = 0;
  /** Dropped lines not yet reported by a log line of their own. */
  #unreported = 0;
  /** Set when stdout refuses writes for good (its reader closed it: EPIPE). */
  #broken: Error | undefined;
  /** A report waits for the buffer's next 'drain'. */
  #reportArmed = false;
  /** Lines are written synchronously, best effort (the last lines before a crash exit). */
  #direct = false;
  /** The drop report is a warning: written only at log levels that show warnings. */
  reportDrops = true;
  readonly #out: LogOutput;
  /** stdout's descriptor, for direct writes (none for a test's stream). */
  readonly #fd: number | undefined;
  readonly #maxBytes: number;

  constructor(opts: { out?: LogOutput; maxBufferBytes?: number } = {}) {
    this.#out = opts.out ?? process.stdout;
    this.#fd = opts.out === undefined ? 1 : undefined;
    this.#maxBytes = opts.maxBufferBytes ?? DEFAULT_LOG_BUFFER_BYTES;
    this.#out.on('error', (err: Error) => {
      // What is buffered or logged later is dropped; the broker goes on
      this.#broken = err;
    });
  }

  /** Lines dropped because the buffer was full or stdout gone (since start). */
  get dropped(): number {
    return this.#dropped;
  }

  /** pino's destination interface: one JSON line. */
  write(line: string): void {
    if (this.#direct) {
      this.#writeNow(line);
      return;
    }
    if (this.#unreported > 0) this.#report();
    if (!this.#send(line)) this.#drop();
  }

  /**
   * From now on write each line at once, synchronously, or lose it (a full pipe): for a crash,
   * whose process exits right after its last line without waiting for the buffer.
   */
  directFromNow(): void {
    this.#direct = true;
  }

  /** Resolves once the lines handed over so far are written, stdout is gone, or `timeoutMs` has passed. */
  async flushed(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!this.#broken && this.#out.writableLength > 0 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  #send(line: string): boolean {
    if (this.#broken) return false;
    const queued = this.#out.writableLength;
    // (a line alone in the buffer always goes, however long)
    if (queued > 0 && queued + line.length > this.#maxBytes && !URGENT_LINE.test(line)) return false;
    this.#out.write(line);
    return true;
  }

  #drop(): void {
    this.#dropped++;
    this.#unreported++;
    this.#armReport();
  }

  /** Report as soon as the buffer drains, even if nothing else is logged then. */
  #armReport(): void {
    if (this.#reportArmed || this.#broken) return;
    this.#reportArmed = true;
    this.#out.once('drain', () => {
      this.#reportArmed = false;
      this.#report();
    });
  }

  /** A line saying how many were dropped, once the buffer has room for it again. */
  #report(): void {
    if (this.#unreported === 0 || this.#broken) return;
    if (!this.reportDrops) {
      this.#unreported = 0; // (counted in tern_log_lines_dropped_total all the same)
      return;
    }
    const line = `${JSON.stringify({ level: 40, time: Date.now(), service: 'tern', msg: 'log lines dropped: stdout was not taking them', dropped: this.#unreported })}\n`;
    if (this.#send(line)) this.#unreported = 0;
    else this.#armReport(); // full again: the buffer drains again later
  }

  #writeNow(line: string): void {
    if (this.#fd === undefined) {
      this.#out.write(line);
      return;
    }
    try {
      writeSync(this.#fd, line);
    } catch {
      this.#dropped++; // stdout takes nothing now (a full non-blocking pipe) or never again
    }
  }
}

/** The process logger, writing to `sink`; the sink reports drops only where warnings show. */
export function createLogger(level: string, sink: LogSink): AppLogger {
  const logger = pino({ level, base: { service: 'tern' } }, sink);
  sink.reportDrops = logger.isLevelEnabled('warn');
  return logger;
}
