/**
 * The gate: requests wait here while the app server cannot accept (its socket is missing, refuses,
 * or its backlog is full) or while the gate is paused on purpose (a deploy), and go on in arrival
 * order the moment it accepts again. Nothing was sent upstream for a held request, so holding is
 * safe for every method, POST included.
 *
 * How "back" is noticed, fastest first: the supervisor says so (resume / upstreamStarted); the
 * socket file appears in its directory (fs.watch); a connect probe succeeds. The probe runs every
 * `probeInterval` (10 ms) while the upstream is down, which also covers the servers whose socket
 * file never goes away (Unicorn: ECONNREFUSED while no master listens). A probe is one connect()
 * on a Unix socket: microseconds of work, never an HTTP request.
 *
 * Bounded: each held request waits at most `holdTimeout` from its arrival, at most `maxRequests`
 * wait at once, holding at most `maxBytes` of request data (heads; bodies stay in the client's TCP
 * buffers because nothing reads them). Past a bound the owner answers 503 with Retry-After.
 */
import { watch, type FSWatcher } from 'node:fs';
import net from 'node:net';
import { basename, dirname } from 'node:path';
import { checkSocket, FOREIGN_SOCKET, type SocketCheck } from './socket-identity.js';

export interface GateOptions {
  socketPath: string;
  /** Longest wait per request, from its arrival, in ms; 0 turns holding off. */
  holdTimeout: number;
  maxRequests: number;
  maxBytes: number;
  /** Probe period while the upstream is down, in ms. */
  probeInterval?: number;
  /** Who may own the socket; a probe never reports a foreign socket as up. */
  socketCheck?: SocketCheck;
  /** Told how long each released request waited, in ms (metrics). */
  onRelease?: (waitedMs: number) => void;
  /** Told when a probe finds a socket it refuses (logged loudly by the owner). */
  onForeign?: (err: Error) => void;
}

/** One waiting request, as the owner sees it. */
export interface Waiter {
  /** Arrival time (performance.now()); the deadline counts from here. */
  readonly arrived: number;
  /** Bytes this request keeps in memory while held. */
  readonly bytes: number;
  /** Go on: dispatch now. */
  release(): void;
  /** Held past its deadline: answer 503. */
  expire(): void;
}

export type Admission = 'held' | 'overflow' | 'off';

export interface GateStats {
  held: number;
  released: number;
  expired: number;
  overflowed: number;
  cancelled: number;
  replayed: number;
  /** Sum of the time released requests waited, in ms. */
  heldMs: number;
  /** Longest time a released request waited, in ms. */
  maxHeldMs: number;
}

interface Entry {
  waiter: Waiter;
  timer: NodeJS.Timeout | undefined;
}

/** Errors of a connect attempt that mean "the app server is not accepting right now". */
export const DOWN_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN', FOREIGN_SOCKET]);

export class Gate {
  private up = true;
  private pausedBy = new Set<string>();
  private readonly queue = new Map<Waiter, Entry>();
  private bytes = 0;
  private watcher: FSWatcher | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private closed = false;
  /** When the upstream last came back (performance.now()), for the "time to first release" figure. */
  lastUpAt = 0;
  readonly stats: GateStats = { held: 0, released: 0, expired: 0, overflowed: 0, cancelled: 0, replayed: 0, heldMs: 0, maxHeldMs: 0 };
  /** Called when the gate's state changes (metrics, logs). */
  onChange: ((event: 'down' | 'up' | 'paused' | 'resumed') => void) | undefined;

  constructor(private readonly o: GateOptions) {}

  /** A reload (HUP): new bounds apply to requests held from now on; those waiting keep their deadline. */
  setBounds(b: Pick<GateOptions, 'holdTimeout' | 'maxRequests' | 'maxBytes'>): void {
    this.o.holdTimeout = b.holdTimeout;
    this.o.maxRequests = b.maxRequests;
    this.o.maxBytes = b.maxBytes;
  }

  /** Requests may go straight upstream. */
  get open(): boolean {
    return this.up && this.pausedBy.size === 0;
  }

  get upstreamUp(): boolean {
    return this.up;
  }

  get paused(): boolean {
    return this.pausedBy.size > 0;
  }

  get depth(): number {
    return this.queue.size;
  }

  get heldBytes(): number {
    return this.bytes;
  }

