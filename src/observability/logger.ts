// The process logger: structured JSON lines (pino) on stdout, written without blocking the event
// loop. A log reader that stops reading (a full pipe, a stalled journald or container log driver,
// a parent that went away without closing its end) must not stop the broker: lines wait in a
// bounded buffer, lines that do not fit are dropped and counted, and the count is logged once the
// reader takes lines again. (pino's own stdout destination writes synchronously: a full pipe
// blocked the whole broker, SIGTERM included.)
import { pino } from 'pino';

export type AppLogger = pino.Logger;

/** Default bound of the log bytes waiting for stdout. */
export const DEFAULT_LOG_BUFFER_BYTES = 8 * 1024 * 1024;

/** The stream lines go to: process.stdout, or a test's stream. */
export interface LogOutput {
  write(chunk: string): boolean;
  readonly writableLength: number;
  on(event: 'error', listener: (err: Error) => void): unknown;
}

/**
 * Where log lines go. stdout on a pipe or socket (a container runtime, systemd, a supervisor) is
 * an asynchronous libuv stream in Node.js on POSIX: a write never waits for the reader, and what
 * the reader has not taken yet waits in the stream's buffer — bounded here at `maxBufferBytes`,
 * beyond which lines are dropped and counted. (stdout on a file is written synchronously, which
 * does not wait on a reader; on a terminal likewise, as Node.js does.) pino calls `write` once per line.
 */
export class LogSink {
  /** Lines dropped because the buffer was full or stdout gone (since start). */
  dropped = 0;
  /** Dropped lines not yet reported by a log line of their own. */
  #unreported = 0;
  /** Set when stdout refuses writes for good (its reader closed it: EPIPE). */
  #broken: Error | undefined;
  readonly #out: LogOutput;
  readonly #maxBytes: number;

  constructor(opts: { out?: LogOutput; maxBufferBytes?: number } = {}) {
    this.#out = opts.out ?? process.stdout;
    this.#maxBytes = opts.maxBufferBytes ?? DEFAULT_LOG_BUFFER_BYTES;
    this.#out.on('error', (err: Error) => {
      // What is buffered or logged later is dropped; the broker goes on
      this.#broken = err;
    });
  }

  /** pino's destination interface: one JSON line. */
  write(line: string): void {
    if (this.#unreported > 0 && !this.#broken) this.#report();
    if (!this.#send(line)) {
      this.dropped++;
      this.#unreported++;
    }
  }

  /** Resolves once the lines handed over so far are written, stdout is gone, or `timeoutMs` has passed. */
  async flushed(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#broken && this.#out.writableLength > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  #send(line: string): boolean {
    if (this.#broken || this.#out.writableLength + line.length > this.#maxBytes) return false;
    this.#out.write(line);
    return true;
  }

  /** A line saying how many were dropped, once the buffer has room for it again. */
  #report(): void {
    const line = `${JSON.stringify({ level: 40, time: Date.now(), service: 'tern', dropped: this.#unreported, msg: 'log lines dropped: stdout was not taking them' })}\n`;
    if (this.#send(line)) this.#unreported = 0;
  }
}

export function createLogger(level: string, sink: LogSink = new LogSink()): AppLogger {
  return pino({ level, base: { service: 'tern' } }, sink);
}
