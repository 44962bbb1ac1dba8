/**
 * For the supervisor's integration tests: the fixture apps of test/fixtures/apps/ as an
 * --app-command, what they record (events, request arrivals), the control socket, a steady load of
 * GETs and POSTs through the gateway, and cleanup of every process group a test started.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool, request } from 'undici';
import { sendCommand } from '../../src/control/client.js';
import { runCli } from './gateway.js';

export const APPS_DIR = fileURLToPath(new URL('../fixtures/apps/', import.meta.url));

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Where one fixture app keeps its socket, PID file and records, all in the test's mkdtemp dir. */
export interface AppFiles {
  sock: string;
  pidFile: string;
  events: string;
  record: string;
}

export function appFiles(dir: string): AppFiles {
  return { sock: join(dir, 'app.sock'), pidFile: join(dir, 'app.pid'), events: join(dir, 'events.log'), record: join(dir, 'record.log') };
}

/** The argv of a fixture app (`grows`, `steady`...) with the files it uses and `extra` flags. */
export function appArgv(name: string, f: AppFiles, extra: string[] = []): string[] {
  return [process.execPath, join(APPS_DIR, `${name}.mjs`), '--socket', f.sock, '--pid', f.pidFile, '--events', f.events, '--record', f.record, ...extra];
}

/** The same as one --app-command string (the supervisor runs it with `sh -c 'exec ...'`); mkdtemp paths hold no spaces. */
export function appCommand(name: string, f: AppFiles, extra: string[] = []): string {
  return appArgv(name, f, extra).join(' ');
}

/** One line of the events file: "<ms> <what> <pid>". */
export interface AppEvent {
  t: number;
  what: string;
  pid: number;
}

export function readEvents(file: string): AppEvent[] {
  return readLines(file).map((l) => {
    const [t = '0', what = '', pid = '0'] = l.split(' ');
    return { t: Number(t), what, pid: Number(pid) };
  });
}

/** One line of the record file: a request as it reached the app. */
export interface Arrival {
  method: string;
  id: string;
  pid: number;
}

export function readRecord(file: string): Arrival[] {
  return readLines(file).map((l) => {
    const [method = '', id = '', pid = '0'] = l.split(' ');
    return { method, id, pid: Number(pid) };
  });
}

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
  } catch {
    return [];
  }
}

/** The `app` object of `gateway status`. */
export interface AppStatus {
  phase: string;
  pid: number | null;
  restarts: Record<'manual' | 'memory' | 'cpu' | 'http' | 'crash' | 'flapping' | 'age', number>;
  checkFailures: Record<string, number>;
  flapping: boolean;
  lastRestartMs: number;
  rssBytes: number;
}

export async function appStatus(control: string): Promise<AppStatus> {
  const reply = await sendCommand(control, 'status', {}, 5000);
  if (reply.ok !== true) throw new Error(`status failed: ${JSON.stringify(reply)}`);
  return reply.app as AppStatus;
}

/** `gateway <command> --control PATH` as an operator or deploy script runs it, timed. */
export async function gatewayCommand(command: string, control: string): Promise<{ code: number | null; stdout: string; stderr: string; ms: number; reply?: Record<string, unknown> }> {
  const t0 = performance.now();
  const r = await runCli([command, '--control', control]);
  const ms = performance.now() - t0;
  let reply: Record<string, unknown> | undefined;
  try {
    reply = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    reply = undefined;
  }
  return { ...r, ms, reply };
}

export async function waitUntil(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(20);
  }
}

/** What the client saw for one request of the load. */
export interface Outcome {
  id: string;
  method: 'GET' | 'POST';
  /** 0: no response at all (the error is in `error`). */
  status: number;
  error?: string;
  /** The pid the app answered with (200 only). */
  pid?: number;
  start: number;
  end: number;
}

