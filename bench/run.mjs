// Throughput/latency bench: the gateway against peer proxies, all in front of one shared
// upstream on a Unix socket. See bench/README.md for what is measured and why.
//
//   node bench/run.mjs [--only a,b] [--duration N] [--connections N] [--runs N]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BENCH = path.join(ROOT, 'bench');
// BENCH_GATEWAY lets you point the bench at another build (or a stand-in) of the CLI.
const GATEWAY_CLI = path.resolve(ROOT, process.env.BENCH_GATEWAY || 'dist/src/cli.js');

// ---------------------------------------------------------------- options
function parseArgs(argv) {
  const opts = {
    only: null,
    duration: Number(process.env.BENCH_DURATION || 10),
    connections: 50,
    runs: 1,
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (flag === '--only') opts.only = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (flag === '--duration') opts.duration = Number(value());
    else if (flag === '--connections') opts.connections = Number(value());
    else if (flag === '--runs') opts.runs = Number(value());
    else if (flag === '--help' || flag === '-h') {
      console.log('usage: node bench/run.mjs [--only a,b] [--duration N] [--connections N] [--runs N]');
      process.exit(0);
    } else throw new Error(`unknown argument ${argv[i]}`);
  }
  for (const k of ['duration', 'connections', 'runs']) {
    if (!Number.isInteger(opts[k]) || opts[k] < 1) throw new Error(`--${k} must be a positive integer`);
  }
  return opts;
}

// ---------------------------------------------------------------- process & temp-dir bookkeeping
// Everything we start or create is registered here so that normal exit, failure and
// Ctrl-C all go through the same cleanup.
const children = new Set();
const tempDirs = new Set();
let stopping = false; // set on Ctrl-C so the main loop cannot start anything new


