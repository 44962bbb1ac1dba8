/**
 * Worker processes, nginx's master/worker split (`workers` ≥ 1). The primary binds the listening
 * sockets (as root, for port 80) without accepting on them, and starts N workers that inherit them
 * as file descriptors and accept directly (the kernel spreads connections; no connection passes
 * through the primary). Workers run as `--user` from their first instruction: the processes that
 * parse public traffic never hold root. The primary keeps the supervisor, the control socket and
 * the admin listener, and drives every worker's gate over an IPC channel: pause/resume, drain,
 * pool recycling and "the app is up" reach all of them; status and metrics are summed. A worker
 * that dies is started again (after 100 ms, doubling up to 5 s while it keeps dying).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { isIPv6, type AddressInfo } from 'node:net';
import net from 'node:net';
import { getSystemErrorName } from 'node:util';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { Logger } from './log/logger.js';
import type { GateControl } from './supervisor/supervisor.js';

/** The environment variable that makes `gateway run` a worker, with what it inherits. */
export const WORKER_ENV = 'GATEWAY_WORKER';

/** What a worker is handed: its index and the listeners as descriptors in its own table. */
export interface WorkerBoot {
  index: number;
  listen: { host: string; port: number; fd: number }[];
}

/** Gate state of one worker (or the sum of all). */
export interface GateView {
  upstreamUp: boolean;
  paused: boolean;
  held: number;
  heldBytes: number;
  stats: Record<string, number>;
}

/** Primary → worker. */
export type ToWorker =
  | { t: 'pause' | 'resume'; reason: string }
  | { t: 'upstreamUp' | 'reopen' }
  | { t: 'stop'; graceful: boolean }
  | { t: 'drain'; id: number; ms: number }
  | { t: 'recycle' | 'status' | 'metrics' | 'reload'; id: number };

/** Worker → primary. */
export type FromWorker = { t: 'ready'; addresses: AddressInfo[] } | { t: 'reply'; id: number; value?: unknown; error?: string };

/** A listening socket the primary bound and holds without accepting. */
export interface BoundListener {
  host: string;
  port: number;
  fd: number;
  address: AddressInfo;
  close(): void;
}

interface RawHandle {
  fd: number;
  getsockname(out: Record<string, unknown>): number;
  close(): void;
}

/**
 * Binds host:port (or takes `fd`, handed over by a USR2) as a TCP server socket in this process
 * without listening on it here: the workers' listen() puts it in the LISTEN state, and only they
 * accept. Node's own net._createServerHandle, which its cluster primary uses the same way.
 */
export function bindListener(host: string, port: number, fd?: number): BoundListener {
  const create = (net as unknown as { _createServerHandle(address: string | null, port: number | null, addressType: number | null, fd?: number, flags?: number): RawHandle | number })._createServerHandle;
  const v6 = isIPv6(host);
  // UV_TCP_IPV6ONLY: an IPv6 listener is IPv6 only, as nginx's default (ProxyServer.listen does the same).
  const handle = fd === undefined ? create(host, port, v6 ? 6 : 4, undefined, v6 ? 1 : 0) : create(null, null, null, fd);
  if (typeof handle === 'number') {
    const code = getSystemErrorName(handle);
    throw Object.assign(new Error(`${code} ${host}:${port}`), { code, address: host, port });
  }
  const out: Record<string, unknown> = {};
  handle.getsockname(out);
  return {
    host,
    port,
    fd: handle.fd,
    address: { address: String(out.address ?? host), family: String(out.family ?? (v6 ? 'IPv6' : 'IPv4')), port: Number(out.port ?? port) },
    close: () => handle.close(),
  };
}

interface Worker {
  index: number;
  proc: ChildProcess;
  ready: boolean;
}

export interface WorkerPoolOptions {
  count: number;
  listeners: BoundListener[];
  /** Run the workers as this user (the primary is root): `--user`. */
  uid?: number;
  gid?: number;
  /** How long a graceful stop may take before workers are killed. */
  shutdownTimeout: number;
}

