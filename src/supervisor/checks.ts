/**
 * The supervisor's checks in bluepill's words: memory and cpu (`below`, `every`, `times` n of the
 * last m), http (path, status, body, timeout), flapping (`times` starts `within`, then `retry_in`
 * or give up) and a maximum age. Pure: the supervisor samples and keeps time; these decide.
 */
import { parseDuration, parseSize } from '../config/units.js';

/** n of the last m samples failing fails the check; `times=3` means 3 of the last 3. */
export type Times = { n: number; m: number };
/** What every sampled check has: ms between samples, and when they fail it. */
interface Sampled {
  every: number;
  times: Times;
}
export interface ThresholdSpec extends Sampled {
  kind: 'memory' | 'cpu';
  /** Bytes of RSS (memory) or percent of one core (cpu); a sample at or above it fails. */
  below: number;
}
export interface HttpSpec extends Sampled {
  kind: 'http';
  path: string;
  status: number;
  timeout: number;
  /** A substring the body must contain, or a pattern it must match. */
  body?: string | RegExp;
}
export interface FlappingSpec {
  kind: 'flapping';
  times: number;
  within: number;
  /** null: `retry_in=never`, give up. */
  retryIn: number | null;
}
export type MaxAgeSpec = { kind: 'maxAge'; ms: number };
type SpecByKind = { memory: ThresholdSpec; cpu: ThresholdSpec; http: HttpSpec; flapping: FlappingSpec; maxAge: MaxAgeSpec };
export type CheckKind = keyof SpecByKind;
export type CheckSpec = SpecByKind[CheckKind];
/** The checks a supervisor runs, each optional. */
export type Checks = { [K in CheckKind]?: SpecByKind[K] };
export type CheckProblem = { message: string; fix: string };

/** The settings each check takes, and the example its errors show. */
const GRAMMAR: Record<CheckKind, { keys: readonly string[]; example: string }> = {
  memory: { keys: ['below', 'every', 'times'], example: 'below=300m every=20s times=3/5' },
  cpu: { keys: ['below', 'every', 'times'], example: 'below=90 every=10s times=5' },
  http: { keys: ['path', 'status', 'timeout', 'every', 'times', 'body'], example: 'path=/up status=200 timeout=5s every=10s times=2/3' },
  flapping: { keys: ['times', 'within', 'retry_in'], example: 'times=5 within=1m retry_in=5m' },
  maxAge: { keys: [], example: '24h' },
};
/** Bounds the samples a check keeps. */
const MAX_WINDOW = 100;

class Invalid extends Error {
  constructor(readonly problem: CheckProblem) {
    super(problem.message);
  }
}
function fail(part: string, message: string, fix: string): never {
  throw new Invalid({ message: `"${part}": ${message}`, fix });
}

/** Parses one check from its string (`below=300m every=20s times=3/5`) or object form. */
export function parseCheck<K extends CheckKind>(kind: K, value: unknown): { spec?: SpecByKind[K]; problem?: CheckProblem } {
  try {
    return { spec: Object.freeze(build(kind, value)) as SpecByKind[K] };
  } catch (err) {
    if (err instanceof Invalid) return { problem: err.problem };
    throw err;
  }
}

function build(kind: CheckKind, value: unknown): CheckSpec {
  if (kind === 'maxAge') {
    const ms = parseDuration(value);
    if (ms === undefined || ms <= 0) fail(show(value), 'must be a duration above zero', 'write a duration such as 24h');
    return { kind, ms };
  }
  const f = fields(kind, value);
  const part = (key: string): string => `${key}=${show(f.get(key))}`;
  const duration = (key: string, dflt: number, example: string): number => {
    if (!f.has(key)) return dflt;
    const ms = parseDuration(f.get(key));
    if (ms === undefined || ms <= 0) fail(part(key), 'must be a duration above zero', `write a duration such as ${key}=${example}`);
    return ms;
  };
  const required = (key: string, example: string): void => {
    if (!f.has(key)) fail(kind, `${key} is required`, `write ${key}=${example}, e.g. ${kind}: "${GRAMMAR[kind].example}"`);
  };

  if (kind === 'flapping') {
    required('times', '5');
    const times = integer(f.get('times'));
    if (times === undefined || times < 2) fail(part('times'), 'must be a whole number of starts, at least 2', 'write times=5');
    const retryIn = f.get('retry_in') === 'never' ? null : duration('retry_in', 300_000, '5m');
    return { kind, times, within: duration('within', 60_000, '1m'), retryIn };
  }

  const every = duration('every', 20_000, '20s');
  const times = f.has('times') ? parseTimes(f.get('times'), part('times')) : { n: 1, m: 1 };
  if (kind === 'http') {
    required('path', '/up');
    const path = f.get('path');
    if (typeof path !== 'string' || !path.startsWith('/')) fail(part('path'), 'must be a path starting with /', 'write path=/up (the check goes through the app socket)');
    const status = f.has('status') ? integer(f.get('status')) : 200;
    if (status === undefined || status < 100 || status > 599) fail(part('status'), 'must be an HTTP status code', 'write status=200');
    const spec: HttpSpec = { kind, path, status, timeout: duration('timeout', 5_000, '5s'), every, times };
    if (f.has('body')) spec.body = parseBody(f.get('body'), part('body'));
    return spec;
  }

  required('below', kind === 'memory' ? '300m' : '90');
  const below = kind === 'memory' ? parseSize(f.get('below')) : percent(f.get('below'));
  if (below === undefined || below <= 0) {
    if (kind === 'memory') fail(part('below'), 'must be a size above zero', 'write a size such as below=300m');
    fail(part('below'), 'must be a percent of one core above zero', 'write a percent such as below=90');
  }
  return { kind, below, every, times };
}

