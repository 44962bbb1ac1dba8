/**
 * One pass over a raw configuration (file merged with flags): defaults applied, every problem
 * collected with its key, the value and the fix, unknown keys rejected; the result frozen.
 */
import { availableParallelism } from 'node:os';
import { isIP } from 'node:net';
import { parseHostPort, parseListener, type Listener } from './address.js';
import { parseDuration, parseSize } from './units.js';
import { parseLadder } from '../supervisor/state.js';
import { parseCheck, type CheckKind } from '../supervisor/checks.js';
import { CONFIG_KEYS, SCHEMA, flagOf, type GatewayConfig, type KeySpec } from './schema.js';

export interface Problem {
  key: string;
  value: unknown;
  message: string;
  fix: string;
}

export class ConfigError extends Error {
  readonly code = 'GW_ERR_CONFIG';
  constructor(readonly problems: Problem[]) {
    super(problems.map(formatProblem).join('\n'));
  }
}

export function formatProblem(p: Problem): string {
  return `${p.key}: ${JSON.stringify(p.value)}: ${p.message}; ${p.fix}`;
}

export function validateConfig(raw: Record<string, unknown>): { config?: GatewayConfig; problems: Problem[] } {
  const problems: Problem[] = [];
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(raw)) {
    // Own keys only: `in` also finds Object.prototype's, so "constructor" or --to-string passed as known.
    if (!Object.hasOwn(SCHEMA, key)) {
      const near = closest(key, CONFIG_KEYS);
      problems.push({ key, value: raw[key], message: 'unknown key', fix: near ? `did you mean "${near}" (${flagOf(near)})?` : `remove it; known keys: ${CONFIG_KEYS.join(', ')}` });
    }
  }
  for (const key of CONFIG_KEYS) {
    const spec: KeySpec = SCHEMA[key];
    const value = key in raw && raw[key] !== undefined ? raw[key] : spec.default;
    const res = convert(key, spec, value);
    if ('problem' in res) problems.push({ key, value, ...res.problem });
    else out[key] = res.value;
  }
  if (problems.length === 0) crossCheck(out, problems);
  if (problems.length > 0) return { problems };
  return { config: deepFreeze(out) as unknown as GatewayConfig, problems };
}

type Converted = { value: unknown } | { problem: { message: string; fix: string } };

