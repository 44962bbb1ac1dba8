/**
 * Durations and sizes written as operators write them in nginx.conf: `30s`, `1m`, `65`, `50m`, `8k`.
 * nginx reads a bare number as seconds for times and bytes for sizes; we do the same.
 */

const TIME_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3 };

/** Milliseconds from `250ms`, `30s`, `1m`, `1h`, a bare number of seconds, or a number (already ms). */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(value);
  if (!m) return undefined;
  const unit = (m[2] ?? 's').toLowerCase();
  return Math.round(Number(m[1]) * (TIME_UNITS[unit] ?? 1000));
}

/** Bytes from `50m`, `8k`, `1g`, `512`, or a number (already bytes). */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*(\d+)\s*([kmg]?b?)\s*$/i.exec(value);
  if (!m) return undefined;
  const mult = SIZE_UNITS[(m[2] ?? '').toLowerCase()];
  return mult === undefined ? undefined : Number(m[1]) * mult;
}
