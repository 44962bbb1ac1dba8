// Restart-under-load bench: the gateway, nginx and Caddy (lb_try_duration) in turn in front of
// one app server that is stopped (SIGTERM, socket removed) and started again while a closed-loop
// load runs, counting the requests each one fails and the slowest request. See bench/README.md.
//
//   node bench/restart.mjs [--only a,b] [--outage S] [--before S] [--duration S] [--connections N]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BENCH, CAN_PIN, ROOT, checkMachine, ensureTools, freePort, mkTemp, node, printTable, runMain,
  nginxProxyServer, running, signalGroup, start, startCaddy, startNginx, stop, waitFor200, writeWorkJson,
} from './lib.mjs';

const GATEWAY_CLI = path.resolve(ROOT, process.env.BENCH_GATEWAY || 'dist/src/cli.js');
const APP = path.join(BENCH, 'peers/app.mjs');
const LOADGEN = path.join(BENCH, 'loadgen.mjs');

// ---------------------------------------------------------------- options
function parseArgs(argv) {
  const opts = { only: null, outage: 2, before: 2, duration: null, connections: 50, warmup: 2, drain: 5 };
  const usage = 'usage: node bench/restart.mjs [--only gateway,nginx,caddy] [--outage S] [--before S] [--duration S] [--connections N] [--warmup S] [--drain S]';
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    const key = flag.replace(/^--/, '');
    if (flag === '--only') opts.only = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (['outage', 'before', 'duration', 'connections', 'warmup', 'drain'].includes(key) && flag.startsWith('--')) opts[key] = Number(value());
    else if (flag === '--help' || flag === '-h') {
      console.log(usage);
      process.exit(0);
    } else throw new Error(`unknown argument ${argv[i]}\n${usage}`);
  }
  // At least 4 s of load after the app is back, so every held request is answered well before
  // the load stops; with the defaults that is 2 + 2 + 4 = 8 s.
  opts.duration ??= Math.max(8, opts.before + opts.outage + 4);
  for (const k of ['outage', 'before', 'duration', 'warmup', 'drain']) {
    if (!Number.isFinite(opts[k]) || opts[k] < 0) throw new Error(`--${k} must be a number of seconds >= 0`);
  }
  if (!Number.isInteger(opts.connections) || opts.connections < 1) throw new Error('--connections must be a positive integer');
  if (opts.duration < opts.before + opts.outage + 1) {
    throw new Error(`--duration ${opts.duration} leaves less than 1 s of load after the restart (before ${opts.before} + outage ${opts.outage})`);
  }
  return opts;
}

// ---------------------------------------------------------------- children that speak JSON lines
// The app and the load generator print one JSON object per line; this keeps them and lets the
// harness wait for a given event.
function jsonLines(child) {
  child.events = [];
  child.waiters = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    let ev;
    try { ev = JSON.parse(line); } catch { return; }
    child.events.push(ev);
    for (const w of [...child.waiters]) if (w.name === ev.event) { child.waiters.splice(child.waiters.indexOf(w), 1); w.resolve(ev); }
  });
  return child;
}

function waitEvent(child, name, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const seen = child.events.find((e) => e.event === name);
    if (seen) return resolve(seen);
    const settle = (fn, value) => {
      clearTimeout(timer);
      const i = child.waiters.indexOf(waiter);
      if (i >= 0) child.waiters.splice(i, 1);
      fn(value);
    };
    const waiter = { name, resolve: (ev) => settle(resolve, ev) };
    const timer = setTimeout(() => settle(reject, new Error(`${what}: no "${name}" within ${timeoutMs} ms\n${child.tail.trim()}`)), timeoutMs);
    child.waiters.push(waiter);
    // Its last lines are read before 'close'; look once more, then give up.
    child.exited.then(() => setImmediate(() => {
      const late = child.events.find((e) => e.event === name);
      if (late) settle(resolve, late);
      else settle(reject, new Error(`${what} exited (${child.exitInfo}) before "${name}"\n${child.tail.trim()}`));
    }));
  });
}

// The app: pinned to core 1 with the load, answers 200 "ok", removes its socket on SIGTERM.
async function startApp(sock) {
  const app = jsonLines(start('app', node, [APP, '--socket', sock], { cpu: 1 }));
  const up = await waitEvent(app, 'up', 10_000, 'app');
  app.upAt = up.at;
  return app;
}

