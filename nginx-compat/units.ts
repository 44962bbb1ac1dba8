/**
 * nginx's times and sizes (ngx_parse_time, ngx_parse_size/offset) and their translation into the
 * strings the gateway's config takes (src/config/units.ts): `65` -> `65s`, `1h30m` -> `5400s`.
 */

/** Seconds per unit, largest first; nginx wants units in this order within one value. */
const TIME_UNITS: readonly (readonly [string, number])[] = [
  ['y', 365 * 86_400],
  ['M', 30 * 86_400],
  ['w', 7 * 86_400],
  ['d', 86_400],
  ['h', 3_600],
  ['m', 60],
  ['s', 1],
  ['ms', 0.001],
];

/**
 * Milliseconds from an nginx time: `30`, `60s`, `500ms`, `1h 30m`, `1d12h`. A bare number is
 * seconds; `M` is a month and `m` a minute; each unit at most once, largest first. `seconds` is
 * nginx's is_sec (expires, ssl_session_timeout): `ms` is then refused.
 */
export function parseNginxTime(text: string, seconds = false): number | undefined {
  const re = /(\d+)(ms|[yMwdhms])?\s*/y;
  let total = 0;
  let last = -1;
  let pos = 0;
  const body = text.trim();
  if (body === '') return undefined;
  while (pos < body.length) {
    re.lastIndex = pos;
    const m = re.exec(body);
    if (!m) return undefined;
    pos = re.lastIndex;
    const unit = m[2];
    if (unit === undefined) {
      // A bare number: seconds, and only as the last part.
      if (pos < body.length || last >= TIME_UNITS.length - 2) return undefined;
      total += Number(m[1]) * 1000;
      break;
    }
    const index = TIME_UNITS.findIndex(([u]) => u === unit);
    if (index <= last || (seconds && unit === 'ms')) return undefined;
    last = index;
    total += Number(m[1]) * (TIME_UNITS[index] as readonly [string, number])[1] * 1000;
  }
  return Math.round(total);
}

/** Bytes from an nginx size: `512`, `8k`, `50m`, `1g` (either case). */
export function parseNginxSize(text: string): number | undefined {
  const m = /^(\d+)([kKmMgG])?$/.exec(text);
  if (!m) return undefined;
  const unit = (m[2] ?? '').toLowerCase();
  return Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1);
}

/** The gateway's duration string for an nginx time: kept when the gateway reads it the same. */
export function durationString(text: string, ms: number): string {
  if (/^\d+(ms|s|m|h|d)$/.test(text)) return text;
  if (/^\d+$/.test(text)) return `${text}s`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** The gateway's size string for a number of bytes: `50m`, `8k`, `1g`, `512`. */
export function sizeString(bytes: number): string {
  for (const [unit, mult] of [['g', 1024 ** 3], ['m', 1024 ** 2], ['k', 1024]] as const) {
    if (bytes >= mult && bytes % mult === 0) return `${bytes / mult}${unit}`;
  }
  return String(bytes);
}
