// The process logger: structured JSON lines (pino) on stdout.
import { pino } from 'pino';

export type AppLogger = pino.Logger;

export function createLogger(level: string): AppLogger {
  return pino({ level, base: { service: 'tern' } });
}
