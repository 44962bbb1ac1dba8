// Memory: the gateway's RSS at idle, with 10,000 keep-alive connections open, and with 10,000
// requests held by its gate (paused through the control socket), each against a bound.
// See bench/README.md.
//
//   node bench/memory.mjs [--connections N]
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BENCH, MB, ROOT, checkMachine, ensureTools, fmtMB, freePort, gitCommit, mkTemp, node, printTable, rss, runMain,
  start, startNginx, stop, waitFor200, writeWorkJson,
} from './lib.mjs';

const GATEWAY_CLI = path.resolve(ROOT, process.env.BENCH_GATEWAY || 'dist/src/cli.js');
const APP = path.join(BENCH, 'peers/app.mjs');
const USAGE = 'usage: node bench/memory.mjs [--connections N]';

// Bounds. The issue's: 10,000 held requests cost less than 100 MB of RSS. It is checked both
// ways, since a held request needs its connection: counted from idle (connections included) and
// counted from the same connections open but idle (what holding adds). Ours, for the other two: a
// Node process with the gateway loaded (pino, prom-client, undici) idles under 128 MB, and a
// keep-alive connection costs the gateway at most BARE_FACTOR times what it costs a bare Node
// HTTP server + undici (peers/undici-proxy.mjs), measured in the same run.
const BOUNDS = { idle: 128 * MB, held: 100 * MB };
const BARE_FACTOR = 1.5;
// BENCH_GC=1: the gateway collects garbage every second (peers/gc-every-second.cjs), and the second
// round must end where the first did. Without it, what V8 has not collected yet reads as kept RSS
// (a second round then ends ~90 MB higher at 10,000 connections, while with collections it ends
// lower: heap growth, not a leak).
const FORCED_GC = process.env.BENCH_GC === '1';

function parseArgs(argv) {
  const opts = { connections: 10_000 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    if (flag === '--connections') opts.connections = Number(inline ?? argv[++i]);
    else if (flag === '--help' || flag === '-h') { console.log(USAGE); process.exit(0); }
    else throw new Error(`unknown argument ${argv[i]}\n${USAGE}`);
  }
  if (!Number.isInteger(opts.connections) || opts.connections < 1) throw new Error('--connections must be a positive integer');
  return opts;
}