// ---------------------------------------------------------------- contenders
const CONTENDERS = [
  {
    name: 'gateway',
    needs: [],
    check() {
      if (!fs.existsSync(GATEWAY_CLI)) return `${path.relative(ROOT, GATEWAY_CLI)} not found (build failed?)`;
    },
    // Holding is on by default; --hold-timeout spelled out so the figure is not a surprise.
    start: ({ port, sock }) => start('gateway', node, [
      GATEWAY_CLI, 'run', '--workers', '0', '--listen', `127.0.0.1:${port}`, '--upstream', sock,
      '--admin', 'null', '--control', 'null', '--pid-file', 'null', '--access-log', 'off', '--hold-timeout', '30s',
    ], { cpu: 0 }),
  },
  {
    name: 'nginx',
    needs: ['nginx'],
    // What users run today: one try, 502 when the socket is missing.
    start: ({ port, sock }) => startNginx('nginx', mkTemp('bench-nginx-'), nginxProxyServer(port, sock), 0),
  },
  {
    name: 'caddy',
    needs: ['caddy'],
    // Caddy's way to ride out a restart: re-dial every 50 ms for up to 30 s per request.
    start: ({ port, sock }) => startCaddy('caddy', {
      port, sock, cpu: 0, options: 'lb_try_duration 30s\nlb_try_interval 50ms',
    }),
  },
];

// ---------------------------------------------------------------- one contender
async function runLoad(port, opts, dir, seconds) {
  const out = path.join(dir, `load-${Date.now()}.bin`);
  const child = jsonLines(start('loadgen', node, [
    LOADGEN, '--target', `127.0.0.1:${port}`, '--connections', String(opts.connections),
    '--duration', String(seconds), '--drain', String(opts.drain), '--out', out,
  ], { cpu: 1 }));
  const started = await waitEvent(child, 'start', 10_000, 'load generator');
  const finished = (async () => {
    const done = await waitEvent(child, 'done', (seconds + opts.drain + 20) * 1000, 'load generator');
    await child.exited;
    const bytes = fs.readFileSync(out);
    fs.rmSync(out, { force: true });
    return { ...done, records: new Float64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8) };
  })();
  finished.catch(() => {}); // awaited by the caller; avoid an unhandled rejection meanwhile
  return { t0: started.at, finished };
}

const label = (code, errors) => (code > 0 ? `HTTP ${code}` : errors[-code - 1]);

function analyse(load, downAt, upAt, nominalOutageMs) {
  const { records: r, errors, t0 } = load;
  const n = r.length / 3;
  const failures = {};
  const failedSamples = [];
  let ok = 0;
  let slowest = 0;
  let slowestAt = -1;
  let firstFail = Infinity;
  let lastFail = -Infinity;
  // 2xx answers after the app was up to requests sent before it was (held, or retried).
  let firstHeld = Infinity;
  let lastHeld = -Infinity;
  let heldRequests = 0;
  const bins = new Map(); // 100 ms bins by answer time: [ok, failed]
  for (let i = 0; i < n; i++) {
    const sent = r[3 * i];
    const answered = r[3 * i + 1];
    const code = r[3 * i + 2];
    const good = code >= 200 && code < 300;
    if (Number.isFinite(answered)) {
      const latency = answered - sent;
      if (latency > slowest) { slowest = latency; slowestAt = i; }
      const bin = Math.floor((answered - t0) / 100);
      const b = bins.get(bin) ?? [0, 0];
      b[good ? 0 : 1]++;
      bins.set(bin, b);
    }
    if (good) {
      ok++;
      if (sent < upAt && answered >= upAt) {
        heldRequests++;
        firstHeld = Math.min(firstHeld, answered - upAt);
        lastHeld = Math.max(lastHeld, answered - upAt);
      }
    } else {
      const what = label(code, errors);
      failures[what] = (failures[what] ?? 0) + 1;
      firstFail = Math.min(firstFail, sent - downAt);
      lastFail = Math.max(lastFail, sent - downAt);
      if (failedSamples.length < 50) {
        failedSamples.push({ what, sentAfterDownMs: round(sent - downAt), latencyMs: Number.isFinite(answered) ? round(answered - sent) : null });
      }
    }
  }
  const outageMs = upAt - downAt;
  const top = [];
  if (slowestAt >= 0) {
    // The five slowest answered requests, with when they were sent relative to the stop.
    const idx = [...Array(n).keys()].filter((i) => Number.isFinite(r[3 * i + 1]));
    idx.sort((a, b) => (r[3 * b + 1] - r[3 * b]) - (r[3 * a + 1] - r[3 * a]));
    for (const i of idx.slice(0, 5)) {
      top.push({ what: label(r[3 * i + 2], errors), sentAfterDownMs: round(r[3 * i] - downAt), latencyMs: round(r[3 * i + 1] - r[3 * i]) });
    }
  }
  const lastBin = Math.max(0, ...bins.keys());
  return {
    requests: n,
    ok,
    failed: n - ok,
    failures,
    slowestMs: round(slowest),
    slowestMinusOutageMs: round(slowest - outageMs),
    outageMs: round(outageMs),
    nominalOutageMs,
    downAfterStartMs: round(downAt - t0),
    upAfterStartMs: round(upAt - t0),
    heldRequests,
    firstHeldAnsweredAfterUpMs: Number.isFinite(firstHeld) ? round(firstHeld) : null,
    lastHeldAnsweredAfterUpMs: Number.isFinite(lastHeld) ? round(lastHeld) : null,
    firstFailureSentAfterDownMs: Number.isFinite(firstFail) ? round(firstFail) : null,
    lastFailureSentAfterDownMs: Number.isFinite(lastFail) ? round(lastFail) : null,
    slowest: top,
    failedSamples,
    timeline100ms: Array.from({ length: lastBin + 1 }, (_, i) => bins.get(i) ?? [0, 0]),
  };
}

