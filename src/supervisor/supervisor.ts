/**
 * The embedded supervisor: bluepill's powers for the one app server behind the gateway. Starts it
 * (or adopts the one named by the PID file), watches it, restarts it without dropping a request,
 * stops it with a signal ladder, and runs the checks. Every change of phase goes through the state
 * machine (state.ts); every signal through signalChecked (the process must be the one we manage).
 *
 * Nothing lost on a restart we order: the gate stops dispatching first (new requests are held),
 * in-flight requests finish (bounded by drainTimeout), pooled upstream connections are recycled
 * (they belong to the old server), and only then is the server signalled; held requests go on the
 * moment the new server answers.
 */
import type { ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import type { Logger } from '../log/logger.js';
import { probeHttp, signalChecked, sleep, socketAccepts, spawnApp, waitExit } from './app-process.js';
import { cpuPercent, FlappingCheck, HttpCheck, maxAgeDue, ThresholdCheck, type Checks } from './checks.js';
import { checkPidIdentity, clearStalePidFile, PidFileError, readPidFile, removePidFile, writePidFile } from './pid-file.js';
import { CLOCK_TICKS, descendants, readProc, startedAtMs, sameProcess, ticksSinceBoot, treeUsage, type ProcInfo } from './proc.js';
import { next, SIGNALS, type Event, type LadderStep, type Phase, type RestartReason } from './state.js';

/** What the supervisor needs from the proxy; implemented in the composition root. */
export interface GateControl {
  pause(reason: string): void;
  resume(reason: string): void;
  /** Resolves true when no request is in flight upstream (held ones keep waiting), false at the bound. */
  drain(timeoutMs: number): Promise<boolean>;
  /** Drops pooled upstream connections: they belong to the server being replaced. */
  recyclePool(): Promise<void>;
  /** The app server accepts: release held requests now. */
  upstreamUp(): void;
}

export interface SupervisorOptions {
  command: string | null;
  cwd: string | null;
  env: Record<string, string>;
  uid?: number;
  gid?: number;
  pidFile: string;
  socketPath: string;
  /** UIDs a PID file (and the processes it names) may belong to. */
  allowedUids: number[];
  restartMode: 'usr2' | 'cold';
  restartTimeout: number;
  startTimeout: number;
  drainTimeout: number;
  stopLadder: readonly LadderStep[];
  /** Path GET through the socket to tell that a (new) server answers. */
  readyPath: string;
  checks: Checks;
  pollInterval: number;
}

export class SupervisorError extends Error {
  readonly code = 'GW_ERR_SUPERVISOR';
}

export class Supervisor {
  phase: Phase = 'idle';
  private server: ProcInfo | undefined;
  private child: ChildProcess | undefined;
  /** We wrote the PID file (the server does not), so we remove it when it stops. */
  private ownPidFile = false;
  /** Why the last adoption failed (the PidFileError's message), for the commands that need a server. */
  private adoptRefusal: string | undefined;
  private startedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private retryTimer: NodeJS.Timeout | undefined;
  readonly restarts: Record<RestartReason, number> = { manual: 0, memory: 0, cpu: 0, http: 0, crash: 0, flapping: 0, age: 0 };
  readonly checkFailures: Record<string, number> = { memory: 0, cpu: 0, http: 0 };
  lastRestartMs = 0;
  private readonly memory?: ThresholdCheck;
  private readonly cpu?: ThresholdCheck;
  private readonly http?: HttpCheck;
  private readonly flapping?: FlappingCheck;
  private lastCpu: { ticks: number; at: number } | undefined;
  private nextCheck: Record<string, number> = {};
  flappingNow = false;

  constructor(
    private readonly o: SupervisorOptions,
    private readonly gate: GateControl,
    private readonly log: Logger,
  ) {
    if (o.checks.memory) this.memory = new ThresholdCheck(o.checks.memory);
    if (o.checks.cpu) this.cpu = new ThresholdCheck(o.checks.cpu);
    if (o.checks.http) this.http = new HttpCheck(o.checks.http);
    if (o.checks.flapping) this.flapping = new FlappingCheck(o.checks.flapping);
  }

  get pid(): number | undefined {
    return this.server?.pid;
  }

  /**
   * The read ends of the output pipes of the server we started, for a USR2 handover of the gateway
   * (the new gateway reads them; the server never writes to a closed pipe). None for an adopted one.
   */
  outputFds(): { stdout?: number; stderr?: number } {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return {};
    const fd = (s: unknown) => (s as { _handle?: { fd?: number } } | null)?._handle?.fd;
    const out: { stdout?: number; stderr?: number } = {};
    const o = fd(child.stdout);
    const e = fd(child.stderr);
    if (o !== undefined && o >= 0) out.stdout = o;
    if (e !== undefined && e >= 0) out.stderr = e;
    return out;
  }

  /** At gateway start: start the server, or adopt the one the PID file names. */
  async init(): Promise<void> {
    this.timer = setInterval(() => void this.tick(), this.o.pollInterval);
    this.timer.unref();
    // A server of ours already running (the gateway itself was restarted): adopt it, start none.
    if (this.adopt(this.o.command !== null)) return;
    if (this.o.command === null) return;
    try {
      await this.start();
    } catch (err) {
      this.log.error({ reason: (err as Error).message }, 'app server failed to start');
      if (this.phase === 'crashed') this.recover();
    }
  }

  /**
   * The gateway is stopping. A server it started goes with it (graceful: the stop ladder; fast:
   * TERM then KILL); one it adopted without a command is left running.
   */
  async shutdown(graceful: boolean): Promise<void> {
    this.close();
    if (this.o.command === null) return;
    // Not waiting for an operation in progress: a server still starting (not yet `this.server`)
    // is our child and goes too, or it would outlive the gateway.
    const child = this.child;
    const server = this.server ?? (child?.pid !== undefined && child.exitCode === null ? readProc(child.pid) : undefined);
    if (!server || this.phase === 'stopped' || this.phase === 'stopping') return;
    this.phase = 'stopping';
    const ladder = graceful ? this.o.stopLadder : [{ signal: 'SIGTERM' as NodeJS.Signals, waitMs: 3000 }, { signal: 'SIGKILL' as NodeJS.Signals, waitMs: 2000 }];
    for (const step of ladder) {
      if (step.signal === 'SIGKILL') for (const w of descendants(server.pid)) signalChecked(w, 'SIGKILL', this.log);
      if (!signalChecked(server, step.signal, this.log)) break;
      if (await waitExit(server, step.waitMs, child)) break;
    }
    if (this.ownPidFile) removePidFile(this.o.pidFile, server.pid);
    this.phase = 'stopped';
  }

  /** Serializes operations: a restart waits for a start in progress, and so on. */
  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private move(event: Event): void {
    const from = this.phase;
    this.phase = next(from, event);
    this.log.info({ from, event, to: this.phase, pid: this.server?.pid }, 'supervisor phase');
  }

  /** Takes over the live server the PID file names; `quiet` when a missing file is expected. */
  private adopt(quiet: boolean): boolean {
    this.adoptRefusal = undefined;
    try {
      const pid = readPidFile(this.o.pidFile, { allowedUids: this.o.allowedUids });
      const info = checkPidIdentity(pid, {});
      if (!this.o.allowedUids.includes(info.uid)) throw new PidFileError(`process ${pid} runs as uid ${info.uid}, not one we manage; refusing to adopt it`, 'foreign-process');
      this.server = info;
      this.startedAt = Date.now();
      this.move('adopt');
      this.log.info({ pid, pidFile: this.o.pidFile }, 'adopted the running app server');
      return true;
    } catch (err) {
      const reason = (err as PidFileError).reason;
      this.adoptRefusal = (err as Error).message;
      if (quiet && (reason === 'missing' || reason === 'stale')) return false;
      this.log.error({ pidFile: this.o.pidFile, reason: (err as Error).message }, 'no app server to adopt');
      return false;
    }
  }

  /**
   * Adopt mode with no server adopted yet (the PID file was missing or refused at start): look at
   * the PID file again, the server may have started since. Bug fixed: `stop` answered ok
   * ("stopped") and `restart` "cannot restart while idle", while the server behind a refused PID
   * file (a symlink, say) ran on; now both fail with the PID file's own reason, signalling nothing.
   */
  private adoptOrRefuse(command: string): void {
    if (this.phase !== 'idle' || this.o.command !== null) return;
    if (!this.adopt(false)) throw new SupervisorError(`cannot ${command}: no app server adopted: ${this.adoptRefusal ?? 'no PID file'}`);
  }

  start(): Promise<void> {
    return this.serial(() => this.doStart());
  }

  private async doStart(): Promise<void> {
    if (this.phase === 'running' || this.phase === 'starting') return;
    if (this.o.command === null) throw new SupervisorError('no --app-command: the gateway cannot start the app server, only adopt one');
    this.move('start');
    clearStalePidFile(this.o.pidFile, this.o.allowedUids);
    const child = spawnApp({ command: this.o.command, cwd: this.o.cwd, env: this.o.env, uid: this.o.uid, gid: this.o.gid }, this.log.child({ output: 'app' }));
    this.child = child;
    child.once('exit', (code, signal) => this.onChildExit(child, code, signal));
    const deadline = Date.now() + this.o.startTimeout;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) break;
      if (await socketAccepts(this.o.socketPath)) {
        const ready = await probeHttp(this.o.socketPath, this.o.readyPath, Math.max(1000, deadline - Date.now()));
        if (ready.status !== undefined) break;
      }
      await sleep(50);
    }
    const info = child.pid === undefined ? undefined : readProc(child.pid);
    if (!info || child.exitCode !== null || child.signalCode !== null || !(await socketAccepts(this.o.socketPath))) {
      this.move('startFailed');
      if (info && child.exitCode === null) await this.ladder(info, child);
      throw new SupervisorError(`app server did not accept on ${this.o.socketPath} within ${this.o.startTimeout} ms (exit ${child.exitCode ?? child.signalCode ?? 'none'})`);
    }
    this.server = info;
    this.adoptPidFile();
    this.startedAt = Date.now();
    this.resetChecks();
    this.move('started');
    this.gate.resume('stopped');
    this.gate.upstreamUp();
  }

  /** The server writes its PID file (Puma, Unicorn) or we write it for it (Thin in the foreground). */
  private adoptPidFile(): void {
    const server = this.server as ProcInfo;
    try {
      const pid = readPidFile(this.o.pidFile, { allowedUids: this.o.allowedUids });
      if (pid === server.pid) return;
    } catch {
      // absent or not usable: ours to write
    }
    writePidFile(this.o.pidFile, server.pid);
    this.ownPidFile = true;
  }

  restart(reason: RestartReason = 'manual'): Promise<{ pid: number; ms: number }> {
    return this.serial(() => this.doRestart(reason));
  }

  private async doRestart(reason: RestartReason): Promise<{ pid: number; ms: number }> {
    this.adoptOrRefuse('restart');
    if (this.phase !== 'running') throw new SupervisorError(`cannot restart while ${this.phase}`);
    const t0 = performance.now();
    this.move('restart');
    this.restarts[reason]++;
    this.log.warn({ reason, pid: this.server?.pid }, 'restarting app server');
    this.gate.pause('restart');
    try {
      const drained = await this.gate.drain(this.o.drainTimeout);
      if (!drained) this.log.warn({ drainTimeout: this.o.drainTimeout }, 'requests still in flight at the drain bound; restarting anyway');
      await this.gate.recyclePool();
      let ok = false;
      if (this.o.restartMode === 'usr2') {
        ok = await this.handoff();
        if (!ok) this.log.error('USR2 handoff did not complete; falling back to a cold restart');
      }
      if (!ok) {
        if (this.o.command === null) {
          this.move('restartFailed');
          throw new SupervisorError('USR2 handoff failed and there is no --app-command to restart cold; the old server is still serving if it was');
        }
        await this.cold();
      }
      this.resetChecks();
      this.startedAt = Date.now();
      this.move('restarted');
    } finally {
      this.gate.resume('restart');
      this.gate.upstreamUp();
    }
    this.lastRestartMs = performance.now() - t0;
    this.log.info({ reason, pid: this.server?.pid, ms: Math.round(this.lastRestartMs) }, 'app server restarted');
    return { pid: (this.server as ProcInfo).pid, ms: this.lastRestartMs };
  }

  /**
   * USR2, then follow the handoff until the new server answers and the old one is gone. Puma
   * re-execs in place (same PID, PID file rewritten); Unicorn starts a new master (new PID in the
   * PID file, the old one in `.oldbin`), which QUITs the old one in before_fork: if it does not,
   * we do, once the new one answers.
   */
  private async handoff(): Promise<boolean> {
    const old = this.server as ProcInfo;
    const mtime = pidFileMtime(this.o.pidFile);
    // A new master is forked by the old one on our USR2, so it starts after this moment (a tick
    // of slack for the rounding of both clocks).
    const signalledAt = ticksSinceBoot() - 1;
    if (!signalChecked(old, SIGNALS.restart, this.log)) return false;
    const deadline = Date.now() + this.o.restartTimeout;
    let fresh: ProcInfo | undefined;
    let refused: number | undefined;
    while (Date.now() < deadline) {
      await sleep(25);
      let pid: number | undefined;
      try {
        pid = readPidFile(this.o.pidFile, { allowedUids: this.o.allowedUids });
      } catch {
        continue; // being rewritten, or renamed to .oldbin
      }
      const info = readProc(pid);
      if (!info || info.state === 'Z' || !this.o.allowedUids.includes(info.uid)) continue;
      if (pid !== old.pid) {
        // Bug fixed: any live process of an allowed user named by the PID file was taken for the
        // new master, then QUIT the old server and managed (and signalled) in its place; a planted
        // or stale PID file naming a process that predates our USR2 is not a new master.
        if (!successorOf(info, old, signalledAt)) {
          if (refused !== pid) this.log.error({ pid, pidFile: this.o.pidFile, usr2To: old.pid }, 'PID file names a process that is not a new master started by our USR2 (another user, or older); not following it');
          refused = pid;
          continue;
        }
        fresh = info;
      } else if (pidFileMtime(this.o.pidFile) !== mtime && sameProcess(info, old)) fresh = info;
      else if (this.ownPidFile && !(await waitExit(old, 0))) fresh = undefined;
      if (!fresh) continue;
      const ready = await probeHttp(this.o.socketPath, this.o.readyPath, Math.max(1000, deadline - Date.now()));
      if (ready.status !== undefined) break;
      fresh = undefined;
    }
    if (!fresh) return false;
    if (fresh.pid !== old.pid && !(await waitExit(old, 10_000))) {
      signalChecked(old, SIGNALS.quitOldMaster, this.log);
      if (!(await waitExit(old, this.o.restartTimeout))) await this.ladder(old);
    }
    this.server = fresh;
    if (fresh.pid !== old.pid) this.child = undefined; // the new master is not our child
    return true;
  }

  /** Stop, then start; the gate holds requests meanwhile. */
  private async cold(): Promise<void> {
    const old = this.server;
    if (old) await this.ladder(old, this.child);
    if (this.ownPidFile && old) removePidFile(this.o.pidFile, old.pid);
    this.phase = 'stopped';
    await this.doStart();
    this.phase = 'restarting';
  }

  stop(): Promise<void> {
    return this.serial(() => this.doStop());
  }

  private async doStop(): Promise<void> {
    clearTimeout(this.retryTimer);
    this.adoptOrRefuse('stop');
    if (this.phase === 'stopped' || this.phase === 'idle') {
      this.phase = 'stopped';
      return;
    }
    const server = this.server;
    this.move('stop');
    // Requests arriving while stopped are held (bounded by holdTimeout) until `start`.
    this.gate.pause('stopped');
    await this.gate.drain(this.o.drainTimeout);
    if (server && this.phase === 'stopping') await this.ladder(server, this.child);
    if (server && this.ownPidFile) removePidFile(this.o.pidFile, server.pid);
    this.server = undefined;
    if (this.phase === 'stopping') this.move('stopped');
  }

  /** QUIT, wait, TERM, wait, KILL (configurable) to the server; on KILL to its workers too. */
  private async ladder(server: ProcInfo, child?: ChildProcess): Promise<void> {
    for (const step of this.o.stopLadder) {
      this.log.info({ pid: server.pid, signal: step.signal }, 'stop ladder');
      // Its workers first on KILL: a master killed outright cannot stop them, and orphans would
      // keep the socket or the memory.
      if (step.signal === 'SIGKILL') for (const w of descendants(server.pid)) signalChecked(w, 'SIGKILL', this.log);
      if (!signalChecked(server, step.signal, this.log)) return;
      if (await waitExit(server, step.waitMs, child)) return;
    }
  }

  private onChildExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child) return;
    this.child = undefined;
    // During a handoff the old master leaving is the plan; during a stop, too.
    if (this.phase !== 'running' && this.phase !== 'starting') return;
    if (this.server && child.pid !== this.server.pid) return;
    // A USR2 someone else sent to a Unicorn we started: the old master leaves once the new one
    // (named by the PID file) runs. Follow it instead of calling it a crash.
    if (this.phase === 'running' && this.followPidFile()) return;
    this.crashed(`exited (${signal ?? code})`);
  }

  private crashed(how: string): void {
    if (this.phase !== 'running' && this.phase !== 'starting') return;
    this.log.error({ pid: this.server?.pid, how }, 'app server died');
    this.server = undefined;
    if (this.phase === 'starting') return; // doStart notices and reports
    this.move('exited');
    this.restarts.crash++;
    this.recover();
  }

  /** From `crashed`: start again, unless flapping (back off, or give up). */
  private recover(): void {
    if (this.o.command === null) {
      this.move('giveUp');
      this.log.error('app server died and there is no --app-command to start it again');
      return;
    }
    const verdict = this.flapping?.recordStart(Date.now());
    if (verdict?.flapping) {
      this.flappingNow = true;
      this.restarts.flapping++;
      this.move('flapping');
      if (verdict.giveUp || verdict.retryAt === undefined) {
        this.move('giveUp');
        this.log.error('app server is flapping; giving up (retry_in never)');
        return;
      }
      const wait = Math.max(0, verdict.retryAt - Date.now());
      this.log.error({ retryInMs: wait }, 'app server is flapping; backing off');
      this.retryTimer = setTimeout(() => {
        this.flappingNow = false;
        this.startAfterCrash();
      }, wait);
      this.retryTimer.unref();
      return;
    }
    this.startAfterCrash();
  }

  private startAfterCrash(): void {
    void this.start().catch((err: unknown) => {
      this.log.error({ reason: (err as Error).message }, 'start failed');
      // A failed start is one more crash for the flapping check.
      if (this.phase === 'crashed') this.recover();
    });
  }

  private resetChecks(): void {
    this.memory?.reset();
    this.cpu?.reset();
    this.http?.reset();
    this.lastCpu = undefined;
  }

  /** The watch loop: liveness every tick, the checks on their own `every`. */
  private async tick(): Promise<void> {
    if (this.phase !== 'running' || !this.server) return;
    const cur = readProc(this.server.pid);
    if (!cur || !sameProcess(cur, this.server) || cur.state === 'Z') {
      // Unicorn's new master after a USR2 we did not order: follow the PID file.
      if (this.followPidFile()) return;
      this.crashed('gone');
      return;
    }
    const now = Date.now();
    const due = (name: string, spec: { every: number } | undefined): boolean => {
      if (!spec) return false;
      if ((this.nextCheck[name] ?? 0) > now) return false;
      this.nextCheck[name] = now + spec.every;
      return true;
    };
    const memoryDue = due('memory', this.o.checks.memory);
    const cpuDue = due('cpu', this.o.checks.cpu);
    const usage = memoryDue || cpuDue ? treeUsage(this.server.pid) : undefined;
    if (usage && memoryDue && this.memory) {
      const v = this.memory.record(usage.rssBytes);
      if (!v.ok) return this.checkFailed('memory', v.message);
    }
    if (usage && cpuDue && this.cpu) {
      const sample = { ticks: usage.cpuTicks, at: now };
      if (this.lastCpu) {
        const v = this.cpu.record(cpuPercent(this.lastCpu, sample, CLOCK_TICKS));
        if (!v.ok) return this.checkFailed('cpu', v.message);
      }
      this.lastCpu = sample;
    }
    if (this.http && due('http', this.o.checks.http)) {
      const spec = this.o.checks.http as NonNullable<Checks['http']>;
      const v = this.http.record(await probeHttp(this.o.socketPath, spec.path, spec.timeout));
      if (!v.ok) return this.checkFailed('http', v.message);
    }
    const maxAge = this.o.checks.maxAge?.ms;
    if (maxAge !== undefined && maxAgeDue(this.startedAt, now, maxAge)) {
      this.log.info({ maxAgeMs: maxAge }, 'app server reached its maximum age');
      void this.restart('age').catch((err: unknown) => this.log.error({ reason: (err as Error).message }, 'restart failed'));
    }
  }

  private checkFailed(check: 'memory' | 'cpu' | 'http', message: string): void {
    this.checkFailures[check] = (this.checkFailures[check] ?? 0) + 1;
    this.log.warn({ check, verdict: message }, 'check failed; restarting the app server');
    void this.restart(check).catch((err: unknown) => this.log.error({ reason: (err as Error).message }, 'restart failed'));
  }

  /** The PID file names another live process of ours (a USR2 sent by someone else): follow it. */
  private followPidFile(): boolean {
    try {
      const pid = readPidFile(this.o.pidFile, { allowedUids: this.o.allowedUids });
      const info = readProc(pid);
      if (!info || info.state === 'Z' || !this.o.allowedUids.includes(info.uid) || pid === this.server?.pid) return false;
      // Bug fixed: this followed any live process of an allowed user, so a planted or stale PID
      // file made the supervisor manage (and later signal) an unrelated process. A new master is
      // forked by the old server: same user, and started after it.
      if (!this.server || !successorOf(info, this.server, this.server.startTime)) {
        this.log.error({ from: this.server?.pid, pid, pidFile: this.o.pidFile }, 'PID file names a process that is not a successor of the app server (another user, or older); not following it');
        return false;
      }
      this.log.info({ from: this.server?.pid, to: pid }, 'app server PID changed; following the PID file');
      this.server = info;
      this.child = undefined;
      return true;
    } catch {
      return false;
    }
  }

  status(): Record<string, unknown> {
    const usage = this.server ? treeUsage(this.server.pid) : undefined;
    return {
      phase: this.phase,
      pid: this.server?.pid ?? null,
      uptimeSeconds: this.server ? Math.round((Date.now() - this.startedAt) / 1000) : 0,
      rssBytes: usage?.rssBytes ?? 0,
      processes: usage?.processes ?? 0,
      restarts: { ...this.restarts },
      checkFailures: { ...this.checkFailures },
      flapping: this.flappingNow,
      lastRestartMs: Math.round(this.lastRestartMs),
    };
  }

  /** What the metrics export, read at scrape time. */
  metricsSnapshot(): {
    up: boolean;
    startTimeSeconds: number;
    rssBytes: number;
    cpuSeconds: number;
    processes: number;
    restarts: Record<string, number>;
    checkFailures: Record<string, number>;
    flapping: boolean;
    lastRestartSeconds: number;
  } {
    const server = this.server;
    const usage = server ? treeUsage(server.pid) : undefined;
    return {
      up: server !== undefined && (this.phase === 'running' || this.phase === 'restarting'),
      startTimeSeconds: server ? startedAtMs(server) / 1000 : 0,
      rssBytes: usage?.rssBytes ?? 0,
      cpuSeconds: usage ? usage.cpuTicks / CLOCK_TICKS : 0,
      processes: usage?.processes ?? 0,
      restarts: this.restarts,
      checkFailures: this.checkFailures,
      flapping: this.flappingNow,
      lastRestartSeconds: this.lastRestartMs / 1000,
    };
  }

  /** The gateway is stopping: stop watching; the app server keeps running unless told otherwise. */
  close(): void {
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
  }
}

/**
 * Whether `cand`, named by the PID file in place of `old`, can be old's new master (Unicorn's USR2):
 * the same user, started no earlier than `sinceTick` (ticks since boot: when we sent USR2, or when
 * `old` started). The command name is not compared: under `bundle exec` the old master is `bundle`
 * and the re-executed one `unicorn`.
 */
function successorOf(cand: ProcInfo, old: ProcInfo, sinceTick: number): boolean {
  return cand.uid === old.uid && cand.startTime >= sinceTick;
}

function pidFileMtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}