// `gateway pause|resume|status --control CTL`, as an operator would type it.
function control(command, ctl) {
  const r = spawnSync(node, [GATEWAY_CLI, command, '--control', ctl], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gateway ${command} failed: ${r.stderr.trim() || r.stdout.trim()}`);
  return JSON.parse(r.stdout);
}

// ---------------------------------------------------------------- the clients
// Raw sockets, one GET at a time each: the harness only needs to know when every response is in.
const REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: memory-bench\r\n\r\n', 'latin1');

class Client {
  constructor(port) {
    this.port = port;
    this.sock = null;
    this.answered = 0;
    this.closed = false;
    this.carry = '';
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.sock = net.connect(this.port, '127.0.0.1', resolve);
      this.sock.on('error', (err) => { this.error = err.code || err.message; reject(err); });
      this.sock.on('close', () => { this.closed = true; });
      // Each response of the peers/app.mjs upstream ends with "ok" (Content-Length: 2).
      // A head and its body may arrive apart: keep the last 5 characters to match across chunks.
      this.sock.on('data', (c) => {
        const text = this.carry + c.toString('latin1');
        this.answered += text.split('\r\n\r\nok').length - 1;
        this.carry = text.slice(-5);
      });
    });
  }

  send() { this.sock.write(REQUEST); }
}

// At most `width` at once: 10,000 SYNs at once would overflow the listen backlog (somaxconn).
async function inBatches(items, width, fn) {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}

async function until(what, cond, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// RSS once the process has settled (timers fired, the heap after the burst): the lowest of a few
// readings a little apart, since a GC in flight can show as a transient bump.
async function settledRss(pid) {
  await sleep(1000);
  const xs = [];
  for (let i = 0; i < 5; i++) { xs.push(rss(pid)); await sleep(200); }
  return Math.min(...xs);
}

// ---------------------------------------------------------------- main
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const meta = { date: new Date().toISOString(), commit: gitCommit(), gateway: GATEWAY_CLI, node: process.version, cpus: os.cpus().length, loadAverageAtStart: checkMachine() };
  const n = opts.connections;
  // The harness holds n sockets; the gateway n client sockets plus its upstream ones. Raise the
  // gateway's limit only if the inherited one is short (raising past the hard limit needs
  // CAP_SYS_RESOURCE, which a container's root may not have); the harness's own must suffice.
  const need = n + 1000;
  const limit = Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim()) || 1024;
  if (limit < need) console.error(`open-file limit ${limit} < ${need}: the gateway gets prlimit --nofile=${need} (and this harness needs as many: ulimit -n ${need})`);
  const nofile = limit < need ? need : undefined;

  const dir = mkTemp('bench-memory-');
  const sock = path.join(dir, 'app.sock');
  const ctl = path.join(dir, 'gateway.ctl');
  const app = start('app', node, [APP, '--socket', sock], { cpu: 1 });
  await waitFor200({ socketPath: sock }, app, 'app');

  const results = [];
  try {
    results.push(await measureGateway(n, sock, ctl, nofile));
    // The same connections to peers in front of the same app: what a connection costs a bare Node
    // HTTP server (+ undici), the floor for any Node proxy, and nginx.
    results.push(await measurePeer('undici', n, (port) => start('undici', node, [
      path.join(BENCH, 'peers/undici-proxy.mjs'), '--listen', `127.0.0.1:${port}`, '--upstream', sock,
    ], { cpu: 0, nofile })));
    const missing = await ensureTools(['nginx']);
    if (missing.nginx) results.push({ name: 'nginx', status: 'skipped', reason: missing.nginx });
    else {
      results.push(await measurePeer('nginx', n, (port) => startNginx('nginx', mkTemp('bench-nginx-'), `
  keepalive_timeout 600s;
  upstream app { server unix:${sock}; keepalive 32; }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }`, 0, { connections: n + 1000 })));
    }
  } finally {
    await stop(app);
  }

  const gw = results[0];
  const r = gw.readings;
  const cost = (k) => r[k] - r.idle;
  const perConn = (bytes) => `${(bytes / n / 1024).toFixed(1)} KB`;
  const verdict = (ok) => (ok ? 'PASS' : 'FAIL');
  const bare = results.find((x) => x.name === 'undici' && x.readings);
  // With few connections the difference is within the heap's noise: a floor of 10 MB.
  const keepaliveBound = bare ? Math.max(BARE_FACTOR * (bare.readings.keepalive - bare.readings.idle), 10 * MB) : NaN;
  const checks = {
    idle: r.idle < BOUNDS.idle,
    keepalive: cost('keepalive') < keepaliveBound,
    heldWithConnections: cost('held') < BOUNDS.held,
    holdAlone: r.held - r.keepalive < BOUNDS.held,
    // With BENCH_GC=1: a second round ends within 16 MB (or a tenth of the first round's growth) of the first.
    ...(FORCED_GC ? { secondRound: r.closed2 - r.closed < Math.max(16 * MB, cost('closed') / 10) } : {}),
  };
  console.log(`\ngateway --workers 0 (one process)${FORCED_GC ? ', garbage collected every second (BENCH_GC=1)' : ''}; RSS = VmRSS of /proc/PID/status, the lowest of 5 readings 1 s after each step`);
  printTable([
    ['state', 'RSS', 'over idle', 'per connection'],
    ['idle (after 20 requests)', fmtMB(r.idle), '', ''],
    [`${n} keep-alive connections`, fmtMB(r.keepalive), fmtMB(cost('keepalive')), perConn(cost('keepalive'))],
    [`${gw.held} held requests (paused)`, fmtMB(r.held), fmtMB(cost('held')), perConn(cost('held'))],
    ['after resume (all answered)', fmtMB(r.released), fmtMB(cost('released')), ''],
    ['after the clients closed', fmtMB(r.closed), fmtMB(cost('closed')), ''],
    [`round 2: ${n} keep-alive connections`, fmtMB(r.keepalive2), fmtMB(cost('keepalive2')), ''],
    [`round 2: ${n} held requests`, fmtMB(r.held2), fmtMB(cost('held2')), ''],
    ['round 2: after the clients closed', fmtMB(r.closed2), fmtMB(cost('closed2')), ''],
  ]);
  console.log(`\nthe same ${n} keep-alive connections to peers (one process each):`);
  printTable([
    ['process', 'idle RSS', `RSS with ${n}`, 'over idle', 'per connection'],
    ...results.map((x) => (x.readings
      ? [x.name, fmtMB(x.readings.idle), fmtMB(x.readings.keepalive), fmtMB(x.readings.keepalive - x.readings.idle), perConn(x.readings.keepalive - x.readings.idle)]
      : [x.name, x.status, '', '', ''])),
  ]);
  console.log('\nbounds:');
  console.log(`  idle RSS ${fmtMB(r.idle)} < ${fmtMB(BOUNDS.idle)}: ${verdict(checks.idle)}`);
  console.log(`  ${n} keep-alive connections cost ${fmtMB(cost('keepalive'))} < ${BARE_FACTOR}x the bare Node proxy's, at least 10 MB (${fmtMB(keepaliveBound)}): ${bare ? verdict(checks.keepalive) : 'n/a'}`);
  console.log(`  ${n} held requests, their connections included (held - idle) ${fmtMB(cost('held'))} < ${fmtMB(BOUNDS.held)}: ${verdict(checks.heldWithConnections)}`);
  console.log(`  ${n} held requests, the hold alone (held - the same connections idle) ${fmtMB(r.held - r.keepalive)} < ${fmtMB(BOUNDS.held)}: ${verdict(checks.holdAlone)}`);
  if (FORCED_GC) console.log(`  a second round ends where the first did (closed, round 2 - round 1) ${fmtMB(r.closed2 - r.closed)} < ${fmtMB(Math.max(16 * MB, cost('closed') / 10))}: ${verdict(checks.secondRound)} (garbage collected every second: no leak when this passes)`);
  else console.log(`  second round: closed ${fmtMB(r.closed2 - r.closed)} over the first (not bounded: uncollected garbage counts; BENCH_GC=1 for the leak check)`);
  meta.loadAverageAtEnd = os.loadavg()[0];
  console.log(`results written to ${writeWorkJson('memory.json', { ...meta, options: opts, bounds: { ...BOUNDS, keepalive: keepaliveBound }, results, checks })}`);
  return Object.values(checks).every(Boolean) ? 0 : 1;
}

