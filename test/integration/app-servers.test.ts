/**
 * The gateway in front of the real Ruby app servers the host runs (Debian's puma, unicorn, thin),
 * each started as the host's Procfile line starts it, bound to a Unix socket in a mkdtemp dir:
 * concurrent mixed traffic answered in full, forwarding headers as the app sees them, and large
 * streamed downloads (with a Content-Length, and framed by the app server itself).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBinary } from '../helpers/debian.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { parseHead, rawRequest } from '../helpers/raw.js';
import { tempDir } from '../helpers/upstream.js';

const RACKUP = fileURLToPath(new URL('../fixtures/rack/config.ru', import.meta.url));
const MiB = 1024 * 1024;

interface Echo {
  server: string;
  method: string;
  path: string;
  query: string;
  bodySize: number;
  bodySha256: string;
  headers: Record<string, string>;
  pid: number;
}

interface ServerKind {
  name: string;
  bin: string;
  pkg: string;
  /** The host's Procfile command line, with the socket and PID file moved into `dir`. */
  command(dir: string, sock: string, pidFile: string): string[];
  /** Whether the server writes its PID file when run in the foreground, as the Procfile runs it. */
  writesPidFile: boolean;
}

const SERVERS: ServerKind[] = [
  {
    name: 'puma',
    bin: 'puma',
    pkg: 'puma',
    // Procfile: bundle exec puma -e $RACK_ENV -b unix:///tmp/web_server.sock --pidfile /tmp/web_server.pid
    command: (_dir, sock, pid) => ['-e', 'production', '-b', `unix://${sock}`, '--pidfile', pid, RACKUP],
    writesPidFile: true,
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
          'before_fork do |server, _worker|',
          '  old_pid = "#{server.config[:pid]}.oldbin"',
          '  if File.exist?(old_pid) && server.pid != old_pid',
          '    begin',
          '      Process.kill(:QUIT, File.read(old_pid).to_i)',
          '    rescue Errno::ENOENT, Errno::ESRCH',
          '    end',
          '  end',
          'end',
          '',
        ].join('\n'),
      );
      return ['-c', conf, '-E', 'production', RACKUP];
    },
    writesPidFile: true,
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
  },
];

/** A child in its own process group, so it and every worker it forks can be stopped together. */
interface AppProcess {
  proc: ChildProcess;
  pgid: number;
  output(): string;
}

function spawnApp(bin: string, args: string[], cwd: string): AppProcess {
  const proc = spawn(bin, args, { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RACK_ENV: 'production' } });
  let out = '';
  proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  return { proc, pgid: proc.pid as number, output: () => out };
}

