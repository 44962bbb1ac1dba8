// Large bodies: 1 MiB responses and 10 MiB uploads through the gateway, nginx and the bare undici
// proxy (MB/s and p99, wrk), then 1 GiB streamed down and 1 GiB up through the gateway with its
// RSS sampled before, during and after. See bench/README.md.
//
//   node bench/bodies.mjs [--only direct,gateway,nginx,undici] [--duration N] [--no-stream] [--stream-mb N]
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BENCH, CAN_PIN, MB, ROOT, checkMachine, children, ensureTools, fmtMB, freePort, gitCommit, mkTemp, node,
  nginxProxyServer, parseWrk, printTable, rss, runMain, start, startNginx, stop, waitFor200, wrk, writeConf, writeWorkJson,
} from './lib.mjs';

const GATEWAY_CLI = path.resolve(ROOT, process.env.BENCH_GATEWAY || 'dist/src/cli.js');
const APP = path.join(BENCH, 'peers/bodies-app.mjs');
const UPLOAD_BYTES = 10 * MB;
const USAGE = 'usage: node bench/bodies.mjs [--only direct,gateway,nginx,undici] [--duration N] [--down-connections N] [--up-connections N] [--no-stream] [--stream-mb N]';

// The streamed gigabyte may cost this much while it flows (buffers in flight: 1 GiB buffered
// would be 1024 MB) and this much once it is through ("costs no growth", with room for the
// heap settling).
const STREAM_PEAK_BOUND = 64 * MB;
const STREAM_AFTER_BOUND = 16 * MB;

function parseArgs(argv) {
  const opts = { only: null, duration: Number(process.env.BENCH_DURATION || 10), down: 10, up: 4, stream: true, streamMb: 1024 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (flag === '--only') opts.only = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (flag === '--duration') opts.duration = Number(value());
    else if (flag === '--down-connections') opts.down = Number(value());
    else if (flag === '--up-connections') opts.up = Number(value());
    else if (flag === '--no-stream') opts.stream = false;
    else if (flag === '--stream-mb') opts.streamMb = Number(value());
    else if (flag === '--help' || flag === '-h') { console.log(USAGE); process.exit(0); }
    else throw new Error(`unknown argument ${argv[i]}\n${USAGE}`);
  }
  for (const k of ['duration', 'down', 'up', 'streamMb']) {
    if (!Number.isInteger(opts[k]) || opts[k] < 1) throw new Error(`${k} must be a positive integer\n${USAGE}`);
  }
  return opts;
}

// ---------------------------------------------------------------- contenders
const gatewayArgs = (port, sock, extra = []) => [
  GATEWAY_CLI, 'run', '--workers', '0', '--listen', `127.0.0.1:${port}`, '--upstream', sock,
  '--admin', 'null', '--access-log', 'off', '--control', 'null', '--pid-file', 'null', ...extra,
];

const CONTENDERS = [
  { name: 'direct', needs: [], direct: true },
  {
    name: 'gateway',
    needs: [],
    start: ({ port, sock }) => start('gateway', node, gatewayArgs(port, sock), { cpu: 0 }),
  },
  {
    // As users run it: Cloud 66's client_max_body_size 50m and nginx's default request buffering
    // (an upload is read whole, to a temp file past 16k, before it goes upstream).
    name: 'nginx',
    needs: ['nginx'],
    start: ({ port, sock }) => startNginx('nginx', mkTemp('bench-nginx-'), `
  client_max_body_size 50m;${nginxProxyServer(port, sock)}`, 0),
  },
  {
    name: 'undici',
    needs: [],
    start: ({ port, sock }) => start('undici', node, [
      path.join(BENCH, 'peers/undici-proxy.mjs'), '--listen', `127.0.0.1:${port}`, '--upstream', sock,
    ], { cpu: 0 }),
  },
];

// ---------------------------------------------------------------- wrk runs
async function measure(c, opts, app, uploadLua) {
  let child = null;
  let port = app.port;
  try {
    if (!c.direct) {
      port = await freePort();
      child = c.start({ port, sock: app.sock });
      await waitFor200({ host: '127.0.0.1', port }, child, c.name);
    }
    const alive = () => {
      if (child && !children.has(child)) throw new Error(`${c.name} died under load (${child.exitInfo}):\n${child.tail.trim()}`);
    };
    const down = `http://127.0.0.1:${port}/1m`;
    const up = `http://127.0.0.1:${port}/upload`;
    await wrk(down, { seconds: 2, connections: opts.down, latency: false }); // warm-up
    alive();
    const d = parseWrk(await wrk(down, { seconds: opts.duration, connections: opts.down, timeout: 10 }));
    alive();
    await wrk(up, { seconds: 2, connections: opts.up, latency: false, script: uploadLua, timeout: 10 });
    alive();
    const u = parseWrk(await wrk(up, { seconds: opts.duration, connections: opts.up, script: uploadLua, timeout: 10 }));
    alive();
    return {
      name: c.name,
      status: 'ok',
      down: { rps: d.rps, mbps: d.rps * 1, p50: d.p50, p99: d.p99, errors: d.non2xx + d.socketErrors },
      up: { rps: u.rps, mbps: u.rps * UPLOAD_BYTES / MB, p50: u.p50, p99: u.p99, errors: u.non2xx + u.socketErrors },
    };
  } finally {
    if (child) await stop(child);
  }
}