async function openKeepAlive(n, port) {
  const clients = Array.from({ length: n }, () => new Client(port));
  // Connect and send one request each, 200 at a time: these are keep-alive connections that
  // have served a request, as a browser's are between two clicks. (10,000 requests at once would
  // make nginx open as many upstream connections, past its worker_connections.)
  await inBatches(clients, 200, async (c) => {
    await c.connect();
    c.send();
    await until('a first response', () => c.answered >= 1 || c.closed);
  });
  await until(`${n} first responses`, () => clients.every((c) => c.answered >= 1));
  if (clients.some((c) => c.closed)) throw new Error(`${clients.filter((c) => c.closed).length} connections were closed by the server`);
  return clients;
}

async function measureGateway(n, sock, ctl, nofile) {
  const port = await freePort();
  // --workers 0: one process, so its RSS is the whole gateway. Limits raised so that 10,000
  // connections from one address are allowed (the defaults are 10,000 in all and 256 a client),
  // and neither the keep-alive nor the hold timeout fires while they are counted.
  const gw = start('gateway', node, [
    GATEWAY_CLI, 'run', '--workers', '0', '--listen', `127.0.0.1:${port}`, '--upstream', sock,
    '--admin', 'null', '--access-log', 'off', '--control', ctl, '--pid-file', 'null',
    '--max-connections', String(2 * n + 100), '--max-connections-per-client', 'null',
    '--hold-max-requests', String(2 * n), '--keepalive-timeout', '600s', '--hold-timeout', '600s',
  ], { cpu: 0, nofile, env: FORCED_GC ? { NODE_OPTIONS: `--expose-gc --require ${path.join(BENCH, 'peers/gc-every-second.cjs')}` } : undefined });
  let clients = [];
  const readings = {};
  try {
    await waitFor200({ host: '127.0.0.1', port }, gw, 'gateway');
    // A few requests first, so the request path (JIT, the upstream pool) exists at "idle".
    for (let i = 0; i < 20; i++) await waitFor200({ host: '127.0.0.1', port }, gw, 'gateway');
    readings.idle = await settledRss(gw.pid);
    console.error(`gateway idle: ${fmtMB(readings.idle)}; opening ${n} keep-alive connections ...`);
    // Two rounds in the same process: what the first leaves behind after its clients closed is
    // either heap Node keeps for next time (the second round then ends where the first did) or a
    // leak (it ends higher by about as much again).
    let held = 0;
    for (const round of [1, 2]) {
      const k = (name) => (round === 1 ? name : `${name}2`);
      clients = await openKeepAlive(n, port);
      readings[k('keepalive')] = await settledRss(gw.pid);
      console.error(`round ${round}: gateway with ${n} keep-alive connections: ${fmtMB(readings[k('keepalive')])}; pausing and sending ${n} requests to be held ...`);

      control('pause', ctl);
      for (const c of clients) c.send();
      await until(`${n} held requests`, () => heldOf(control('status', ctl)) >= n);
      readings[k('held')] = await settledRss(gw.pid);
      held = heldOf(control('status', ctl));
      console.error(`round ${round}: gateway with ${held} held requests: ${fmtMB(readings[k('held')])}; resuming ...`);
      if (clients.some((c) => c.answered >= 2)) throw new Error('a request was answered while paused');

      control('resume', ctl);
      await until(`${n} held requests answered`, () => clients.every((c) => c.answered >= 2));
      readings[k('released')] = await settledRss(gw.pid);
      for (const c of clients) c.sock.destroy();
      await sleep(1000);
      readings[k('closed')] = await settledRss(gw.pid);
    }
    return { name: 'gateway', status: 'ok', held, readings };
  } finally {
    for (const c of clients) c.sock?.destroy();
    await stop(gw);
  }
}