/** The key/value pairs of either form; unknown and repeated keys are refused here. */
function fields(kind: CheckKind, value: unknown): Map<string, unknown> {
  const entries: [string, unknown][] = [];
  if (typeof value === 'string') {
    for (const token of value.trim().split(/\s+/).filter(Boolean)) {
      const eq = token.indexOf('=');
      if (eq <= 0) fail(token, 'is not key=value', `write ${kind}: "${GRAMMAR[kind].example}"`);
      entries.push([token.slice(0, eq), token.slice(eq + 1)]);
    }
  } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    entries.push(...Object.entries(value));
  } else {
    fail(show(value), 'must be a string or an object', `write ${kind}: "${GRAMMAR[kind].example}"`);
  }
  const out = new Map<string, unknown>();
  for (const [key, v] of entries) {
    if (!GRAMMAR[kind].keys.includes(key)) fail(`${key}=${show(v)}`, `unknown ${kind} setting`, `use ${GRAMMAR[kind].keys.join(', ')}`);
    if (out.has(key)) fail(`${key}=${show(v)}`, `${key} given twice`, 'keep one');
    out.set(key, v);
  }
  return out;
}

function parseTimes(value: unknown, part: string): Times {
  let nm: unknown[] = [value, value];
  if (Array.isArray(value)) nm = value.length === 2 ? value : [];
  else if (typeof value === 'string' && value.includes('/')) nm = value.split('/').length === 2 ? value.split('/') : [];
  const n = integer(nm[0]);
  const m = integer(nm[1]);
  if (n === undefined || m === undefined || n < 1) fail(part, 'must be n/m (n of the last m samples) or n, whole numbers from 1', 'write times=3/5');
  if (n > m) fail(part, 'n must not exceed m', 'write times=3/5');
  if (m > MAX_WINDOW) fail(part, `m must be at most ${MAX_WINDOW}`, 'write a shorter window, or a longer every');
  return { n, m };
}

/** A substring, or `/pattern/flags`; g and y are refused since they make `test` stateful. */
function parseBody(value: unknown, part: string): string | RegExp {
  if (typeof value !== 'string' || value === '') return fail(part, 'must be a non-empty string', 'write body=ok or body=/^ok$/');
  const re = /^\/(.+)\/([a-z]*)$/.exec(value);
  if (!re) return value;
  if (/[gy]/.test(re[2] ?? '')) fail(part, 'flags g and y make the match depend on the last one', `drop them: body=/${re[1]}/${re[2]?.replace(/[gy]/g, '')}`);
  try {
    return new RegExp(re[1] as string, re[2]);
  } catch (err) {
    return fail(part, `is not a valid pattern: ${(err as Error).message}`, 'write a JavaScript regex such as body=/^ok$/');
  }
}

function integer(v: unknown): number | undefined {
  const n = typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) ? n : undefined;
}
function percent(v: unknown): number | undefined {
  const n = typeof v === 'string' && /^\d+(\.\d+)?%?$/.test(v.trim()) ? parseFloat(v) : v;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}
function show(v: unknown): string {
  return Array.isArray(v) ? v.join('/') : typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
}

export interface Verdict {
  ok: boolean;
  /** Failing samples among the last `of` (at most m). */
  failing: number;
  of: number;
  message: string;
}