/** Polls until the socket accepts a connection; fails early with the server's output if it exits. */
async function waitForSocket(sock: string, app: AppProcess, timeoutMs = 30_000): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (app.proc.exitCode !== null || app.proc.signalCode !== null) throw new Error(`app server exited (${app.proc.exitCode ?? app.proc.signalCode}) before binding ${sock}:\n${app.output()}`);
    if (existsSync(sock)) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(sock, () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      if (ok) return performance.now() - start;
    }
    if (performance.now() - start > timeoutMs) throw new Error(`${sock} not accepting after ${timeoutMs} ms:\n${app.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Live (non-zombie) processes in a process group, from /proc. */
function groupMembers(pgid: number): number[] {
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

/** TERM to the whole group, KILL to whatever is left after 10 s; resolves when the group is empty. */
async function stopGroup(app: AppProcess): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-app.pgid, sig);
    } catch {
      // ESRCH: the group is already empty.
    }
  };
  signal('SIGTERM');
  const deadline = performance.now() + 10_000;
  while (groupMembers(app.pgid).length > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (groupMembers(app.pgid).length > 0) signal('SIGKILL');
  while (groupMembers(app.pgid).length > 0) await new Promise((r) => setTimeout(r, 20));
  if (app.proc.exitCode === null && app.proc.signalCode === null) await once(app.proc, 'exit');
}

/** Byte i of /big is (i * 7 + 13) % 251, as config.ru writes it. */
function bigPattern(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7 + 13) % 251;
  return b;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

for (const kind of SERVERS) {
  const bin = requireBinary(kind.bin, kind.pkg);

  describe.skipIf(!bin)(`behind ${kind.name}`, () => {
    let tmp: ReturnType<typeof tempDir>;
    let sock: string;
    let pidFile: string;
    let app: AppProcess | undefined;
    let gw: RunningGateway | undefined;
    let client: Pool | undefined;

    async function stopAll(): Promise<void> {
      await client?.destroy();
      client = undefined;
      if (gw) await gw.stop('SIGTERM');
      if (app) await stopGroup(app);
    }

    beforeAll(async () => {
      tmp = tempDir(`gw-${kind.name}-`);
      sock = join(tmp.dir, 'web_server.sock');
      pidFile = join(tmp.dir, 'web_server.pid');
      app = spawnApp(bin as string, kind.command(tmp.dir, sock, pidFile), tmp.dir);
      const bootMs = await waitForSocket(sock, app);
      process.stderr.write(`${kind.name}: socket accepting after ${Math.round(bootMs)} ms\n`);
      gw = await startGateway(['--upstream', sock, '--access-log', 'off']);
      client = new Pool(gw.url, { connections: 20 });
    });

    afterAll(async () => {
      await stopAll();
      tmp?.cleanup();
    });

    it('runs as the Procfile line runs it (PID file as the server writes it)', async () => {
      const res = await client!.request({ method: 'GET', path: '/pid' });
      const echo = (await res.body.json()) as Echo;
      expect(res.statusCode).toBe(200);
      expect(echo.server.toLowerCase()).toContain(kind.name);
      if (kind.writesPidFile) {
        // Puma and Unicorn write the master's PID: the process we started.
        expect(Number(readFileSync(pidFile, 'utf8').trim())).toBe(app!.proc.pid);
      } else {
        expect(existsSync(pidFile)).toBe(false);
      }
    });

    it('answers 200 requests, 20 at a time, mixed GET and POST with bodies up to 1 MiB, each with its own echo', async () => {
      const total = 200;
      const failures: string[] = [];
      let next = 0;
      const started = performance.now();
      const one = async (i: number) => {
        const tag = `req-${i}`;
        if (i % 2 === 0) {
          const res = await client!.request({ method: 'GET', path: `/echo/${i}?i=${i}&q=a%20b`, headers: { 'x-test': tag } });
          const echo = (await res.body.json()) as Echo;
          if (res.statusCode !== 200) return failures.push(`${tag}: status ${res.statusCode}`);
          if (echo.method !== 'GET' || echo.path !== `/echo/${i}` || echo.query !== `i=${i}&q=a%20b` || echo.bodySize !== 0 || echo.headers['x-test'] !== tag) failures.push(`${tag}: echo ${JSON.stringify(echo)}`);
          return;
        }
        // Sizes spread over 0..1 MiB, with the edges (empty, one byte, exactly 1 MiB) included.
        const size = i === 1 ? 0 : i === 3 ? 1 : i === 5 ? MiB : (i * 104_729) % (MiB + 1);
        const body = randomBytes(size);
        const res = await client!.request({ method: 'POST', path: `/upload?i=${i}`, headers: { 'x-test': tag, 'content-type': 'application/octet-stream' }, body });
        const echo = (await res.body.json()) as Echo;
        if (res.statusCode !== 200) return failures.push(`${tag}: status ${res.statusCode}`);
        if (echo.method !== 'POST' || echo.path !== '/upload' || echo.query !== `i=${i}` || echo.bodySize !== size || echo.bodySha256 !== sha256(body) || echo.headers['x-test'] !== tag) {
          failures.push(`${tag} (${size} bytes): echo ${JSON.stringify({ ...echo, headers: undefined })}`);
        }
      };
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          for (let i = next++; i < total; i = next++) {
            try {
              await one(i);
            } catch (err) {
              failures.push(`req-${i}: ${(err as Error).message}`);
            }
          }
        }),
      );
      process.stderr.write(`${kind.name}: ${total} mixed requests in ${Math.round(performance.now() - started)} ms\n`);
      expect(failures, gw!.output().slice(-4000)).toEqual([]);
    });

    it('forwards Host and sets X-Forwarded-For, X-Real-IP, X-Forwarded-Proto and X-Forwarded-Host, ignoring a client forging them', async () => {
      const r = await rawRequest(
        gw!.port,
        'GET /headers?x=1 HTTP/1.1\r\n' +
          'Host: app.example.test\r\n' +
          'X-Forwarded-For: 6.6.6.6\r\n' +
          'X-Real-IP: 6.6.6.6\r\n' +
          'X-Forwarded-Proto: https\r\n' +
          'X-Forwarded-Host: evil.example\r\n' +
          'Forwarded: for=6.6.6.6;proto=https\r\n' +
          'Connection: close\r\n\r\n',
        { waitMs: 10_000 },
      );
      const { status, body } = parseHead(r.text);
      expect(status, r.text).toBe(200);
      // A close-delimited or Content-Length body: the JSON is all of it.
      const echo = JSON.parse(body) as Echo;
      expect(echo.path).toBe('/headers');
      expect(echo.query).toBe('x=1');
      // The peer is not a trusted proxy (none configured): its claims are dropped, ours set.
      expect(echo.headers).toEqual({
        host: 'app.example.test',
        'x-forwarded-for': '127.0.0.1',
        'x-real-ip': '127.0.0.1',
        'x-forwarded-proto': 'http',
        'x-forwarded-host': 'app.example.test',
      });
    });

    it('streams a 4 MiB download with Content-Length complete and in order', async () => {
      const size = 4 * MiB;
      const res = await client!.request({ method: 'GET', path: '/big?mb=4' });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-length']).toBe(String(size));
      const got = Buffer.from(await res.body.arrayBuffer());
      expect(got.length).toBe(size);
      expect(sha256(got)).toBe(sha256(bigPattern(size)));
    });

    it('streams a 4 MiB download the app server frames itself (chunked or close-delimited) complete and chunked to the client', async () => {
      const size = 4 * MiB;
      const res = await client!.request({ method: 'GET', path: '/big?mb=4&chunked=1' });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-length']).toBeUndefined();
      expect(res.headers['transfer-encoding']).toBe('chunked');
      const got = Buffer.from(await res.body.arrayBuffer());
      expect(got.length).toBe(size);
      expect(sha256(got)).toBe(sha256(bigPattern(size)));
    });

    it('stops the gateway cleanly and leaves no app server process behind', async () => {
      const pgid = app!.pgid;
      const code = await gw!.stop('SIGTERM');
      expect(code).toBe(0);
      await stopAll();
      expect(groupMembers(pgid)).toEqual([]);
    });
  });
}