const round = (x) => Math.round(x * 10) / 10;

async function measure(c, opts, dir, sock) {
  let app = null;
  let proxy = null;
  try {
    app = await startApp(sock);
    const port = await freePort();
    proxy = c.start({ port, sock });
    await waitFor200({ host: '127.0.0.1', port }, proxy, c.name);

    if (opts.warmup > 0) {
      const warm = await (await runLoad(port, opts, dir, opts.warmup)).finished;
      const codes = warm.records.filter((_, i) => i % 3 === 2);
      const bad = codes.filter((code) => !(code >= 200 && code < 300)).length;
      if (bad) console.error(`${c.name}: warning: ${bad} of ${codes.length} warm-up requests failed (before any restart)`);
    }

    const load = await runLoad(port, opts, dir, opts.duration);
    await sleep(load.t0 + opts.before * 1000 - Date.now());
    // Cold stop: SIGTERM; the app removes its socket at once, finishes what it has, exits.
    const stopAt = Date.now();
    signalGroup(app, 'SIGTERM');
    const down = await waitEvent(app, 'down', 5000, 'app (stopping)');
    await sleep(stopAt + opts.outage * 1000 - Date.now());
    if (running(app)) {
      console.error(`${c.name}: warning: the app had not exited ${opts.outage} s after SIGTERM; killing it`);
      await stop(app, 0);
    }
    await app.exited;
    app = await startApp(sock);
    const result = await load.finished;

    if (!running(proxy)) throw new Error(`${c.name} died during the run (${proxy.exitInfo}):\n${proxy.tail.trim()}`);
    const a = analyse(result, down.at, app.upAt, opts.outage * 1000);
    // From the new app accepting to the first request reaching it: for a proxy that holds,
    // its reaction time (the hold issue asks for 20 ms at most).
    const first = app.events.find((e) => e.event === 'first-request');
    a.firstRequestAfterUpMs = first ? round(first.at - app.upAt) : null;
    let lastAnswer = result.t0;
    for (let i = 1; i < result.records.length; i += 3) if (result.records[i] > lastAnswer) lastAnswer = result.records[i];
    const secs = (lastAnswer - result.t0) / 1000;
    const log = a.failed ? proxy.tail.trim() : undefined;
    await stop(proxy);
    await stop(app);
    // Connections the restarted app accepted: how the proxy refilled its upstream pool.
    const exit = app.events.find((e) => e.event === 'exit');
    return { name: c.name, status: 'ok', ...a, rps: Math.round(a.requests / secs), appServed: exit?.served, appConnections: exit?.connections, log };
  } finally {
    if (proxy) await stop(proxy);
    if (app) await stop(app);
  }
}

