/**
 * Starting the app server the way a Procfile line does (`sh -c 'exec CMD'`, so the server itself
 * is our child and its PID is the one it writes), in its own process group, as its own user, with
 * its output in our log; signalling it only after checking it is the process we manage; waiting
 * for it to accept and to exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { createInterface } from 'node:readline';
import type { Logger } from '../log/logger.js';
import { checkPidIdentity } from './pid-file.js';
import { isAlive, readProc, sameProcess, type ProcInfo } from './proc.js';

export interface AppSpec {
  command: string;
  cwd: string | null;
  env: Record<string, string>;
  uid?: number;
  gid?: number;
}

export function spawnApp(spec: AppSpec, log: Logger): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, ...spec.env };
  // A cwd given as a symlink (`/var/deploy/app/current`) is kept as given, with PWD set to it, so
  // a server that re-execs itself on USR2 (Unicorn, Puma) starts from the new release.
  if (spec.cwd !== null) env.PWD = spec.cwd;
  const child = spawn('/bin/sh', ['-c', `exec ${spec.command}`], {
    cwd: spec.cwd ?? undefined,
    env,
    detached: true, // its own process group: a stop reaches its workers, our signals do not
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(spec.uid !== undefined ? { uid: spec.uid } : {}),
    ...(spec.gid !== undefined ? { gid: spec.gid } : {}),
  });
  for (const [stream, level] of [
    [child.stdout, 'info'],
    [child.stderr, 'warn'],
  ] as const) {
    if (!stream) continue;
    createInterface({ input: stream }).on('line', (line) => log[level]({ stream: level === 'info' ? 'stdout' : 'stderr' }, line));
  }
  child.on('error', (err) => log.error({ err }, 'app server could not be started'));
  return child;
}

/** Sends `signal` only if `expected` is still the process at that PID (no reused PID, no planted file). */
export function signalChecked(expected: ProcInfo, signal: NodeJS.Signals, log: Logger): boolean {
  try {
    checkPidIdentity(expected.pid, { uid: expected.uid, startTime: expected.startTime });
  } catch (err) {
    log.error({ pid: expected.pid, signal, reason: (err as Error).message }, 'not signalling: not the process we manage');
    return false;
  }
  try {
    process.kill(expected.pid, signal);
    return true;
  } catch (err) {
    log.warn({ pid: expected.pid, signal, code: (err as NodeJS.ErrnoException).code }, 'signal failed');
    return false;
  }
}

/** Resolves true when `expected` has exited (or is a zombie), false after `ms`. */
export async function waitExit(expected: ProcInfo, ms: number, child?: ChildProcess): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (child && child.pid === expected.pid && child.exitCode !== null) return true;
    if (child && child.pid === expected.pid && child.signalCode !== null) return true;
    const cur = readProc(expected.pid);
    if (!cur || !sameProcess(cur, expected) || cur.state === 'Z') return true;
    if (!isAlive(expected.pid)) return true;
    if (Date.now() >= end) return false;
    await sleep(25);
  }
}

/** One connect() on the socket. */
export function socketAccepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface HttpProbe {
  status?: number;
  body?: string;
  error?: string;
}

/** A GET through the app socket, as the gateway would send it; never through the public listener. */
export function probeHttp(socketPath: string, path: string, timeoutMs: number): Promise<HttpProbe> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path, agent: false, headers: { host: 'localhost', 'user-agent': 'web-server-gateway-check' }, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < 65536) body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (err) => resolve({ error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ error: err.message }));
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