  /** Admits a waiter to the queue, or says why not. */
  hold(w: Waiter): Admission {
    if (this.o.holdTimeout === 0 || this.closed) return 'off';
    if (this.queue.size >= this.o.maxRequests || this.bytes + w.bytes > this.o.maxBytes) {
      this.stats.overflowed++;
      return 'overflow';
    }
    const left = w.arrived + this.o.holdTimeout - performance.now();
    if (left <= 0) {
      this.stats.expired++;
      return 'overflow';
    }
    const entry: Entry = { waiter: w, timer: undefined };
    entry.timer = setTimeout(() => {
      if (this.remove(w)) {
        this.stats.expired++;
        w.expire();
      }
    }, left);
    this.queue.set(w, entry);
    this.bytes += w.bytes;
    this.stats.held++;
    // The upstream may have come back between the failure and now.
    if (this.open) queueMicrotask(() => this.releaseAll());
    return 'held';
  }

  /** The client went away while held: nothing is sent upstream for it. */
  cancel(w: Waiter): void {
    if (this.remove(w)) this.stats.cancelled++;
  }

  /** A connect failed with one of DOWN_CODES: hold from now on and watch for the socket. */
  upstreamDown(): void {
    // Holding off: nothing waits, so there is nothing to watch for.
    if (this.closed || this.o.holdTimeout === 0) return;
    if (this.up) {
      this.up = false;
      this.onChange?.('down');
    }
    this.watchSocket();
    this.scheduleProbe(0);
  }

  /** The supervisor (or a probe) knows the upstream accepts: release at once. */
  upstreamUpNow(): void {
    this.stopWatching();
    if (!this.up) {
      this.up = true;
      this.lastUpAt = performance.now();
      this.onChange?.('up');
    }
    this.releaseAll();
  }

  /** Hold every new request until resume() with the same reason (deploys, restarts). */
  pause(reason = 'manual'): void {
    const was = this.paused;
    this.pausedBy.add(reason);
    if (!was) this.onChange?.('paused');
  }

  resume(reason = 'manual'): void {
    if (!this.pausedBy.delete(reason) || this.paused) return;
    this.onChange?.('resumed');
    // After a pause the upstream may have changed: let a probe confirm before releasing.
    if (this.up) this.releaseAll();
    else this.scheduleProbe(0);
  }

  /** Stop: every waiter expires (the owner answers 503), watchers stop. */
  close(): void {
    this.closed = true;
    this.stopWatching();
    for (const w of [...this.queue.keys()]) {
      this.remove(w);
      this.stats.expired++;
      w.expire();
    }
  }

  private remove(w: Waiter): boolean {
    const e = this.queue.get(w);
    if (!e) return false;
    clearTimeout(e.timer);
    this.queue.delete(w);
    this.bytes -= w.bytes;
    return true;
  }

  private releaseAll(): void {
    if (!this.open || this.queue.size === 0) return;
    // Arrival order: a request sent back to the gate after a failed connect arrived before the
    // ones queued behind it.
    const waiters = [...this.queue.keys()].sort((a, b) => a.arrived - b.arrived);
    const now = performance.now();
    for (const w of waiters) {
      if (!this.open) break; // paused again, or down again, mid-release
      this.remove(w);
      const waited = now - w.arrived;
      this.stats.released++;
      this.stats.heldMs += waited;
      if (waited > this.stats.maxHeldMs) this.stats.maxHeldMs = waited;
      this.o.onRelease?.(waited);
      w.release();
    }
  }

  private watchSocket(): void {
    if (this.watcher) return;
    const name = basename(this.o.socketPath);
    try {
      this.watcher = watch(dirname(this.o.socketPath), { persistent: false }, (_event, file) => {
        if (file === null || file === name) this.scheduleProbe(0);
      });
      this.watcher.on('error', () => this.stopWatcherOnly());
    } catch {
      // The directory itself is missing: probes still run.
      this.watcher = undefined;
    }
  }

  private stopWatcherOnly(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  private stopWatching(): void {
    this.stopWatcherOnly();
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }

  private scheduleProbe(delay: number): void {
    if (this.up || this.closed) return;
    if (delay === 0) {
      clearTimeout(this.probeTimer);
      this.probeTimer = undefined;
      this.probe();
      return;
    }
    if (this.probeTimer) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      this.probe();
    }, delay);
  }

  private probe(): void {
    if (this.probing || this.up || this.closed) return;
    if (this.o.socketCheck) {
      const bad = checkSocket(this.o.socketPath, this.o.socketCheck);
      if (bad) {
        if (bad.code === FOREIGN_SOCKET) this.o.onForeign?.(bad);
        this.scheduleProbe(this.o.probeInterval ?? 10);
        return;
      }
    }
    this.probing = true;
    const s = net.connect(this.o.socketPath);
    s.once('connect', () => {
      this.probing = false;
      s.destroy();
      this.upstreamUpNow();
    });
    s.once('error', () => {
      this.probing = false;
      s.destroy();
      this.scheduleProbe(this.o.probeInterval ?? 10);
    });
  }
}