export class WorkerPool implements GateControl {
  private readonly workers: (Worker | undefined)[] = [];
  private readonly pausedBy = new Set<string>();
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; left: number; values: unknown[] }>();
  private stopping = false;
  private readonly backoff: number[] = [];

  constructor(
    private readonly o: WorkerPoolOptions,
    private readonly log: Logger,
  ) {}

  /** Starts every worker; resolves once all of them listen. */
  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.o.count }, (_, i) => this.spawnOne(i)));
  }

  get pids(): number[] {
    return this.workers.flatMap((w) => (w?.proc.pid === undefined ? [] : [w.proc.pid]));
  }

  private spawnOne(index: number): Promise<void> {
    const fds = this.o.listeners.map((l) => l.fd);
    const boot: WorkerBoot = { index, listen: this.o.listeners.map((l, i) => ({ host: l.host, port: l.port, fd: 4 + i })) };
    const proc = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...fds],
      env: { ...process.env, [WORKER_ENV]: JSON.stringify(boot) },
      ...(this.o.uid !== undefined ? { uid: this.o.uid, gid: this.o.gid } : {}),
    });
    const w: Worker = { index, proc, ready: false };
    this.workers[index] = w;
    return new Promise((resolve, reject) => {
      proc.on('message', (m: FromWorker) => {
        if (m.t === 'ready') {
          w.ready = true;
          this.backoff[index] = 0;
          // A worker started again takes the state the others are in.
          for (const reason of this.pausedBy) this.sendTo(w, { t: 'pause', reason });
          this.log.info({ worker: index, pid: proc.pid }, 'worker ready');
          resolve();
        } else if (m.t === 'reply') this.onReply(m);
      });
      proc.once('exit', (code, signal) => {
        this.workers[index] = undefined;
        // A request waiting on this worker's reply gets none: count it as answered.
        for (const [id, p] of this.pending) this.settle(id, p, undefined);
        if (!w.ready) reject(new Error(`worker ${index} exited (${signal ?? `code ${code}`}) before it listened`));
        if (this.stopping || !w.ready) return;
        const wait = Math.min(5000, Math.max(100, (this.backoff[index] ?? 0) * 2));
        this.backoff[index] = wait;
        this.log.error({ worker: index, pid: proc.pid, code, signal, restartInMs: wait }, 'worker died; starting it again');
        setTimeout(() => {
          if (!this.stopping) this.spawnOne(index).catch((err: unknown) => this.log.error({ worker: index, reason: (err as Error).message }, 'worker failed to start'));
        }, wait).unref();
      });
      proc.once('error', reject);
    });
  }

  private sendTo(w: Worker, m: ToWorker): void {
    if (w.proc.connected) w.proc.send(m, (err) => err && this.log.debug({ worker: w.index, reason: err.message }, 'worker message not sent'));
  }

  private broadcast(m: ToWorker): void {
    for (const w of this.workers) if (w?.ready) this.sendTo(w, m);
  }

  /** Asks every ready worker; resolves with their answers (undefined for one that died meanwhile). */
  private ask(make: (id: number) => ToWorker): Promise<unknown[]> {
    const ready = this.workers.filter((w): w is Worker => w?.ready === true);
    if (ready.length === 0) return Promise.resolve([]);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, left: ready.length, values: [] });
      for (const w of ready) this.sendTo(w, make(id));
    });
  }

  private onReply(m: { id: number; value?: unknown; error?: string }): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.error !== undefined) {
      this.pending.delete(m.id);
      p.reject(new Error(m.error));
      return;
    }
    this.settle(m.id, p, m.value);
  }

  private settle(id: number, p: { resolve: (v: unknown) => void; left: number; values: unknown[] }, value: unknown): void {
    p.values.push(value);
    if (--p.left > 0) return;
    this.pending.delete(id);
    p.resolve(p.values);
  }

  pause(reason: string): void {
    this.pausedBy.add(reason);
    this.broadcast({ t: 'pause', reason });
  }

  resume(reason: string): void {
    this.pausedBy.delete(reason);
    this.broadcast({ t: 'resume', reason });
  }

  async drain(timeoutMs: number): Promise<boolean> {
    const all = await this.ask((id) => ({ t: 'drain', id, ms: timeoutMs }));
    return all.every((v) => v !== false);
  }

  async recyclePool(): Promise<void> {
    await this.ask((id) => ({ t: 'recycle', id }));
  }

  upstreamUp(): void {
    this.broadcast({ t: 'upstreamUp' });
  }

  reopenLogs(): void {
    this.broadcast({ t: 'reopen' });
  }

  /** The workers' gates summed: held requests and stats add up; paused if any is; up if all are. */
  async status(): Promise<GateView> {
    const views = (await this.ask((id) => ({ t: 'status', id }))).filter((v): v is GateView => v !== undefined);
    const stats: Record<string, number> = {};
    for (const v of views) for (const [k, n] of Object.entries(v.stats)) stats[k] = (stats[k] ?? 0) + n;
    return {
      upstreamUp: views.every((v) => v.upstreamUp),
      paused: this.pausedBy.size > 0 || views.some((v) => v.paused),
      held: views.reduce((n, v) => n + v.held, 0),
      heldBytes: views.reduce((n, v) => n + v.heldBytes, 0),
      stats,
    };
  }

  async metrics(): Promise<MetricObjectWithValues<MetricValue<string>>[][]> {
    return (await this.ask((id) => ({ t: 'metrics', id }))).filter((v): v is MetricObjectWithValues<MetricValue<string>>[] => Array.isArray(v));
  }

  /** HUP: each worker reads the configuration again (the primary has checked it is valid). */
  async reload(): Promise<void> {
    await this.ask((id) => ({ t: 'reload', id }));
  }

  /** Graceful: each worker stops accepting and finishes its requests; then all are gone. */
  async stop(graceful: boolean): Promise<void> {
    this.stopping = true;
    const live = this.workers.filter((w): w is Worker => w !== undefined && w.proc.exitCode === null && w.proc.signalCode === null);
    const exited = live.map((w) => new Promise<void>((resolve) => w.proc.once('exit', () => resolve())));
    for (const w of live) {
      if (w.proc.connected) this.sendTo(w, { t: 'stop', graceful });
      else w.proc.kill('SIGKILL');
    }
    const bound = (graceful ? this.o.shutdownTimeout : 0) + 5000;
    const timer = setTimeout(() => {
      for (const w of live) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
    }, bound);
    await Promise.all(exited);
    clearTimeout(timer);
  }
}