/**
 * A steady load through the gateway: `loops` loops, half on a keep-alive connection and half on a
 * new connection per request, each alternating GET and POST (a 2 KB body), each request tagged with
 * a unique X-Req-Id that the fixture app records on arrival; `pauseMs` between two requests of a loop;
 * `path` (default /load; `/load?delay=100` keeps each request in flight that long).
 */
export class Load {
  readonly outcomes: Outcome[] = [];
  private running = true;
  private readonly loops: Promise<void>[] = [];
  private readonly pools: Pool[] = [];
  private seq = 0;
  private readonly path: string;

  constructor(
    private readonly url: string,
    opts: { loops?: number; pauseMs?: number; tag?: string; path?: string } = {},
  ) {
    this.path = opts.path ?? '/load';
    const loops = opts.loops ?? 4;
    const tag = opts.tag ?? 'r';
    for (let i = 0; i < loops; i++) {
      const keepAlive = i % 2 === 0;
      const pool = keepAlive ? new Pool(url, { connections: 1 }) : undefined;
      if (pool) this.pools.push(pool);
      this.loops.push(this.loop(`${tag}${i}`, i, pool, opts.pauseMs ?? 20));
    }
  }

  private async loop(name: string, index: number, pool: Pool | undefined, pauseMs: number): Promise<void> {
    for (let n = 0; this.running; n++) {
      // Odd loops start with a POST, so both methods are in flight at any moment.
      const method = (n + index) % 2 === 0 ? 'GET' : 'POST';
      await this.one(`${name}-${n}-${++this.seq}`, method, pool);
      if (pauseMs > 0) await sleep(pauseMs);
    }
  }

  async one(id: string, method: 'GET' | 'POST', pool?: Pool): Promise<Outcome> {
    const start = performance.now();
    const o: Outcome = { id, method, status: 0, start, end: start };
    try {
      const opts = {
        method,
        headers: { 'x-req-id': id, ...(method === 'POST' ? { 'content-type': 'application/octet-stream' } : {}) },
        body: method === 'POST' ? Buffer.alloc(2048, 0x62) : undefined,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      };
      const res = pool ? await pool.request({ path: this.path, ...opts }) : await request(`${this.url}${this.path}`, { ...opts, reset: true });
      o.status = res.statusCode;
      const text = await res.body.text();
      if (res.statusCode === 200) o.pid = (JSON.parse(text) as { pid: number }).pid;
    } catch (err) {
      o.error = (err as Error).message;
    }
    o.end = performance.now();
    this.outcomes.push(o);
    return o;
  }

  async stop(): Promise<Outcome[]> {
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all(this.pools.map((p) => p.close()));
    return this.outcomes;
  }
}

/** POST ids the app saw more than once: a POST sent twice. */
export function duplicatePosts(record: Arrival[]): string[] {
  const seen = new Map<string, number>();
  for (const a of record) if (a.method === 'POST') seen.set(a.id, (seen.get(a.id) ?? 0) + 1);
  return [...seen].filter(([, n]) => n > 1).map(([id]) => id);
}

/** A short account of the outcomes that were not 200, for assertion messages. */
export function failures(outcomes: Outcome[]): string[] {
  return outcomes.filter((o) => o.status !== 200).map((o) => `${o.method} ${o.id}: ${o.status || o.error}`);
}

/** Live processes whose command line contains `needle` (a test's mkdtemp dir), by pgrep. */
export function processesMatching(needle: string): string[] {
  const r = spawnSync('pgrep', ['-af', needle], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter((l) => l !== '' && !l.includes('pgrep'));
}

/**
 * SIGKILL to the process group of every pid in `pids` still running with `needle` in its command
 * line (so a reused PID is left alone). Fixture apps run in their own process group (the supervisor
 * spawns them detached, and so do the tests), so the group is the app and anything it forked.
 */
export function killGroups(pids: Iterable<number>, needle: string): void {
  for (const pid of new Set(pids)) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!cmdline.includes(needle)) continue;
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // not a group leader, or gone
      }
    }
  }
}
