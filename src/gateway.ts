/**
 * The composition root: builds the proxy from the configuration, binds, drops privileges, and
 * stops. Later subsystems (the holding gate, the supervisor, metrics) meet here and only here.
 *
 * Two shapes: `workers: 0`, one process that proxies itself (and drops to --user entirely); or
 * `workers: N`, this process as the primary (supervisor, control socket, admin listener, signals)
 * with N worker processes that proxy (workers.ts, worker-main.ts), as nginx's master and workers.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, renameSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { CONFIG_KEYS, type GatewayConfig } from './config/schema.js';
import type { Logger } from './log/logger.js';
import { AccessLog } from './proxy/access-log.js';
import { ProxyServer } from './proxy/server.js';
import type { NginxSite } from './nginx-site.js';
import { ControlServer, type CommandHandler } from './control/server.js';
import { Supervisor } from './supervisor/supervisor.js';
import { GatewayMetrics } from './metrics/metrics.js';
import { AdminServer } from './metrics/admin.js';
import { socketAccepts } from './supervisor/app-process.js';
import { oldbinPath, removePidFile, writePidFile } from './supervisor/pid-file.js';
import { announceReady, startNewGateway, type Inherited } from './upgrade.js';
import { bindListener, WorkerPool, type BoundListener, type GateView } from './workers.js';
import { chownSync, closeSync, openSync } from 'node:fs';
import type { GateControl } from './supervisor/supervisor.js';

/** What the primary drives: its own proxy (workers: 0) or the worker processes. */
interface ProxyGroup extends GateControl {
  status(): Promise<GateView> | GateView;
}

export class Gateway {
  readonly accessLog: AccessLog;
  /** The proxy of this process (workers: 0); with workers, theirs. */
  readonly proxy: ProxyServer | undefined;
  private workers: WorkerPool | undefined;
  private bound: BoundListener[] = [];
  private readonly group: ProxyGroup;
  readonly control: ControlServer | undefined;
  readonly supervisor: Supervisor | undefined;
  readonly metrics: GatewayMetrics;
  readonly admin: AdminServer | undefined;
  addresses: AddressInfo[] = [];
  adminAddress: AddressInfo | undefined;

