/**
 * The composition root: builds the proxy from the configuration, binds, drops privileges, and
 * stops. Later subsystems (the holding gate, the supervisor, metrics) meet here and only here.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { GatewayConfig } from './config/schema.js';
import type { Logger } from './log/logger.js';
import { AccessLog } from './proxy/access-log.js';
import { ProxyServer } from './proxy/server.js';
import { ControlServer, type CommandHandler } from './control/server.js';

export class Gateway {
  readonly accessLog: AccessLog;
  readonly proxy: ProxyServer;
  readonly control: ControlServer | undefined;
  addresses: AddressInfo[] = [];

  constructor(
    readonly config: GatewayConfig,
    private readonly log: Logger,
  ) {
    this.accessLog = new AccessLog(config.accessLog, config.accessLogFormat);
    const holdPage = config.holdPage === null ? undefined : readFileSync(config.holdPage);
    this.proxy = new ProxyServer(config, log.child({ component: 'proxy' }), this.accessLog, { holdPage, socketOwners: socketOwners(config) });
    if (config.control !== null) this.control = new ControlServer(config.control, this.commands(), log.child({ component: 'control' }));
  }

  /** What `gateway pause|resume|status` do. */
  private commands(): Map<string, CommandHandler> {
    const gate = this.proxy.gate;
    const status = () => ({
      pid: process.pid,
      upstream: this.config.upstream,
      upstreamUp: gate.upstreamUp,
      paused: gate.paused,
      held: gate.depth,
      heldBytes: gate.heldBytes,
      stats: { ...gate.stats },
    });
    return new Map<string, CommandHandler>([
      ['status', status],
      [
        'pause',
        () => {
          gate.pause('control');
          return status();
        },
      ],
      [
        'resume',
        () => {
          gate.resume('control');
          return status();
        },
      ],
    ]);
  }

  async start(): Promise<AddressInfo[]> {
    await this.accessLog.ready();
    this.addresses = await this.proxy.listen();
    // Created before privileges are dropped, so it is owned by the user who started the gateway.
    await this.control?.listen();
    if (this.config.user !== null) dropPrivileges(this.config.user);
    this.log.info({ listen: this.addresses.map((a) => `${a.address}:${a.port}`), upstream: this.config.upstream, uid: process.getuid?.() }, 'gateway started');
    return this.addresses;
  }

  async stop(graceful: boolean): Promise<void> {
    this.log.info({ graceful }, 'gateway stopping');
    await this.control?.close();
    await this.proxy.stop(graceful);
    this.accessLog.close();
  }

  reopenLogs(): void {
    this.accessLog.reopen();
    this.log.info('logs reopened');
  }
}

/**
 * Who may own the upstream socket: the gateway's own user and root (the app server usually runs as
 * the deploy user that also starts the gateway, or as root on these hosts).
 */
function socketOwners(_config: GatewayConfig): number[] {
  const uid = process.getuid?.();
  return uid === undefined ? [] : [...new Set([uid, 0])];
}

export class PrivilegeError extends Error {
  readonly code = 'GW_ERR_USER';
}

/** After binding: group first (setgid needs root), supplementary groups, then the user. */
export function dropPrivileges(user: string): void {
  if (process.getuid?.() !== 0) throw new PrivilegeError(`--user ${user} needs the gateway to start as root; start it as root or drop --user`);
  let entry: string;
  try {
    entry = execFileSync('getent', ['passwd', user], { encoding: 'utf8' }).trim();
  } catch {
    throw new PrivilegeError(`--user ${user}: no such user; create it or name an existing one (getent passwd)`);
  }
  const [, , uid, gid] = entry.split(':');
  const proc = process as NodeJS.Process & { initgroups?: (user: string, group: number) => void };
  if (!proc.initgroups || !proc.setgid || !proc.setuid) throw new PrivilegeError('--user is only supported on POSIX systems');
  proc.initgroups(user, Number(gid));
  proc.setgid(Number(gid));
  proc.setuid(Number(uid));
}