/** The last m pass/fail samples; n failing among them fail the check. */
abstract class WindowCheck {
  private samples: boolean[] = [];
  constructor(private readonly times: Times) {}
  protected push(failed: boolean, head: string): Verdict {
    this.samples.push(failed);
    if (this.samples.length > this.times.m) this.samples.shift();
    const failing = this.samples.filter(Boolean).length;
    const of = this.samples.length;
    const ok = failing < this.times.n;
    const message = `${head} in ${failing} of the last ${of} sample${of === 1 ? '' : 's'}${ok ? ` (fails at ${this.times.n})` : ''}`;
    return { ok, failing, of, message };
  }
  /** After a restart: the new server starts with a clean history. */
  reset(): void {
    this.samples = [];
  }
}

export class ThresholdCheck extends WindowCheck {
  constructor(readonly spec: ThresholdSpec) {
    super(spec.times);
  }
  /** A sample: RSS bytes (memory) or percent of one core (cpu). */
  record(value: number): Verdict {
    const fmt = this.spec.kind === 'memory' ? bytes : (v: number): string => `${Math.round(v)}%`;
    const over = value >= this.spec.below;
    return this.push(over, `${this.spec.kind} ${fmt(value)} ${over ? '>=' : '<'} ${fmt(this.spec.below)}${over ? '' : '; over'}`);
  }
}

export class HttpCheck extends WindowCheck {
  constructor(readonly spec: HttpSpec) {
    super(spec.times);
  }
  record(result: { status?: number; body?: string; error?: string }): Verdict {
    const why = this.failure(result);
    return this.push(why !== undefined, `http ${this.spec.path} ${why ?? `${this.spec.status} ok`}; failed`);
  }
  private failure(r: { status?: number; body?: string; error?: string }): string | undefined {
    if (r.error !== undefined) return r.error;
    if (r.status !== this.spec.status) return `status ${r.status ?? 'none'}, expected ${this.spec.status}`;
    const want = this.spec.body;
    if (want === undefined) return undefined;
    if (typeof want === 'string') return (r.body ?? '').includes(want) ? undefined : `body does not contain ${JSON.stringify(want)}`;
    return want.test(r.body ?? '') ? undefined : `body does not match ${String(want)}`;
  }
}

/** Percent of one core used between two samples of utime+stime (in clock ticks, /proc's unit). */
export function cpuPercent(prev: { ticks: number; at: number }, cur: { ticks: number; at: number }, clockTicks: number): number {
  const ms = cur.at - prev.at;
  const ticks = cur.ticks - prev.ticks;
  // Fewer ticks than before means another process (a worker died): no honest figure, so no failure.
  if (ms <= 0 || ticks < 0 || clockTicks <= 0) return 0;
  return (ticks / clockTicks / (ms / 1000)) * 100;
}

export class FlappingCheck {
  private starts: number[] = [];
  private retryAt: number | undefined;
  private gaveUp = false;
  constructor(readonly spec: FlappingSpec) {}
  /**
   * Call when the app server is started (by us, after a crash). Flapping when this is the
   * `times`th start within `within`: then no start before `retryAt`, or never (`giveUp`).
   */
  recordStart(at: number): { flapping: boolean; retryAt?: number; giveUp?: boolean } {
    if (this.gaveUp) return { flapping: true, giveUp: true };
    if (this.retryAt !== undefined && at < this.retryAt) return { flapping: true, retryAt: this.retryAt };
    this.starts = this.starts.filter((t) => at - t < this.spec.within);
    this.starts.push(at);
    if (this.starts.length < this.spec.times) return { flapping: false };
    // As bluepill does, the history starts over: the retry gets the full `times` again.
    this.starts = [];
    if (this.spec.retryIn === null) {
      this.gaveUp = true;
      return { flapping: true, giveUp: true };
    }
    this.retryAt = at + this.spec.retryIn;
    return { flapping: true, retryAt: this.retryAt };
  }
  /** An operator's `start`: forget the history and any back-off. */
  reset(): void {
    this.starts = [];
    this.retryAt = undefined;
    this.gaveUp = false;
  }
}

export function maxAgeDue(startedAt: number, now: number, maxAgeMs: number): boolean {
  return maxAgeMs > 0 && now - startedAt >= maxAgeMs;
}

function bytes(b: number): string {
  if (b >= 1024 ** 3) return `${(b / 1024 ** 3).toFixed(1)} GiB`;
  if (b >= 1024 ** 2) return `${Math.round(b / 1024 ** 2)} MiB`;
  return `${Math.round(b / 1024)} KiB`;
}