  constructor(
    public config: GatewayConfig,
    private readonly log: Logger,
    /** From an nginx.conf: static files per location, and pages for error statuses. */
    nginx: NginxSite = {},
    /** Handed over by the gateway this one replaces (USR2, upgrade.ts). */
    private readonly inherited?: Inherited,
  ) {
    const owners = allowedOwners(config);
    const supervisor = () => this.supervisor?.metricsSnapshot() ?? { up: false, startTimeSeconds: 0, rssBytes: 0, cpuSeconds: 0, processes: 0, restarts: {}, checkFailures: {}, flapping: false, lastRestartSeconds: 0 };
    if (config.workers > 0) {
      // The workers write the access log; the primary only makes sure they can (start()).
      this.accessLog = new AccessLog('off', config.accessLogFormat);
      this.metrics = new GatewayMetrics({ supervisor });
      this.metrics.workerMetrics = () => this.workers?.metrics() ?? Promise.resolve([]);
      const pool = () => this.workers as WorkerPool;
      this.group = {
        pause: (reason) => pool().pause(reason),
        resume: (reason) => pool().resume(reason),
        drain: (ms) => pool().drain(ms),
        recyclePool: () => pool().recyclePool(),
        upstreamUp: () => pool().upstreamUp(),
        status: () => pool().status(),
      };
    } else {
      this.accessLog = new AccessLog(config.accessLog, config.accessLogFormat);
      const holdPage = config.holdPage === null ? undefined : readFileSync(config.holdPage);
      this.metrics = new GatewayMetrics({
        gate: () => {
          const g = (this.proxy as ProxyServer).gate;
          return { depth: g.depth, bytes: g.heldBytes, paused: g.paused, upstreamUp: g.upstreamUp, stats: g.stats };
        },
        pool: () => (this.proxy as ProxyServer).poolStats,
        connections: () => (this.proxy as ProxyServer).connections,
        websockets: () => (this.proxy as ProxyServer).websocketSessions,
        supervisor,
      });
      const proxy = new ProxyServer(config, log.child({ component: 'proxy' }), this.accessLog, { holdPage, socketOwners: owners, metrics: this.metrics, ...nginx });
      this.proxy = proxy;
      this.group = {
        pause: (reason) => proxy.gate.pause(reason),
        resume: (reason) => proxy.gate.resume(reason),
        drain: (ms) => proxy.drain(ms),
        recyclePool: () => proxy.recyclePool(),
        upstreamUp: () => proxy.gate.upstreamUpNow(),
        status: () => ({ upstreamUp: proxy.gate.upstreamUp, paused: proxy.gate.paused, held: proxy.gate.depth, heldBytes: proxy.gate.heldBytes, stats: { ...proxy.gate.stats } }),
      };
    }
    if (config.admin !== null) this.admin = new AdminServer(this.metrics, () => socketAccepts(config.upstream), log.child({ component: 'admin' }));
    if (config.pidFile !== null) {
      const appUser = config.appUser === null ? undefined : lookupUser(config.appUser);
      this.supervisor = new Supervisor(
        {
          command: config.appCommand,
          cwd: config.appCwd,
          env: config.appEnv,
          uid: appUser?.uid,
          gid: appUser?.gid,
          pidFile: config.pidFile,
          socketPath: config.upstream,
          allowedUids: owners,
          restartMode: config.appRestart,
          restartTimeout: config.appRestartTimeout,
          startTimeout: config.appStartTimeout,
          drainTimeout: config.drainTimeout,
          stopLadder: config.appStopSignals,
          readyPath: config.readyPath,
          checks: {
            memory: config.checkMemory ?? undefined,
            cpu: config.checkCpu ?? undefined,
            http: config.checkHttp ?? undefined,
            flapping: config.checkFlapping ?? undefined,
            maxAge: config.checkMaxAge ?? undefined,
          },
          pollInterval: 500,
        },
        this.group,
        log.child({ component: 'supervisor' }),
      );
    }
    if (config.control !== null) this.control = new ControlServer(config.control, this.commands(), log.child({ component: 'control' }));
  }

  /** What `gateway status|pause|resume|start|stop|restart` do. */
  private commands(): Map<string, CommandHandler> {
    const status = async () => ({
      pid: process.pid,
      upstream: this.config.upstream,
      ...(await this.group.status()),
      workers: this.workers?.pids ?? null,
      app: this.supervisor?.status() ?? null,
    });
    const supervised = (): Supervisor => {
      if (!this.supervisor) throw new Error('the supervisor is off (pidFile is null)');
      return this.supervisor;
    };
    return new Map<string, CommandHandler>([
      ['status', status],
      [
        'restart',
        async () => {
          const r = await supervised().restart('manual');
          return { ...(await status()), restartedPid: r.pid, restartMs: Math.round(r.ms) };
        },
      ],
      [
        'stop',
        async () => {
          await supervised().stop();
          return status();
        },
      ],
      [
        'start',
        async () => {
          await supervised().start();
          return status();
        },
      ],
      [
        'pause',
        () => {
          this.group.pause('control');
          return status();
        },
      ],
      [
        'resume',
        () => {
          this.group.resume('control');
          return status();
        },
      ],
    ]);
  }