// ---------------------------------------------------------------- 1 GiB through, RSS sampled
function sampler(pid) {
  const s = { pid, peak: 0, samples: 0 };
  const take = () => {
    const v = rss(pid);
    if (Number.isFinite(v)) { s.peak = Math.max(s.peak, v); s.samples++; }
  };
  take();
  const timer = setInterval(take, 20);
  s.stop = () => { clearInterval(timer); take(); };
  return s;
}

// GET /stream?bytes=N through the proxy, counting the bytes (no copy kept).
function streamDown(port, bytes) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: `/stream?bytes=${bytes}`, agent: false }, (res) => {
      let got = 0;
      res.on('data', (c) => { got += c.length; });
      res.on('end', () => resolve({ status: res.statusCode, bytes: got }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

// POST of N bytes (chunked) through the proxy, written as fast as it is taken (backpressure).
function streamUp(port, bytes) {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(64 * 1024, 'z');
    const req = http.request({ host: '127.0.0.1', port, path: '/upload', method: 'POST', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, bytes: Number(/ok (\d+)/.exec(body)?.[1] ?? NaN) }));
    });
    req.on('error', reject);
    let left = bytes;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

async function streamThrough(opts, app) {
  const port = await freePort();
  // No body limit for this instance: 1 GiB is over the default 50m.
  const gw = start('gateway', node, gatewayArgs(port, app.sock, ['--client-max-body-size', '0']), { cpu: 0 });
  try {
    await waitFor200({ host: '127.0.0.1', port }, gw, 'gateway');
    // Warm: a few of each so pools, JIT and buffers exist before "before" is read.
    for (let i = 0; i < 5; i++) {
      await streamDown(port, 4 * MB);
      await streamUp(port, 4 * MB);
    }
    await sleep(1000);
    const bytes = opts.streamMb * MB;
    const before = rss(gw.pid);
    const legs = [];
    for (const [dir, fn] of [['down', streamDown], ['up', streamUp]]) {
      const s = sampler(gw.pid);
      const t0 = performance.now();
      const r = await fn(port, bytes);
      const secs = (performance.now() - t0) / 1000;
      s.stop();
      if (r.status !== 200 || r.bytes !== bytes) throw new Error(`stream ${dir}: HTTP ${r.status}, ${r.bytes} of ${bytes} bytes arrived`);
      legs.push({ dir, mbps: bytes / MB / secs, seconds: secs, peak: s.peak });
    }
    // Let timers, sockets and the heap settle before "after".
    await sleep(2000);
    const after = rss(gw.pid);
    const peak = Math.max(before, ...legs.map((l) => l.peak));
    return {
      bytesEachWay: bytes,
      before,
      peak,
      after,
      legs,
      peakPass: peak - before < STREAM_PEAK_BOUND,
      afterPass: after - before < STREAM_AFTER_BOUND,
    };
  } finally {
    await stop(gw);
  }
}

// ---------------------------------------------------------------- main
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const names = CONTENDERS.map((c) => c.name);
  const unknown = (opts.only ?? []).filter((n) => !names.includes(n));
  if (unknown.length) throw new Error(`unknown contender(s) ${unknown.join(', ')}; known: ${names.join(', ')}`);
  const selected = CONTENDERS.filter((c) => !opts.only || opts.only.includes(c.name));
  const meta = { date: new Date().toISOString(), commit: gitCommit(), gateway: GATEWAY_CLI, node: process.version, cpus: os.cpus().length, pinned: CAN_PIN, loadAverageAtStart: checkMachine() };

  const missing = await ensureTools([...new Set(['wrk', ...selected.flatMap((c) => c.needs)])]);
  if (missing.wrk) throw new Error(missing.wrk);

  const dir = mkTemp('bench-bodies-');
  const uploadLua = writeConf(dir, 'upload.lua', `wrk.method = "POST"
wrk.body = string.rep("u", ${UPLOAD_BYTES})
wrk.headers["Content-Type"] = "application/octet-stream"
`);
  const app = { sock: path.join(dir, 'app.sock'), port: await freePort() };
  // The app shares core 1 with wrk, as the upstream does in run.mjs.
  app.child = start('bodies-app', node, [APP, '--socket', app.sock, '--port', String(app.port)], { cpu: 1 });
  await waitFor200({ socketPath: app.sock }, app.child, 'bodies app (unix socket)');
  await waitFor200({ host: '127.0.0.1', port: app.port }, app.child, 'bodies app (tcp)');

  const results = [];
  for (const c of selected) {
    const reason = c.needs.map((t) => missing[t]).find(Boolean);
    if (reason) { results.push({ name: c.name, status: 'skipped', reason }); continue; }
    console.error(`${c.name}: 1 MiB downloads (-c${opts.down}) then 10 MiB uploads (-c${opts.up}), 2 s warm-up + ${opts.duration} s each ...`);
    try {
      const r = await measure(c, opts, app, uploadLua);
      console.error(`${c.name}: down ${r.down.mbps.toFixed(0)} MB/s p99 ${r.down.p99} ms; up ${r.up.mbps.toFixed(0)} MB/s p99 ${r.up.p99} ms`);
      results.push(r);
    } catch (err) {
      console.error(`${c.name}: FAILED: ${err.message}`);
      results.push({ name: c.name, status: 'failed', reason: err.message });
    }
    if (!children.has(app.child)) throw new Error(`the app died (${app.child.exitInfo}): ${app.child.tail}`);
  }

  let stream = null;
  if (opts.stream) {
    console.error(`gateway: streaming ${opts.streamMb} MiB down, then ${opts.streamMb} MiB up, RSS sampled every 20 ms ...`);
    try {
      stream = await streamThrough(opts, app);
    } catch (err) {
      console.error(`stream: FAILED: ${err.message}`);
      stream = { status: 'failed', reason: err.message };
    }
  }

  // ---- report
  const f = (n, d = 0) => (n == null || !Number.isFinite(n) ? '-' : n.toFixed(d));
  const gw = results.find((r) => r.name === 'gateway' && r.status === 'ok');
  const rows = [['contender', '1M down MB/s', 'down p99 ms', '10M up MB/s', 'up p99 ms', 'down ratio', 'up ratio']];
  for (const r of results) {
    if (r.status !== 'ok') { rows.push([r.name, r.status, '', '', '', '', '']); continue; }
    rows.push([r.name, f(r.down.mbps), f(r.down.p99, 1), f(r.up.mbps), f(r.up.p99, 1),
      gw ? `${(r.down.mbps / gw.down.mbps).toFixed(2)}x` : 'n/a', gw ? `${(r.up.mbps / gw.up.mbps).toFixed(2)}x` : 'n/a']);
  }
  console.log(`\nwrk -t1, ${opts.duration} s each: GET of 1 MiB on ${opts.down} connections, POST of 10 MiB on ${opts.up}; MB = MiB; ratio = contender / gateway`);
  printTable(rows);
  for (const r of results) {
    if (r.status !== 'ok') console.log(`  ${r.name} ${r.status}: ${r.reason.trim().split('\n')[0]}`);
    else if (r.down.errors || r.up.errors) console.log(`  warning: ${r.name} had ${r.down.errors + r.up.errors} non-2xx responses or socket errors`);
  }
  if (stream?.legs) {
    console.log(`\n${opts.streamMb} MiB streamed through the gateway each way (one request each), RSS of the gateway process:`);
    printTable([
      ['leg', 'MB/s', 'peak RSS'],
      ...stream.legs.map((l) => [l.dir, f(l.mbps), fmtMB(l.peak)]),
    ]);
    console.log(`  before ${fmtMB(stream.before)}, peak ${fmtMB(stream.peak)} (+${fmtMB(stream.peak - stream.before)}; bound +${fmtMB(STREAM_PEAK_BOUND)}: ${stream.peakPass ? 'PASS' : 'FAIL'}), after ${fmtMB(stream.after)} (${stream.after >= stream.before ? '+' : ''}${fmtMB(stream.after - stream.before)}; bound +${fmtMB(STREAM_AFTER_BOUND)}: ${stream.afterPass ? 'PASS' : 'FAIL'})`);
  } else if (stream) console.log(`\nstream: failed: ${stream.reason}`);
  meta.loadAverageAtEnd = os.loadavg()[0];
  console.log(`results written to ${writeWorkJson('bodies.json', { ...meta, options: opts, results, stream })}`);
  const failed = results.some((r) => r.status === 'failed') || stream?.status === 'failed' || (stream?.legs && !(stream.peakPass && stream.afterPass));
  return failed ? 1 : 0;
}

runMain('bench:bodies', main);
