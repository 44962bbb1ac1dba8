/** The structured log: pino JSON on stdout, a child per component, secrets redacted. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: {
      paths: ['*.headers.authorization', '*.headers.cookie', 'headers.authorization', 'headers.cookie', '*.authorization', '*.cookie'],
      censor: '[redacted]',
    },
  });
}