function convert(key: string, spec: KeySpec, value: unknown): Converted {
  if (value === null) {
    return spec.nullable ? { value: null } : { problem: { message: 'may not be null', fix: `give a value or drop the key (default ${JSON.stringify(spec.default)})` } };
  }
  switch (spec.kind) {
    case 'string':
    case 'path':
      if (typeof value !== 'string' || value === '') return { problem: { message: 'must be a non-empty string', fix: 'write it as a quoted string' } };
      if (spec.kind === 'path' && !value.startsWith('/')) return { problem: { message: 'must be an absolute path', fix: `write the full path, e.g. "/tmp/web_server.sock"` } };
      return { value };
    case 'enum':
      if (typeof value !== 'string' || !spec.values?.includes(value)) return { problem: { message: 'is not one of the allowed values', fix: `use one of: ${spec.values?.join(', ')}` } };
      return { value };
    case 'bool':
      if (typeof value === 'boolean') return { value };
      if (value === 'on' || value === 'true') return { value: true };
      if (value === 'off' || value === 'false') return { value: false };
      return { problem: { message: 'must be true or false', fix: 'write true, false, on or off' } };
    case 'workers': {
      if (value === 'auto') return { value: availableParallelism() };
      const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 256) return { problem: { message: 'must be auto or a whole number from 0 to 256', fix: 'write auto (one per core), 0 (one process) or a number of worker processes' } };
      return { value: n };
    }
    case 'count': {
      const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) return { problem: { message: 'must be a whole number of at least 1', fix: `e.g. ${JSON.stringify(spec.default)}` } };
      return { value: n };
    }
    case 'duration': {
      const ms = parseDuration(value);
      if (ms === undefined) return { problem: { message: 'is not a duration', fix: 'write it as nginx does: 60s, 500ms, 2m, 1h, or a number of seconds' } };
      return { value: ms };
    }
    case 'size': {
      const b = parseSize(value);
      if (b === undefined) return { problem: { message: 'is not a size', fix: 'write it as nginx does: 512, 8k, 50m, 1g (bytes, KiB, MiB, GiB)' } };
      return { value: b };
    }
    case 'hostport': {
      const hp = parseHostPort(String(value));
      if (!hp) return { problem: { message: 'is not HOST:PORT', fix: 'write e.g. 127.0.0.1:9145 or [::1]:9145' } };
      return { value: hp };
    }
    case 'listen': {
      const list = Array.isArray(value) ? value : [value];
      if (list.length === 0) return { problem: { message: 'needs at least one listener', fix: `e.g. ["0.0.0.0:80"]` } };
      const parsed = [];
      for (const item of list) {
        const l = parseListener(item);
        if ('problem' in l) return { problem: { message: `${JSON.stringify(item)} ${l.problem}`, fix: 'write e.g. 0.0.0.0:80, [::]:80 or 8080, followed by proxy_protocol if a load balancer sends the PROXY protocol ("0.0.0.0:80 proxy_protocol")' } };
        parsed.push(l);
      }
      return { value: parsed };
    }
    case 'header':
      // RFC 9110 5.1: a field name is a token; `proxy_protocol` is one too.
      if (typeof value !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value)) return { problem: { message: 'is not a header name', fix: 'write e.g. X-Forwarded-For, X-Real-IP, CF-Connecting-IP or proxy_protocol' } };
      return { value };
    case 'methods': {
      const list = Array.isArray(value) ? value : String(value).split(/[\s,]+/).filter(Boolean);
      for (const item of list) {
        if (typeof item !== 'string' || !/^[A-Z]+$/.test(item)) return { problem: { message: `${JSON.stringify(item)} is not an HTTP method`, fix: 'write methods in upper case, e.g. ["GET", "HEAD", "PUT"]' } };
      }
      return { value: list };
    }
    case 'env': {
      const list = Array.isArray(value) ? value : [value];
      const env: Record<string, string> = {};
      for (const item of list) {
        const m = typeof item === 'string' ? /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(item) : null;
        if (!m) return { problem: { message: `${JSON.stringify(item)} is not K=V`, fix: 'write e.g. RACK_ENV=production' } };
        env[m[1] as string] = m[2] as string;
      }
      return { value: env };
    }
    case 'ladder': {
      const steps = typeof value === 'string' ? parseLadder(value, parseDuration) : 'not a string';
      if (typeof steps === 'string') return { problem: { message: steps, fix: 'write signals and waits in order, e.g. QUIT/30s,TERM/11s,KILL' } };
      return { value: steps };
    }
    case 'check': {
      const res = parseCheck(spec.values?.[0] as CheckKind, value);
      if (!res.spec) return { problem: res.problem ?? { message: 'is not a check', fix: 'see docs/supervisor.md' } };
      return { value: res.spec };
    }
    case 'cidrs': {
      const list = Array.isArray(value) ? value : [value];
      for (const item of list) {
        if (typeof item !== 'string' || !isCidr(item)) return { problem: { message: `${JSON.stringify(item)} is not an address or CIDR`, fix: 'write e.g. 10.0.0.0/8, 192.168.1.7 or fd00::/8' } };
      }
      return { value: list };
    }
  }
}

/** Problems no single key shows. */
function crossCheck(out: Record<string, unknown>, problems: Problem[]): void {
  const header = out.realIpHeader as string;
  if (header.toLowerCase() === 'proxy_protocol' && !(out.listen as Listener[]).some((l) => l.proxyProtocol)) {
    problems.push({ key: 'realIpHeader', value: header, message: 'no listener reads the PROXY protocol', fix: 'add proxy_protocol to the listener the load balancer connects to ("0.0.0.0:80 proxy_protocol"), or name a header' });
  }
}

export function isCidr(text: string): boolean {
  const [addr, bits, extra] = text.split('/');
  if (extra !== undefined || addr === undefined) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d+$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const w = word.toLowerCase().replace(/[-_]/g, '');
  for (const c of candidates) {
    const d = distance(w, c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j] as number;
      row[j] = Math.min(cur + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length] as number;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
