// WebSocket message rate: small messages echoed in a closed loop on N connections, straight to the
// app and through the gateway, nginx and Caddy (each on one core). See bench/README.md.
//
//   node bench/ws.mjs [--only direct,gateway,nginx,caddy] [--duration N] [--connections N] [--size B]
import os from 'node:os';
import path from 'node:path';
import {
  BENCH, CAN_PIN, ROOT, checkMachine, children, ensureTools, freePort, gitCommit, mkTemp, node, printTable,
  runMain, start, startCaddy, startNginx, stop, waitFor200, writeWorkJson,
} from './lib.mjs';

const GATEWAY_CLI = path.resolve(ROOT, process.env.BENCH_GATEWAY || 'dist/src/cli.js');
const ECHO = path.join(BENCH, 'peers/ws-echo.mjs');
const WSLOAD = path.join(BENCH, 'wsload.mjs');
const USAGE = 'usage: node bench/ws.mjs [--only direct,gateway,nginx,caddy] [--duration N] [--connections N] [--size B]';

function parseArgs(argv) {
  const opts = { only: null, duration: Number(process.env.BENCH_DURATION || 10), connections: 50, size: 16 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (flag === '--only') opts.only = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (['--duration', '--connections', '--size'].includes(flag)) opts[flag.slice(2)] = Number(value());
    else if (flag === '--help' || flag === '-h') { console.log(USAGE); process.exit(0); }
    else throw new Error(`unknown argument ${argv[i]}\n${USAGE}`);
  }
  for (const k of ['duration', 'connections', 'size']) {
    if (!Number.isInteger(opts[k]) || opts[k] < 1) throw new Error(`--${k} must be a positive integer\n${USAGE}`);
  }
  if (opts.size > 125) throw new Error('--size must be at most 125 bytes');
  return opts;
}

const CONTENDERS = [
  { name: 'direct', needs: [], direct: true },
  {
    name: 'gateway',
    needs: [],
    start: ({ port, sock }) => start('gateway', node, [
      GATEWAY_CLI, 'run', '--workers', '0', '--listen', `127.0.0.1:${port}`, '--upstream', sock,
      '--admin', 'null', '--access-log', 'off', '--control', 'null', '--pid-file', 'null',
    ], { cpu: 0 }),
  },
  {
    // nginx passes an upgrade only when told to (its WebSocket proxying page): HTTP/1.1 upstream,
    // Upgrade and Connection set from the request.
    name: 'nginx',
    needs: ['nginx'],
    start: ({ port, sock }) => startNginx('nginx', mkTemp('bench-nginx-'), `
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  upstream app { server unix:${sock}; keepalive 32; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 1h;
    }
  }`, 0),
  },
  {
    // Caddy's reverse_proxy passes WebSocket upgrades by itself.
    name: 'caddy',
    needs: ['caddy'],
    start: ({ port, sock }) => startCaddy('caddy', { port, sock, cpu: 0 }),
  },
];

// The load generator pinned to core 1 with the app; its one JSON line is the result.
async function load(port, seconds, opts) {
  const child = start('wsload', node, [WSLOAD, '--target', `127.0.0.1:${port}`, '--connections', String(opts.connections),
    '--duration', String(seconds), '--size', String(opts.size)], { cpu: 1 });
  let out = '';
  child.stdout.on('data', (c) => { out += c; });
  await child.exited;
  if (child.exitInfo !== 'code 0') throw new Error(`wsload failed (${child.exitInfo}): ${child.tail.trim()}`);
  return JSON.parse(out.trim().split('\n').at(-1));
}

async function measure(c, opts, app) {
  let child = null;
  let port = app.port;
  try {
    if (!c.direct) {
      port = await freePort();
      child = c.start({ port, sock: app.sock });
      await waitFor200({ host: '127.0.0.1', port }, child, c.name);
    }
    await load(port, 2, opts); // warm-up: JIT, and every connection's upgrade path once
    const r = await load(port, opts.duration, opts);
    if (child && !children.has(child)) throw new Error(`${c.name} died under load (${child.exitInfo}):\n${child.tail.trim()}`);
    return { name: c.name, status: 'ok', ...r };
  } finally {
    if (child) await stop(child);
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const names = CONTENDERS.map((c) => c.name);
  const unknown = (opts.only ?? []).filter((n) => !names.includes(n));
  if (unknown.length) throw new Error(`unknown contender(s) ${unknown.join(', ')}; known: ${names.join(', ')}`);
  const selected = CONTENDERS.filter((c) => !opts.only || opts.only.includes(c.name));
  const meta = { date: new Date().toISOString(), commit: gitCommit(), gateway: GATEWAY_CLI, node: process.version, cpus: os.cpus().length, pinned: CAN_PIN, loadAverageAtStart: checkMachine() };
  const missing = await ensureTools([...new Set(selected.flatMap((c) => c.needs))]);

  const dir = mkTemp('bench-ws-');
  const app = { sock: path.join(dir, 'app.sock'), port: await freePort() };
  app.child = start('ws-echo', node, [ECHO, '--socket', app.sock, '--port', String(app.port)], { cpu: 1 });
  await waitFor200({ socketPath: app.sock }, app.child, 'ws echo app');

  const results = [];
  for (const c of selected) {
    const reason = c.needs.map((t) => missing[t]).find(Boolean);
    if (reason) { results.push({ name: c.name, status: 'skipped', reason }); continue; }
    console.error(`${c.name}: ${opts.connections} WebSocket connections, ${opts.size}-byte messages, 2 s warm-up + ${opts.duration} s ...`);
    try {
      const r = await measure(c, opts, app);
      console.error(`${c.name}: ${r.rate.toFixed(0)} messages/s, p99 ${r.p99.toFixed(2)} ms`);
      results.push(r);
    } catch (err) {
      console.error(`${c.name}: FAILED: ${err.message}`);
      results.push({ name: c.name, status: 'failed', reason: err.message });
    }
    if (!children.has(app.child)) throw new Error(`the echo app died (${app.child.exitInfo}): ${app.child.tail}`);
  }

  const f = (n, d = 0) => (n == null || !Number.isFinite(n) ? '-' : n.toFixed(d));
  const gw = results.find((r) => r.name === 'gateway' && r.status === 'ok');
  const rows = [['contender', 'messages/s', 'p50 ms', 'p99 ms', 'ratio']];
  for (const r of results) {
    if (r.status !== 'ok') rows.push([r.name, r.status, '', '', '']);
    else rows.push([r.name, f(r.rate), f(r.p50, 2), f(r.p99, 2), gw ? `${(r.rate / gw.rate).toFixed(2)}x` : 'n/a']);
  }
  console.log(`\n${opts.connections} connections, ${opts.size}-byte text messages echoed in a closed loop, ${opts.duration} s; round trip = send to echo received; ratio = contender / gateway`);
  printTable(rows);
  for (const r of results) {
    if (r.status !== 'ok') console.log(`  ${r.name} ${r.status}: ${r.reason.trim().split('\n')[0]}`);
    else if (r.errors) console.log(`  warning: ${r.name}: ${r.errors} connection errors`);
  }
  meta.loadAverageAtEnd = os.loadavg()[0];
  console.log(`results written to ${writeWorkJson('ws.json', { ...meta, options: opts, results })}`);
  return results.some((r) => r.status === 'failed') ? 1 : 0;
}

runMain('bench:ws', main);
