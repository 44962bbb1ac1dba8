// Helpers shared by the benches (run.mjs: throughput, restart.mjs: restart under load, bodies.mjs,
// ws.mjs, memory.mjs): process and temp-dir bookkeeping with cleanup on exit, failure and Ctrl-C;
// core pinning; installing the peer binaries; free ports and "answers 200" polling; nginx and Caddy
// configs; running and parsing wrk; reading a process's RSS.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BENCH = path.join(ROOT, 'bench');
export const node = process.execPath;

// ---------------------------------------------------------------- process & temp-dir bookkeeping
// Everything we start or create is registered here so that normal exit, failure and
// Ctrl-C all go through the same cleanup.
export const children = new Set();
const tempDirs = new Set();
let stopping = false; // set on Ctrl-C so the main loop cannot start anything new

export const has = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
export const CAN_PIN = os.cpus().length >= 2 && has('taskset');

export function mkTemp(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

// Spawn in its own process group (detached) so a stop also reaches anything the
// contender forks. Output is kept as a short tail for error messages; it must be
// drained anyway or a chatty child would block on a full pipe.
// `cpu`: a core or a taskset list ('0-1'); `nofile`: the child's open-file limit (prlimit execs the
// command, as taskset does, so child.pid is the command's own PID either way).
export function start(name, cmd, args, { env, cpu, nofile } = {}) {
  if (stopping) throw new Error('interrupted');
  let full = cpu === undefined || !CAN_PIN ? [cmd, ...args] : ['taskset', '-c', String(cpu), cmd, ...args];
  if (nofile) full = ['prlimit', `--nofile=${nofile}:${nofile}`, ...full];
  const child = spawn(full[0], full.slice(1), {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  child.label = name;
  child.tail = '';
  const keep = (chunk) => { child.tail = (child.tail + chunk).slice(-4000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.exited = new Promise((resolve) => child.on('close', (code, sig) => {
    children.delete(child);
    child.exitInfo = sig ? `signal ${sig}` : `code ${code}`;
    resolve();
  }));
  child.on('error', (err) => keep(`spawn error: ${err.message}\n`));
  children.add(child);
  return child;
}

export const running = (child) => children.has(child);

export function signalGroup(child, sig) {
  try { process.kill(-child.pid, sig); } catch { /* already gone */ }
}

export async function stop(child, graceMs = 3000) {
  if (!children.has(child)) return;
  signalGroup(child, 'SIGTERM');
  const done = await Promise.race([child.exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!done) { signalGroup(child, 'SIGKILL'); await child.exited; }
}

export async function cleanup() {
  stopping = true;
  await Promise.all([...children].map((c) => stop(c)));
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

// Last-resort net if we exit without reaching cleanup(): synchronous, so SIGKILL.
process.on('exit', () => {
  for (const child of children) signalGroup(child, 'SIGKILL');
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`\n${sig}: stopping everything`);
    cleanup().finally(() => process.exit(130));
  });
}

// Runs main() (which returns an exit code), then cleans up whatever it left running.
export function runMain(name, main) {
  main()
    .then(async (code) => { await cleanup(); process.exit(code); })
    .catch(async (err) => {
      console.error(`${name}: ${err.message}`);
      await cleanup();
      process.exit(1);
    });
}

// ---------------------------------------------------------------- tools
export const TOOLS = { wrk: 'wrk', nginx: 'nginx-light', haproxy: 'haproxy', caddy: 'caddy', puma: 'puma', unicorn: 'unicorn', thin: 'thin' };

// Another job on this machine may be installing the same packages in the background;
// wait for it rather than fight over the dpkg lock.
async function waitForBackgroundApt() {
  const log = '/tmp/apt-install.log';
  for (let waited = 0; fs.existsSync(log) && waited < 600; waited += 2) {
    if (fs.readFileSync(log, 'utf8').trimEnd().endsWith('done')) return;
    if (waited === 0) console.error('waiting for a background apt install (/tmp/apt-install.log) ...');
    await sleep(2000);
  }
}

// Returns { tool: reason } for every tool still missing after trying to install it.
export async function ensureTools(needed) {
  let missing = needed.filter((t) => !has(t));
  if (missing.length === 0) return {};
  await waitForBackgroundApt();
  missing = missing.filter((t) => !has(t));
  if (missing.length === 0) return {};
  const reasons = {};
  if (process.getuid?.() !== 0) {
    for (const t of missing) reasons[t] = `${t} not installed (and not root, so no apt-get install ${TOOLS[t]})`;
    return reasons;
  }
  // The lock timeout covers a dpkg run that started after we looked at the log.
  const apt = (...a) => spawnSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', ...a], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  console.error(`installing ${missing.map((t) => TOOLS[t]).join(' ')} ...`);
  apt('update');
  for (const t of missing) {
    // One package at a time so an unavailable package does not block the others.
    const r = apt('install', '-y', '--no-install-recommends', TOOLS[t]);
    if (!has(t)) reasons[t] = `${t} still missing after apt-get install ${TOOLS[t]} (exit ${r.status ?? r.error?.message})`;
  }
  return reasons;
}

// Anything else burning CPU (a test run, a build) silently skews every row.
export function checkMachine() {
  if (!CAN_PIN) console.error('warning: fewer than 2 cores or no taskset; running unpinned, figures are not comparable');
  const load = os.loadavg()[0];
  if (load > 0.5) console.error(`warning: load average is ${load.toFixed(2)} before starting; other work on this machine will skew the figures`);
  return load;
}

// ---------------------------------------------------------------- network helpers
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function get(target) {
  return new Promise((resolve, reject) => {
    const req = http.get({ ...target, path: '/', agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

// Poll until the target answers 200, `child` dies, or 10 s pass.
export async function waitFor200(target, child, what) {
  const deadline = Date.now() + 10_000;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (child && !children.has(child)) {
      throw new Error(`${what} exited (${child.exitInfo}) before answering:\n${child.tail.trim()}`);
    }
    try {
      const status = await get(target);
      if (status === 200) return;
      last = `HTTP ${status}`;
    } catch (err) {
      last = err.message;
    }
    await sleep(100);
  }
  const out = child?.tail.trim();
  throw new Error(`${what} did not answer 200 within 10 s (last: ${last})${out ? `\n${out}` : ''}`);
}

// ---------------------------------------------------------------- config files
// nginx wants writable temp paths even when they are unused; keep them in its prefix.
// workers: with a number, nginx runs as users run it (a master and N worker processes); without,
// one process does everything (master_process off), the single-core peer of `--workers 0`.
// As root, a master's workers would run as `nobody` and could not reach the upstream socket in
// its 0700 temp dir: keep them root (a bench, not a deployment).
const nginxHead = (dir, workers, connections = 4096) => `${workers && process.getuid?.() === 0 ? 'user root;' : ''}
daemon off;
master_process ${workers ? 'on' : 'off'};
worker_processes ${workers ?? 1};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log error;
events { worker_connections ${connections}; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
`;

export function writeConf(dir, name, text) {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

export function startNginx(name, dir, httpBody, cpu, { workers, connections } = {}) {
  const conf = writeConf(dir, 'nginx.conf', `${nginxHead(dir, workers, connections)}${httpBody}\n}\n`);
  // -e: otherwise nginx first opens the packaged /var/log/nginx/error.log.
  return start(name, 'nginx', ['-p', dir, '-e', `${dir}/error.log`, '-c', conf], { cpu });
}

/**
 * The benches' shared upstream, on core 1: nginx answering a fixed tiny `200 ok\n` on a Unix socket
 * (what the proxies use) and, with `tcpPort`, on 127.0.0.1 too (run.mjs's "direct" row).
 * keepalive_requests is raised so no connection is recycled mid-run.
 */
export async function startTinyUpstream(tcpPort) {
  const dir = mkTemp('bench-upstream-');
  const sock = path.join(dir, 'upstream.sock');
  const child = startNginx('upstream', dir, `
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  server {
    listen unix:${sock};${tcpPort ? `\n    listen 127.0.0.1:${tcpPort};` : ''}
    access_log off;
    location / { default_type text/plain; return 200 "ok\\n"; }
  }`, 1);
  await waitFor200({ socketPath: sock }, child, 'upstream nginx (unix socket)');
  if (tcpPort) await waitFor200({ host: '127.0.0.1', port: tcpPort }, child, 'upstream nginx (tcp)');
  return { sock, child };
}

// Caddy on 127.0.0.1:port with `reverse_proxy unix/SOCK`; `options` goes inside the
// reverse_proxy block (e.g. lb_try_duration). No admin endpoint, no access log.
export function startCaddy(name, { port, sock, options = '', cpu }) {
  const dir = mkTemp('bench-caddy-');
  const block = options.trim() ? ` {\n    ${options.trim().split('\n').map((l) => l.trim()).join('\n    ')}\n  }` : '';
  const conf = writeConf(dir, 'Caddyfile', `{
  admin off
  auto_https off
  log {
    level ERROR
  }
}
http://127.0.0.1:${port} {
  reverse_proxy unix/${sock}${block}
}
`);
  // GOMAXPROCS=1: Go would otherwise size its scheduler to all cores, not the pinned one.
  // HOME/XDG_*: keep caddy's state out of the real home directory.
  return start(name, 'caddy', ['run', '--config', conf, '--adapter', 'caddyfile'], {
    cpu,
    env: { GOMAXPROCS: '1', HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir },
  });
}

// ---------------------------------------------------------------- output
// Left-aligned first column, right-aligned others, a dashed rule under the header row.
export function printTable(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => String(row[i]).length)));
  for (const [i, row] of rows.entries()) {
    console.log(row.map((cell, j) => (j === 0 ? String(cell).padEnd(widths[j]) : String(cell).padStart(widths[j]))).join('  '));
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

export function writeWorkJson(name, data) {
  const workDir = path.join(BENCH, '.work');
  fs.mkdirSync(workDir, { recursive: true });
  const file = path.join(workDir, name);
  fs.writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return path.relative(ROOT, file);
}

/** nginx as the proxy peer, as users run it in front of the app socket: upstream keepalive, HTTP/1.1. */
export function nginxProxyServer(port, sock) {
  return `
  upstream app { server unix:${sock}; keepalive 32; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`;
}

// ---------------------------------------------------------------- wrk
const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const toMs = (text) => {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text);
  return m ? Number(m[1]) * UNIT_MS[m[2]] : NaN;
};
const UNIT_BYTES = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

export function parseWrk(out) {
  const pct = (p) => {
    const m = new RegExp(`^\\s*${p}%\\s+(\\S+)`, 'm').exec(out.split('Latency Distribution')[1] ?? '');
    return m ? toMs(m[1]) : NaN;
  };
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const t = /Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB|TB)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = se ? se.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  return { rps, p50: pct(50), p99: pct(99), bytesPerSec: t ? Number(t[1]) * UNIT_BYTES[t[2]] : NaN, requests, non2xx, socketErrors };
}

// wrk -t1 on core 1 (with the upstream) unless told otherwise; `script` is a Lua file (-s).
export async function wrk(url, { seconds, connections, latency = true, script, cpu = 1, timeout } = {}) {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, ...(latency ? ['--latency'] : []),
    ...(timeout ? ['--timeout', `${timeout}s`] : []), ...(script ? ['-s', script] : []), url];
  const child = start('wrk', 'wrk', args, { cpu });
  let out = '';
  child.stdout.on('data', (c) => { out += c; });
  await child.exited;
  if (child.exitInfo !== 'code 0') throw new Error(`wrk failed (${child.exitInfo}): ${child.tail.trim()}`);
  return out;
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Two processes measured at once on one core (bench/ab.mjs's method): both pinned to core 0, each
 * loaded by its own wrk on core 1 for the same seconds. The core is shared fairly between them,
 * so B/A of their req/s is the inverse ratio of their CPU cost per request, with the host's noise
 * hitting both alike (2-3% run to run, against 10-20% for runs taken one after the other).
 * `sides`: [{ name, args }] (node's arguments), A first. Returns each round's req/s and B/A.
 */
export async function pairedRounds(sides, { rounds, duration, connections = 50 }) {
  const running = [];
  const urls = [];
  try {
    for (const s of sides) {
      const port = await freePort();
      const child = start(s.name, node, s.args(port), { cpu: 0 });
      running.push(child);
      await waitFor200({ host: '127.0.0.1', port }, child, s.name);
      urls.push(`http://127.0.0.1:${port}/`);
    }
    const both = (seconds) => Promise.all(urls.map((url) => wrk(url, { seconds, connections })));
    await both(2); // warm-up: JIT, pools
    const out = [];
    for (let i = 1; i <= rounds; i++) {
      const [a, b] = (await both(duration)).map(parseWrk);
      out.push({ a: a.rps, b: b.rps, ratio: b.rps / a.rps });
    }
    return out;
  } finally {
    for (const child of running) await stop(child);
  }
}

// ---------------------------------------------------------------- memory
/** Resident set size of a process in bytes (VmRSS of /proc/PID/status), or NaN if it is gone. */
export function rss(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

/** CPU time (user + system, ms) of every live process in process group `pgid` (start() makes one per child). */
export function groupCpuMs(pgid) {
  let ticks = 0;
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    // Fields after the command name (which may hold spaces): state ppid pgrp ... utime(14) stime(15).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[2]) === pgid) ticks += Number(f[11]) + Number(f[12]);
  }
  return (ticks * 1000) / CLK_TCK;
}

export const MB = 1024 * 1024;
export const fmtMB = (bytes) => (Number.isFinite(bytes) ? `${(bytes / MB).toFixed(1)} MB` : '-');

export const gitCommit = () => spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout?.trim() || null;
