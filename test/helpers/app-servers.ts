/**
 * The real Ruby app servers the host runs (Debian's puma, unicorn, thin), started as the host's
 * Procfile line starts them, on a Unix socket in a mkdtemp dir, each in its own process group so it
 * and every worker it forks (or re-execs, on Unicorn's USR2) can be signalled and reaped together.
 * Shared by app-servers.test.ts and hold-app-servers.test.ts; the Rack app is fixtures/rack/config.ru.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The host's Unicorn before_fork: the new master QUITs the old one (its PID in PID.oldbin) after USR2. */
export const UNICORN_BEFORE_FORK = [
  'before_fork do |server, _worker|',
  '  old_pid = "#{server.config[:pid]}.oldbin"',
  '  if File.exist?(old_pid) && server.pid != old_pid',
  '    begin',
  '      Process.kill(:QUIT, File.read(old_pid).to_i)',
  '    rescue Errno::ENOENT, Errno::ESRCH',
  '    end',
  '  end',
  'end',
];

export const RACKUP = fileURLToPath(new URL('../fixtures/rack/config.ru', import.meta.url));

export interface ServerKind {
  name: 'puma' | 'unicorn' | 'thin';
  bin: string;
  pkg: string;
  /** The host's Procfile command line, with the socket and PID file moved into `dir`. */
  command(dir: string, sock: string, pidFile: string): string[];
  /** Whether the server writes its PID file when run in the foreground, as the Procfile runs it. */
  writesPidFile: boolean;
  /** The signal that stops it gracefully (in-flight requests finish): the systemd ladders' first step. */
  gracefulStop: NodeJS.Signals;
}

export const SERVERS: ServerKind[] = [
  {
    name: 'puma',
    bin: 'puma',
    pkg: 'puma',
    // Procfile: bundle exec puma -e $RACK_ENV -b unix:///tmp/web_server.sock --pidfile /tmp/web_server.pid
    command: (_dir, sock, pid) => ['-e', 'production', '-b', `unix://${sock}`, '--pidfile', pid, RACKUP],
    writesPidFile: true,
    // Puma: TERM and INT both stop gracefully (REFERENCE.md: "Puma TERM 90 s KILL").
    gracefulStop: 'SIGTERM',
  },
  {
    name: 'unicorn',
    bin: 'unicorn',
    pkg: 'unicorn',
    command: (dir, sock, pid) => {
      // The host's unicorn.rb: listen and pid, and a before_fork that QUITs the old master after USR2.
      const conf = join(dir, 'unicorn.rb');
      writeFileSync(
        conf,
        [
          'worker_processes 4',
          `listen ${JSON.stringify(sock)}`,
          `pid ${JSON.stringify(pid)}`,
          ...UNICORN_BEFORE_FORK,
          '',
        ].join('\n'),
      );
      return ['-c', conf, '-E', 'production', RACKUP];
    },
    writesPidFile: true,
    // Unicorn: QUIT is the graceful stop, TERM and INT the quick one.
    gracefulStop: 'SIGQUIT',
  },
  {
    name: 'thin',
    bin: 'thin',
    pkg: 'thin',
    // Procfile: bundle exec thin start --socket /tmp/web_server.sock --pid /tmp/web_server.pid -e $RACK_ENV
    command: (_dir, sock, pid) => ['start', '--socket', sock, '--pid', pid, '-e', 'production', '-R', RACKUP],
    // Thin 1.8 writes --pid only when it daemonizes (-d): thin/daemonizing.rb write_pid_file is
    // called from Server#daemonize alone. The Procfile line runs it in the foreground, so a
    // supervisor on this host cannot count on the PID file for Thin.
    writesPidFile: false,
    // Thin: QUIT is the graceful stop, TERM and INT stop at once.
    gracefulStop: 'SIGQUIT',
  },
];

/** A child in its own process group, so it and every worker it forks can be stopped together. */
export interface AppProcess {
  proc: ChildProcess;
  pgid: number;
  output(): string;
}

export function spawnApp(bin: string, args: string[], cwd: string, env: Record<string, string> = {}): AppProcess {
  const proc = spawn(bin, args, { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RACK_ENV: 'production', ...env } });
  let out = '';
  proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  return { proc, pgid: proc.pid as number, output: () => out };
}

/** One connect() to the socket: true when something accepts it. */
export function connects(sock: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = net.connect(sock, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** Polls until the socket accepts a connection; fails early with the server's output if it exits. */
export async function waitForSocket(sock: string, app: AppProcess, timeoutMs = 30_000): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (app.proc.exitCode !== null || app.proc.signalCode !== null) throw new Error(`app server exited (${app.proc.exitCode ?? app.proc.signalCode}) before binding ${sock}:\n${app.output()}`);
    if (existsSync(sock) && (await connects(sock))) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`${sock} not accepting after ${timeoutMs} ms:\n${app.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Live (non-zombie) processes in a process group, from /proc. */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') out.push(Number(entry));
  }
  return out;
}

/** Signals every process in the group; an empty group is not an error. */
export function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // ESRCH: the group is already empty.
  }
}

/** Resolves once no live process is left in the group; false if some still are after `timeoutMs`. */
export async function waitGroupEmpty(pgid: number, timeoutMs: number, pollMs = 20): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (groupMembers(pgid).length > 0) {
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, pollMs));
  }
  return true;
}

/** TERM to the whole group, KILL to whatever is left after 10 s; resolves when the group is empty. */
export async function stopGroup(app: AppProcess): Promise<void> {
  signalGroup(app.pgid, 'SIGTERM');
  if (!(await waitGroupEmpty(app.pgid, 10_000, 50))) signalGroup(app.pgid, 'SIGKILL');
  await waitGroupEmpty(app.pgid, Infinity);
  if (app.proc.exitCode === null && app.proc.signalCode === null) await once(app.proc, 'exit');
}