  async start(): Promise<AddressInfo[]> {
    await this.accessLog.ready();
    if (this.proxy) this.addresses = await this.proxy.listen(this.inherited?.listen);
    else await this.startWorkers();
    if (this.admin && this.config.admin) this.adminAddress = await this.admin.listen(this.config.admin.host, this.config.admin.port, this.inherited?.admin);
    // Created before privileges are dropped, so it is owned by the user who started the gateway.
    await this.control?.listen();
    // After a USR2 from a gateway that had already dropped to --user, this one starts as that user.
    // With workers, only they drop: the primary keeps what managing the app server needs.
    if (this.proxy && this.config.user !== null && !(this.inherited && process.getuid?.() === lookupUser(this.config.user).uid)) dropPrivileges(this.config.user);
    if (this.config.gatewayPidFile !== null) writePidFile(this.config.gatewayPidFile, process.pid);
    // After binding: requests that arrive while the app server starts are held, not refused.
    const listen = this.addresses.map((a) => `${a.address}:${a.port}`);
    // Requests are accepted (and held) from here on, even while the app server still starts.
    this.log.info({ addresses: listen }, 'listening');
    await this.supervisor?.init();
    if (this.inherited) this.readAppOutput(this.inherited);
    const admin = this.adminAddress ? `${this.adminAddress.address}:${this.adminAddress.port}` : null;
    this.log.info({ listen, admin, upstream: this.config.upstream, uid: process.getuid?.(), app: this.supervisor?.phase ?? null, upgradedFrom: this.inherited?.from }, 'gateway started');
    if (this.inherited) announceReady();
    return this.addresses;
  }

  /**
   * workers ≥ 1: bind the listeners here (root may bind port 80) without accepting, make the access
   * log writable by the workers' user (as nginx chowns its logs to its workers' user), then start
   * the workers on the listening descriptors, as --user.
   */
  private async startWorkers(): Promise<void> {
    const c = this.config;
    try {
      this.bound = c.listen.map((hp) => bindListener(hp.host, hp.port, this.inherited?.listen.find((l) => l.host === hp.host && l.port === hp.port)?.fd));
    } catch (err) {
      for (const b of this.bound) b.close();
      throw bindError(err as NodeJS.ErrnoException & { address?: string; port?: number });
    }
    const user = c.user !== null && process.getuid?.() === 0 ? lookupUser(c.user) : undefined;
    if (user) this.prepareAccessLog(user.uid);
    this.workers = new WorkerPool({ count: c.workers, listeners: this.bound, uid: user?.uid, gid: user?.gid, shutdownTimeout: c.shutdownTimeout }, this.log.child({ component: 'workers' }));
    await this.workers.start();
    this.addresses = this.bound.map((b) => b.address);
  }

  /** The access log exists and belongs to the workers' user (they open it, and reopen it on USR1). */
  private prepareAccessLog(uid: number): void {
    const target = this.config.accessLog;
    if (target === 'off' || target === '-') return;
    const fd = openSync(target, 'a', 0o640);
    closeSync(fd);
    chownSync(target, uid, -1);
  }

  /** The app server's output pipes, handed over by the gateway that started it: logged as before. */
  private readAppOutput(inherited: Inherited): void {
    const log = this.log.child({ component: 'supervisor', output: 'app' });
    for (const [fd, level, stream] of [
      [inherited.appStdout, 'info', 'stdout'],
      [inherited.appStderr, 'warn', 'stderr'],
    ] as const) {
      if (fd === undefined) continue;
      const input = new net.Socket({ fd, readable: true, writable: false });
      input.on('error', () => undefined);
      createInterface({ input }).on('line', (line) => log[level]({ stream }, line));
    }
  }

  private upgrading = false;

