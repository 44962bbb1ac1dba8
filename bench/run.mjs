// Throughput/latency bench: the gateway against peer proxies, all in front of one shared
// upstream on a Unix socket. See bench/README.md for what is measured and why.
//
//   node bench/run.mjs [--only a,b] [--duration N] [--connections N] [--runs N]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BENCH, CAN_PIN, ROOT, checkMachine, children, ensureTools, freePort, mkTemp, node, printTable,
  nginxProxyServer, runMain, start, startCaddy, startNginx, stop, waitFor200, writeConf, writeWorkJson,
} from './lib.mjs';

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
      GATEWAY_CLI, 'run', '--workers', '0', '--listen', `127.0.0.1:${port}`, '--upstream', sock,
      '--admin', '127.0.0.1:0', '--access-log', 'off', '--control', 'null', '--pid-file', 'null',
    ], { cpu: 0 }),
  },
  {
    name: 'nginx',
    needs: ['nginx'],
    start: ({ port, sock }) => startNginx('nginx', mkTemp('bench-nginx-'), nginxProxyServer(port, sock), 0),
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
    start: ({ port, sock }) => startCaddy('caddy', { port, sock, cpu: 0 }),
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
  console.log(`\nwrk -t1 -c${opts.connections} -d${opts.duration}s, ${opts.runs} run(s); ratio = contender req/s / gateway req/s`);
  printTable(rows);
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

  const file = writeWorkJson('last.json', {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    pinned: CAN_PIN,
    loadAverageAtStart: opts.loadAverageAtStart,
    wrk: { threads: 1, connections: opts.connections, duration: opts.duration, runs: opts.runs },
    results,
  });
  console.log(`results written to ${file}`);
}

// ---------------------------------------------------------------- main
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const names = CONTENDERS.map((c) => c.name);
  const unknown = (opts.only ?? []).filter((n) => !names.includes(n));
  if (unknown.length) throw new Error(`unknown contender(s) ${unknown.join(', ')}; known: ${names.join(', ')}`);
  const selected = CONTENDERS.filter((c) => !opts.only || opts.only.includes(c.name));

  opts.loadAverageAtStart = checkMachine();
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

runMain('bench', main);