async function measurePeer(name, n, startIt) {
  const port = await freePort();
  const child = startIt(port);
  let clients = [];
  try {
    await waitFor200({ host: '127.0.0.1', port }, child, name);
    for (let i = 0; i < 20; i++) await waitFor200({ host: '127.0.0.1', port }, child, name);
    const readings = { idle: await settledRss(child.pid) };
    clients = await openKeepAlive(n, port);
    readings.keepalive = await settledRss(child.pid);
    console.error(`${name}: idle ${fmtMB(readings.idle)}, with ${n} keep-alive connections ${fmtMB(readings.keepalive)}`);
    return { name, status: 'ok', readings };
  } catch (err) {
    console.error(`${name}: FAILED: ${err.message}`);
    return { name, status: 'failed', reason: err.message };
  } finally {
    for (const c of clients) c.sock?.destroy();
    await stop(child);
  }
}

// `gateway status` reports the gate's held requests; find the count wherever the reply keeps it.
function heldOf(status) {
  const v = status.held ?? status.gate?.held ?? status.hold?.held ?? status.proxy?.held;
  if (typeof v === 'number') return v;
  if (Array.isArray(v)) return v.length;
  throw new Error(`no held count in gateway status: ${JSON.stringify(status).slice(0, 300)}`);
}

runMain('bench:memory', main);
