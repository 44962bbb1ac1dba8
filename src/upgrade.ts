/**
 * USR2, nginx's binary upgrade: the running gateway starts a new one (the same command line, so a
 * new build and a new configuration both take effect) and hands it its listening sockets as
 * inherited file descriptors, so no connection is refused: both processes accept from the same
 * sockets until the old one, once the new one says it is ready, closes its copies, finishes its
 * requests and exits. The gateway's PID file moves to `.oldbin` meanwhile, and back if the new
 * process fails, as with nginx. The app server is left running and adopted by the new process
 * (its output pipes are handed over too, so its logging never meets a closed pipe).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from './log/logger.js';

/** The environment variable that carries the inherited descriptors to the new process. */
export const INHERIT_ENV = 'GATEWAY_INHERITED_FDS';

/** What the new process inherits: descriptor numbers in its own table. */
export interface Inherited {
  /** The old gateway's PID. */
  from: number;
  listen: { host: string; port: number; fd: number }[];
  admin?: number;
  appStdout?: number;
  appStderr?: number;
}

/** Descriptors in the old process to hand over. */
export interface Handover {
  listen: { host: string; port: number; fd: number }[];
  admin?: number;
  appStdout?: number;
  appStderr?: number;
}

/**
 * In the new process: what the old one handed over, read once and removed from the environment so
 * the app server and later upgrades never see it.
 */
export function takeInherited(): Inherited | undefined {
  const raw = process.env[INHERIT_ENV];
  if (raw === undefined) return undefined;
  delete process.env[INHERIT_ENV];
  try {
    return JSON.parse(raw) as Inherited;
  } catch {
    return undefined;
  }
}

/** In the new process, once it serves: tells the old one, then closes the channel. */
export function announceReady(): void {
  if (!process.send) return;
  process.send({ gatewayReady: process.pid }, () => process.disconnect?.());
}

/**
 * In the old process: starts the new gateway with the descriptors at 4, 5... (3 is the channel it
 * announces readiness on). Resolves with the new process once it is ready; rejects if it exits
 * first or is not ready within `timeoutMs` (then it is killed with SIGKILL, so it stops nothing:
 * the app server it may have adopted stays as it is).
 */
export function startNewGateway(handover: Handover, log: Logger, timeoutMs: number): Promise<ChildProcess> {
  const fds: number[] = [];
  const at = (fd: number | undefined): number | undefined => {
    if (fd === undefined) return undefined;
    fds.push(fd);
    return 3 + fds.length;
  };
  const inherited: Inherited = {
    from: process.pid,
    listen: handover.listen.map((l) => ({ host: l.host, port: l.port, fd: at(l.fd) as number })),
  };
  const admin = at(handover.admin);
  if (admin !== undefined) inherited.admin = admin;
  const out = at(handover.appStdout);
  if (out !== undefined) inherited.appStdout = out;
  const err = at(handover.appStderr);
  if (err !== undefined) inherited.appStderr = err;

  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...fds],
    env: { ...process.env, [INHERIT_ENV]: JSON.stringify(inherited) },
  });
  log.info({ pid: child.pid, inherited }, 'binary upgrade: new gateway started');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`the new gateway was not ready within ${timeoutMs} ms`)), timeoutMs);
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => fail(new Error(`the new gateway exited (${signal ?? `code ${code}`}) before it was ready`));
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.off('exit', onExit);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      reject(e);
    };
    child.once('exit', onExit);
    child.on('message', (m: unknown) => {
      if ((m as { gatewayReady?: number } | null)?.gatewayReady !== child.pid) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      child.unref();
      child.channel?.unref();
      resolve(child);
    });
    child.once('error', (e) => fail(e));
  });
}