  /**
   * USR2: start a new gateway on our listening sockets (upgrade.ts); once it is ready, stop
   * gracefully without touching the app server it adopted. Resolves true when this process should
   * now exit; false when the upgrade failed and this gateway goes on serving.
   */
  async upgrade(): Promise<boolean> {
    if (this.upgrading) {
      this.log.warn('binary upgrade already in progress; USR2 ignored');
      return false;
    }
    const phase = this.supervisor?.phase;
    if (phase === 'starting' || phase === 'restarting' || phase === 'stopping') {
      this.log.warn({ app: phase }, 'binary upgrade refused while the app server is changing; send USR2 again once it is running');
      return false;
    }
    this.upgrading = true;
    const pidFile = this.config.gatewayPidFile;
    const oldbin = pidFile === null ? null : oldbinPath(pidFile);
    try {
      if (pidFile !== null && oldbin !== null) renameSync(pidFile, oldbin);
      // The new gateway creates its own control socket at the same path.
      await this.control?.close();
      // The app server's output pipes: of the server we started, or as we inherited them.
      const out = this.inherited?.appStdout !== undefined || this.inherited?.appStderr !== undefined ? { stdout: this.inherited.appStdout, stderr: this.inherited.appStderr } : (this.supervisor?.outputFds() ?? {});
      const listen = this.proxy ? this.proxy.listenerFds() : this.bound.map((l) => ({ host: l.host, port: l.port, fd: l.fd }));
      await startNewGateway({ listen, admin: this.admin?.fd, appStdout: out.stdout, appStderr: out.stderr }, this.log, 30_000);
      this.log.info('binary upgrade: the new gateway is ready; this one stops gracefully');
      return true;
    } catch (err) {
      this.log.error({ reason: (err as Error).message }, 'binary upgrade failed; this gateway goes on serving');
      if (pidFile !== null && oldbin !== null) {
        try {
          renameSync(oldbin, pidFile);
        } catch {
          writePidFile(pidFile, process.pid);
        }
      }
      await this.control?.listen().catch((e: unknown) => this.log.error({ reason: (e as Error).message }, 'control socket not restored'));
      this.upgrading = false;
      return false;
    }
  }

  async stop(graceful: boolean): Promise<void> {
    this.log.info({ graceful, handedOver: this.upgrading }, 'gateway stopping');
    await this.control?.close();
    await this.admin?.close();
    this.supervisor?.close();
    if (this.proxy) await this.proxy.stop(graceful);
    if (this.workers) {
      await this.workers.stop(graceful);
      for (const b of this.bound) b.close();
    }
    // An app server the gateway started is stopped with it (its output goes to our log, and the
    // next gateway starts its own); one it adopted is left running; after a USR2 the new gateway
    // has adopted it.
    if (!this.upgrading) await this.supervisor?.shutdown(graceful);
    this.accessLog.close();
    const pidFile = this.config.gatewayPidFile;
    if (pidFile !== null) removePidFile(this.upgrading ? oldbinPath(pidFile) : pidFile, process.pid);
  }

  /**
   * HUP: the new configuration (already validated) applies to requests from now on, nginx's reload
   * without new workers: no listener closes, no connection drops, requests in flight finish as they
   * began. What a running process cannot change (RESTART_KEYS) is kept and reported; a new hold
   * page or access log that cannot be opened rejects the whole reload (the old one stays).
   */
  async reload(next: GatewayConfig, site: NginxSite): Promise<{ applied: string[]; kept: string[] }> {
    const changed = CONFIG_KEYS.filter((k) => JSON.stringify(this.config[k]) !== JSON.stringify(next[k]));
    const kept = changed.filter((k) => (RESTART_KEYS as readonly string[]).includes(k));
    const effective = { ...next } as Record<string, unknown>;
    for (const k of kept) effective[k] = this.config[k];
    const config = effective as unknown as GatewayConfig;
    const holdPage = config.holdPage === null ? undefined : readFileSync(config.holdPage);
    if (this.proxy) {
      await this.accessLog.retarget(config.accessLog, config.accessLogFormat);
      this.proxy.reconfigure(config, { ...site, holdPage });
    } else {
      const user = config.user !== null && process.getuid?.() === 0 ? lookupUser(config.user) : undefined;
      if (user) this.prepareAccessLog(user.uid);
      // Each worker reads the same files again (it cannot be handed functions); they are valid.
      await this.workers?.reload();
    }
    this.config = config;
    return { applied: changed.filter((k) => !kept.includes(k)), kept };
  }