// ---------------------------------------------------------------- report
function report(results, opts, meta) {
  const fmt = (x) => (x == null || !Number.isFinite(x) ? '-' : x.toFixed(0));
  const fmt1 = (x) => (x == null || !Number.isFinite(x) ? '-' : x.toFixed(1));
  const rows = [['contender', 'requests', 'failed', 'slowest ms', 'slowest - outage ms', 'outage ms']];
  for (const r of results) {
    if (r.status === 'ok') rows.push([r.name, String(r.requests), String(r.failed), fmt(r.slowestMs), fmt(r.slowestMinusOutageMs), fmt(r.outageMs)]);
    else rows.push([r.name, r.status, '', '', '', '']);
  }
  console.log(`\n${opts.connections} connections, ${opts.duration} s of load; app stopped (SIGTERM) at ${opts.before} s, started again ${opts.outage} s later`);
  console.log('outage = measured: socket removed -> new app accepting; failed = non-2xx + connection errors + unanswered');
  printTable(rows);
  for (const r of results) {
    if (r.status !== 'ok') {
      const lines = r.reason.trim().split('\n');
      console.log(`  ${r.name} ${r.status}: ${lines[0]}${lines.length > 1 ? ` ... ${lines.at(-1)}` : ''}`);
      continue;
    }
    const parts = [`${r.rps} req/s overall`];
    if (r.firstRequestAfterUpMs != null) parts.push(`first request reached the app ${fmt1(r.firstRequestAfterUpMs)} ms after it was up`);
    if (r.heldRequests) parts.push(`${r.heldRequests} requests sent before the app was up were answered 200 after it, the first ${fmt(r.firstHeldAnsweredAfterUpMs)} ms and the last ${fmt(r.lastHeldAnsweredAfterUpMs)} ms after`);
    if (r.failed) {
      const kinds = Object.entries(r.failures).map(([k, v]) => `${v} ${k}`).join(', ');
      parts.push(`failed: ${kinds}; sent from ${fmt(r.firstFailureSentAfterDownMs)} to ${fmt(r.lastFailureSentAfterDownMs)} ms after the socket went away`);
    }
    console.log(`  ${r.name}: ${parts.join('; ')}`);
  }
  const gw = results.find((r) => r.name === 'gateway' && r.status === 'ok');
  if (gw?.failed) console.log(`\nWARNING: the gateway failed ${gw.failed} requests through the restart (details in the JSON: failures, failedSamples, log)`);
  const file = writeWorkJson('restart.json', { ...meta, options: opts, results });
  console.log(`results written to ${file}`);
}

// ---------------------------------------------------------------- main
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const names = CONTENDERS.map((c) => c.name);
  const unknown = (opts.only ?? []).filter((n) => !names.includes(n));
  if (unknown.length) throw new Error(`unknown contender(s) ${unknown.join(', ')}; known: ${names.join(', ')}`);
  const selected = CONTENDERS.filter((c) => !opts.only || opts.only.includes(c.name));

  const meta = {
    date: new Date().toISOString(),
    commit: spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout?.trim() || null,
    node: process.version,
    cpus: os.cpus().length,
    pinned: CAN_PIN,
    loadAverageAtStart: checkMachine(),
  };
  const missing = await ensureTools([...new Set(selected.flatMap((c) => c.needs))]);

  // One socket path for everyone, in a private temp dir.
  const dir = mkTemp('bench-restart-');
  const sock = path.join(dir, 'app.sock');

  const results = [];
  for (const c of selected) {
    const reason = c.needs.map((t) => missing[t]).find(Boolean) ?? c.check?.();
    if (reason) {
      const status = c.needs.some((t) => missing[t]) ? 'skipped' : 'failed';
      console.error(`${c.name}: ${status}: ${reason}`);
      results.push({ name: c.name, status, reason });
      continue;
    }
    console.error(`${c.name}: warm-up ${opts.warmup} s, then ${opts.duration} s with the app down from ${opts.before} s for ${opts.outage} s ...`);
    try {
      const r = await measure(c, opts, dir, sock);
      console.error(`${c.name}: ${r.requests} requests, ${r.failed} failed, slowest ${r.slowestMs} ms (outage ${r.outageMs} ms)`);
      results.push(r);
    } catch (err) {
      console.error(`${c.name}: FAILED: ${err.message}`);
      results.push({ name: c.name, status: 'failed', reason: err.message });
    }
  }
  meta.loadAverageAtEnd = os.loadavg()[0];
  report(results, opts, meta);
  return results.some((r) => r.status === 'failed') ? 1 : 0;
}

runMain('bench:restart', main);