function mkTemp(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

// Spawn in its own process group (detached) so a stop also reaches anything the
// contender forks. Output is kept as a short tail for error messages; it must be
// drained anyway or a chatty child would block on a full pipe.
function start(name, cmd, args, { env, cpu } = {}) {
  if (stopping) throw new Error('interrupted');
  const full = cpu === undefined || !CAN_PIN ? [cmd, ...args] : ['taskset', '-c', String(cpu), cmd, ...args];
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

function signalGroup(child, sig) {
  try { process.kill(-child.pid, sig); } catch { /* already gone */ }
}

async function stop(child) {
  if (!children.has(child)) return;
  signalGroup(child, 'SIGTERM');
  const done = await Promise.race([child.exited.then(() => true), sleep(3000).then(() => false)]);
  if (!done) { signalGroup(child, 'SIGKILL'); await child.exited; }
}

async function cleanup() {
  stopping = true;
  await Promise.all([...children].map(stop));
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

// ---------------------------------------------------------------- tools
const has = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
const CAN_PIN = os.cpus().length >= 2 && has('taskset');

const TOOLS = { wrk: 'wrk', nginx: 'nginx-light', haproxy: 'haproxy', caddy: 'caddy' };

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
async function ensureTools(needed) {
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

// ---------------------------------------------------------------- network helpers
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function get(target) {
  return new Promise((resolve, reject) => {
    const req = http.get({ ...target, path: '/', agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

// Poll until the contender answers 200, it dies, or 10 s pass.
async function waitFor200(target, child, what) {
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
const nginxHead = (dir) => `
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
`;

function writeConf(dir, name, text) {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

function startNginx(name, dir, httpBody, cpu) {
  const conf = writeConf(dir, 'nginx.conf', `${nginxHead(dir)}${httpBody}\n}\n`);
  // -e: otherwise nginx first opens the packaged /var/log/nginx/error.log.
  return start(name, 'nginx', ['-p', dir, '-e', `${dir}/error.log`, '-c', conf], { cpu });
}

// The shared upstream: a fixed tiny 200, on the Unix socket and on TCP (for "direct").
// keepalive_requests is raised so client connections are never recycled mid-run.
async function startUpstream(port) {
  const dir = mkTemp('bench-upstream-');
  const sock = path.join(dir, 'upstream.sock');
  const child = startNginx('upstream', dir, `
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  server {
    listen unix:${sock};
    listen 127.0.0.1:${port};
    location / { default_type text/plain; return 200 "ok\\n"; }
  }`, 1);
  await waitFor200({ socketPath: sock }, child, 'upstream nginx (unix socket)');
  await waitFor200({ host: '127.0.0.1', port }, child, 'upstream nginx (tcp)');
  return { sock, child };
}

// ---------------------------------------------------------------- contenders
// Each start() returns the child process; the harness then checks for a 200 on `port`.
const node = process.execPath;
const CONTENDERS = [
  {
    name: 'direct',
    needs: [],
    // No proxy: wrk talks to the upstream's TCP port. The ceiling for everyone else.
    direct: true,
  },
  {
    name: 'gateway',
    needs: [],
    check() {
      if (!fs.existsSync(GATEWAY_CLI)) return `${path.relative(ROOT, GATEWAY_CLI)} not found (build failed or gateway not written yet)`;
    },
    start: ({ port, sock }) => start('gateway', node, [
      GATEWAY_CLI, 'run', '--listen', `127.0.0.1:${port}`, '--upstream', sock,
      '--admin', '127.0.0.1:0', '--access-log', 'off', '--control', 'null',
    ], { cpu: 0 }),
  },
  {
    name: 'nginx',
    needs: ['nginx'],
    start: ({ port, sock }) => startNginx('nginx', mkTemp('bench-nginx-'), `
  upstream app { server unix:${sock}; keepalive 32; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`, 0),
  },
  {
    name: 'haproxy',
    needs: ['haproxy'],
    start({ port, sock }) {
      const dir = mkTemp('bench-haproxy-');
      const conf = writeConf(dir, 'haproxy.cfg', `
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:${port}
  default_backend app
backend app
  server s1 unix@${sock}
`);
      // -db: stay in the foreground, no daemon.
      return start('haproxy', 'haproxy', ['-db', '-f', conf], { cpu: 0 });
    },
  },
  {
    name: 'caddy',
    needs: ['caddy'],
    start({ port, sock }) {
      const dir = mkTemp('bench-caddy-');
      const conf = writeConf(dir, 'Caddyfile', `{
  admin off
  auto_https off
  log {
    level ERROR
  }
}
http://127.0.0.1:${port} {
  reverse_proxy unix/${sock}
}
`);
      // GOMAXPROCS=1: Go would otherwise size its scheduler to all cores, not the pinned one.
      // HOME/XDG_*: keep caddy's state out of the real home directory.
      return start('caddy', 'caddy', ['run', '--config', conf, '--adapter', 'caddyfile'], {
        cpu: 0,
        env: { GOMAXPROCS: '1', HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir },
      });
    },
  },
  {
    name: 'node-http-proxy',
    needs: [],
    start: ({ port, sock }) => start('node-http-proxy', node, [
      path.join(BENCH, 'peers/node-http-proxy.mjs'), '--listen', `127.0.0.1:${port}`, '--upstream', sock,
    ], { cpu: 0 }),
  },
  {
    name: 'undici',
    needs: [],
    start: ({ port, sock }) => start('undici', node, [
      path.join(BENCH, 'peers/undici-proxy.mjs'), '--listen', `127.0.0.1:${port}`, '--upstream', sock,
    ], { cpu: 0 }),
  },
];

// ---------------------------------------------------------------- wrk
const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const toMs = (text) => {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text);
  return m ? Number(m[1]) * UNIT_MS[m[2]] : NaN;
};

function parseWrk(out) {
  const pct = (p) => {
    const m = new RegExp(`^\\s*${p}%\\s+(\\S+)`, 'm').exec(out.split('Latency Distribution')[1] ?? '');
    return m ? toMs(m[1]) : NaN;
  };
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = se ? se.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return { rps, p50: pct(50), p99: pct(99), non2xx, socketErrors };
}

async function wrk(url, seconds, connections, latency) {
  const child = start('wrk', 'wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, ...(latency ? ['--latency'] : []), url], { cpu: 1 });
  let out = '';
  child.stdout.on('data', (c) => { out += c; });
  await child.exited;
  if (child.exitInfo !== 'code 0') throw new Error(`wrk failed (${child.exitInfo}): ${child.tail.trim()}`);
  return out;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function measure(c, opts, upstream, tcpPort) {
  let child = null;
  let port = tcpPort;
  try {
    if (!c.direct) {
      port = await freePort();
      child = c.start({ port, sock: upstream.sock });
      await waitFor200({ host: '127.0.0.1', port }, child, c.name);
    }
    const url = `http://127.0.0.1:${port}/`;
    await wrk(url, 2, opts.connections, false); // warm-up: JIT, connection pools
    const runs = [];
    for (let i = 0; i < opts.runs; i++) {
      if (child && !children.has(child)) throw new Error(`${c.name} died under load (${child.exitInfo}):\n${child.tail.trim()}`);
      runs.push(parseWrk(await wrk(url, opts.duration, opts.connections, true)));
    }
    if (child && !children.has(child)) throw new Error(`${c.name} died under load (${child.exitInfo}):\n${child.tail.trim()}`);
    // With several runs, report the run with the median req/s (its own latencies with it).
    const best = runs.find((r) => r.rps === median(runs.map((x) => x.rps)));
    if (!Number.isFinite(best.rps)) throw new Error('could not parse wrk output');
    const errors = runs.reduce((a, r) => a + r.non2xx + r.socketErrors, 0);
    return { name: c.name, status: 'ok', ...best, runs: runs.map((r) => r.rps), errors };
  } finally {
    if (child) await stop(child);
  }
}

// ---------------------------------------------------------------- report
function report(results, opts) {
  const gw = results.find((r) => r.name === 'gateway' && r.status === 'ok');
  const nhp = results.find((r) => r.name === 'node-http-proxy' && r.status === 'ok');
  for (const r of results) if (r.status === 'ok') r.ratio = gw ? r.rps / gw.rps : null;

  const fmt = (n, d = 0) => (n == null || !Number.isFinite(n) ? '-' : n.toFixed(d));
  const rows = [['contender', 'req/s', 'p50 ms', 'p99 ms', 'ratio']];
  for (const r of results) {
    if (r.status === 'ok') rows.push([r.name, fmt(r.rps), fmt(r.p50, 2), fmt(r.p99, 2), r.ratio == null ? 'n/a' : `${fmt(r.ratio, 2)}x`]);
    else rows.push([r.name, r.status, '', '', '']);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  console.log(`\nwrk -t1 -c${opts.connections} -d${opts.duration}s, ${opts.runs} run(s); ratio = contender req/s / gateway req/s`);
  for (const [i, row] of rows.entries()) {
    console.log(row.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]) : cell.padStart(widths[j]))).join('  '));
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  for (const r of results) {
    if (r.status !== 'ok') {
      // First line says what went wrong, the last line of the child's output usually why.
      const lines = r.reason.trim().split('\n');
      console.log(`  ${r.name} ${r.status}: ${lines[0]}${lines.length > 1 ? ` ... ${lines.at(-1)}` : ''}`);
    }
    else if (r.errors) console.log(`  warning: ${r.name} had ${r.errors} non-2xx responses or socket errors`);
  }
  const line = gw && nhp ? `${(gw.rps / nhp.rps).toFixed(2)}x` : 'n/a (needs both rows)';
  console.log(`\ngateway / node-http-proxy = ${line}`);

  const workDir = path.join(BENCH, '.work');
  fs.mkdirSync(workDir, { recursive: true });
  const file = path.join(workDir, 'last.json');
  fs.writeFileSync(file, `${JSON.stringify({
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    pinned: CAN_PIN,
    loadAverageAtStart: opts.loadAverageAtStart,
    wrk: { threads: 1, connections: opts.connections, duration: opts.duration, runs: opts.runs },
    results,
  }, null, 2)}\n`);
  console.log(`results written to ${path.relative(ROOT, file)}`);
}

// ---------------------------------------------------------------- main
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const names = CONTENDERS.map((c) => c.name);
  const unknown = (opts.only ?? []).filter((n) => !names.includes(n));
  if (unknown.length) throw new Error(`unknown contender(s) ${unknown.join(', ')}; known: ${names.join(', ')}`);
  const selected = CONTENDERS.filter((c) => !opts.only || opts.only.includes(c.name));

  if (!CAN_PIN) console.error('warning: fewer than 2 cores or no taskset; running unpinned, figures are not comparable');
  // Anything else burning CPU (a test run, a build) silently skews every row.
  const load = (opts.loadAverageAtStart = os.loadavg()[0]);
  if (load > 0.5) console.error(`warning: load average is ${load.toFixed(2)} before starting; other work on this machine will skew the figures`);
  // wrk and nginx (the upstream) are needed whatever is selected.
  const missing = await ensureTools([...new Set(['wrk', 'nginx', ...selected.flatMap((c) => c.needs)])]);
  if (missing.wrk) throw new Error(missing.wrk);
  if (missing.nginx) throw new Error(`${missing.nginx}; nginx is also the shared upstream`);

  const tcpPort = await freePort();
  const upstream = await startUpstream(tcpPort);
  console.error(`upstream nginx on unix:${upstream.sock} and 127.0.0.1:${tcpPort}`);

  const results = [];
  for (const c of selected) {
    const reason = c.needs.map((t) => missing[t]).find(Boolean);
    if (reason) {
      console.error(`${c.name}: skipped: ${reason}`);
      results.push({ name: c.name, status: 'skipped', reason });
      continue;
    }
    const broken = c.check?.();
    if (broken) {
      console.error(`${c.name}: FAILED: ${broken}`);
      results.push({ name: c.name, status: 'failed', reason: broken });
      continue;
    }
    console.error(`${c.name}: starting; warm-up 2 s, then ${opts.runs} x ${opts.duration} s ...`);
    try {
      const r = await measure(c, opts, upstream, tcpPort);
      console.error(`${c.name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms`);
      results.push(r);
    } catch (err) {
      console.error(`${c.name}: FAILED: ${err.message}`);
      results.push({ name: c.name, status: 'failed', reason: err.message });
    }
    if (!children.has(upstream.child)) throw new Error(`upstream nginx died (${upstream.child.exitInfo}): ${upstream.child.tail}`);
  }
  report(results, opts);
  // A gateway that could not be measured is a failure of the bench, not a footnote.
  return results.some((r) => r.status === 'failed') ? 1 : 0;
}

main()
  .then(async (code) => { await cleanup(); process.exit(code); })
  .catch(async (err) => {
    console.error(`bench: ${err.message}`);
    await cleanup();
    process.exit(1);
  });