  reopenLogs(): void {
    this.accessLog.reopen();
    if (this.workers) {
      // A file logrotate moved away is created again, for the workers' user, before they reopen.
      const user = this.config.user !== null && process.getuid?.() === 0 ? lookupUser(this.config.user) : undefined;
      try {
        if (user) this.prepareAccessLog(user.uid);
      } catch (err) {
        this.log.error({ reason: (err as Error).message }, 'access log not prepared for the workers');
      }
      this.workers.reopenLogs();
    }
    this.log.info('logs reopened');
  }
}

/**
 * Settings a reload cannot change in the running process: its sockets, identity and the supervisor's
 * process settings. They take a restart; USR2 (binary upgrade) does one without refusing a connection.
 */
export const RESTART_KEYS = [
  'listen', 'upstream', 'admin', 'control', 'user', 'logLevel', 'maxHeaderSize', 'pidFile', 'appCommand', 'appCwd', 'appEnv', 'appUser',
  'appRestart', 'appRestartTimeout', 'appStartTimeout', 'appStopSignals', 'drainTimeout', 'readyPath', 'checkMemory', 'checkCpu', 'checkHttp',
  'checkFlapping', 'checkMaxAge', 'upstreamOwner',
] as const;

/**
 * Who may own the upstream socket, the PID file and the processes it names: upstreamOwner when
 * given; else the gateway's own user, root, the --user it drops to, and appUser.
 */
export function allowedOwners(config: GatewayConfig): number[] {
  if (config.upstreamOwner !== null) {
    return [/^\d+$/.test(config.upstreamOwner) ? Number(config.upstreamOwner) : lookupUser(config.upstreamOwner).uid];
  }
  const uids = new Set<number>([0]);
  const own = process.getuid?.();
  if (own !== undefined) uids.add(own);
  for (const name of [config.user, config.appUser]) if (name !== null) uids.add(lookupUser(name).uid);
  return [...uids];
}

export function lookupUser(user: string): { uid: number; gid: number } {
  let entry: string;
  try {
    entry = execFileSync('getent', ['passwd', user], { encoding: 'utf8' }).trim();
  } catch {
    throw new PrivilegeError(`--user ${user}: no such user; create it or name an existing one (getent passwd)`);
  }
  const [, , uid, gid] = entry.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** The one clear line ProxyServer.listen gives for a failed bind, for the primary's binds too. */
function bindError(e: NodeJS.ErrnoException & { address?: string; port?: number }): Error {
  const where = `${e.address ?? '?'}:${e.port ?? 0}`;
  if (e.code === 'EACCES') return new Error(`cannot listen on ${where}: permission denied; ports below 1024 need root (then --user NAME drops privileges), or CAP_NET_BIND_SERVICE, or --listen on a port above 1023`);
  if (e.code === 'EADDRINUSE') return new Error(`cannot listen on ${where}: address already in use; stop what listens there (ss -ltnp) or choose another --listen`);
  return new Error(`cannot listen on ${where}: ${e.message}`);
}

export class PrivilegeError extends Error {
  readonly code = 'GW_ERR_USER';
}

/** After binding: group first (setgid needs root), supplementary groups, then the user. */
export function dropPrivileges(user: string): void {
  if (process.getuid?.() !== 0) throw new PrivilegeError(`--user ${user} needs the gateway to start as root; start it as root or drop --user`);
  const { uid, gid } = lookupUser(user);
  const proc = process as NodeJS.Process & { initgroups?: (user: string, group: number) => void };
  if (!proc.initgroups || !proc.setgid || !proc.setuid) throw new PrivilegeError('--user is only supported on POSIX systems');
  proc.initgroups(user, Number(gid));
  proc.setgid(Number(gid));
  proc.setuid(Number(uid));
}
