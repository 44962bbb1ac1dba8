// Soak: the gateway supervising the demo app (examples/demo-app.mjs) under mixed traffic for a long
// time, with app restarts through the control socket every few seconds. What it answers: does
// anything fail (errors must be 0), and does the gateway leak (RSS and open descriptors at the end
// against the start, after a warm-up)?
//
//   npm run bench:soak                      # 10 minutes
//   node bench/soak.mjs --duration 60s      # a quick run
//
// Options: --duration (10m; 60s, 90, 2m), --warmup (10s), --restart-every (5s), --workers (the
// gateway's --workers, default auto). BENCH_GATEWAY replaces dist/src/cli.js as in run.mjs.
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { ROOT, fmtMB, freePort, gitCommit, mkTemp, node, runMain, start, stop, waitFor200, writeWorkJson } from './lib.mjs';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i === -1 ? def : args[i + 1];
};
const seconds = (text) => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(text));
  if (!m) throw new Error(`not a duration: ${text} (write 60s, 10m, 90)`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] ?? 's'];
};
const DURATION = seconds(opt('--duration', '10m'));
const WARMUP = seconds(opt('--warmup', '10s'));
const RESTART_EVERY = seconds(opt('--restart-every', '5s'));
const WORKERS = opt('--workers', 'auto');
const CLI = process.env.BENCH_GATEWAY ?? path.join(ROOT, 'dist/src/cli.js');
const DEMO = path.join(ROOT, 'examples/demo-app.mjs');

/** The gateway's processes: the primary and its workers (the command line names the CLI), not the app. */
function gatewayPids(primary) {
  const parent = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* gone */ }
  }
  const tree = [primary];
  for (let i = 0; i < tree.length; i++) for (const [child, ppid] of parent) if (ppid === tree[i]) tree.push(child);
  return tree.filter((pid) => {
    try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(path.basename(CLI)); } catch { return false; }
  });
}

/** RSS (VmRSS) and open descriptors (/proc/PID/fd) of the gateway, summed over its processes. */
function footprint(primary) {
  let rss = 0;
  let fds = 0;
  const pids = gatewayPids(primary);
  for (const pid of pids) {
    try {
      rss += Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
      fds += fs.readdirSync(`/proc/${pid}/fd`).length;
    } catch { /* gone */ }
  }
  return { rss, fds, processes: pids.length };
}

async function main() {
  const dir = mkTemp('gw-soak-');
  const sock = path.join(dir, 'web_server.sock');
  const pid = path.join(dir, 'web_server.pid');
  const control = path.join(dir, 'gateway.ctl');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const gw = start('gateway', node, [CLI, 'run', '--listen', `127.0.0.1:${port}`, '--upstream', sock, '--pid-file', pid, '--control', control, '--admin', 'null', '--access-log', 'off', '--log-level', 'warn', '--workers', WORKERS, '--app-command', `${node} ${DEMO} --socket ${sock} --pid ${pid}`]);
  await waitFor200({ host: '127.0.0.1', port }, gw, 'gateway');

  const counts = { keepalive: 0, fresh: 0, upload: 0, restarts: 0 };
  const errors = [];
  let errorCount = 0;
  let measuring = false;
  let over = false;
  const fail = (kind, what) => {
    errorCount++;
    if (errors.length < 50) errors.push({ kind, what, at: new Date().toISOString() });
  };
  const keepalive = new Agent({ connections: 8 });
  const upload = Buffer.alloc(300 * 1024, 0x61);

  /** One kind of traffic in a closed loop; each answer must be a 200 with the whole body. */
  const loop = async (kind, once) => {
    while (!over) {
      try {
        const ok = await once();
        if (ok !== true) fail(kind, ok);
        else if (measuring) counts[kind]++;
      } catch (err) {
        fail(kind, err.code ?? err.message);
      }
    }
  };
  const get = (dispatcher, headers) => async () => {
    const res = await request(`${url}/soak`, { dispatcher, headers });
    const body = await res.body.text();
    return res.statusCode === 200 && body.includes('"url":"/soak"') ? true : `status ${res.statusCode}`;
  };
  const fresh = new Agent({ pipelining: 0 });
  const post = async () => {
    const res = await request(`${url}/upload`, { method: 'POST', body: upload, dispatcher: keepalive });
    const body = await res.body.json();
    return res.statusCode === 200 && body.body_bytes === upload.length ? true : `status ${res.statusCode}, ${body.body_bytes} bytes`;
  };
  const loops = [
    ...Array.from({ length: 6 }, () => loop('keepalive', get(keepalive))),
    // A new connection for each request: accept, close, and the descriptors that come and go.
    ...Array.from({ length: 2 }, () => loop('fresh', get(fresh, { connection: 'close' }))),
    ...Array.from({ length: 2 }, () => loop('upload', post)),
  ];
  const restarts = (async () => {
    while (!over) {
      await sleep(RESTART_EVERY * 1000);
      if (over) break;
      const r = start('restart', node, [CLI, 'restart', '--control', control]);
      await r.exited;
      if (r.exitInfo !== 'code 0') fail('restart', `${r.exitInfo}: ${r.tail.trim().slice(-300)}`);
      else if (measuring) counts.restarts++;
    }
  })();

  console.log(`soak: warming up ${WARMUP} s, then ${DURATION} s of keep-alive GETs, new-connection GETs, 300 KB uploads and an app restart every ${RESTART_EVERY} s`);
  await sleep(WARMUP * 1000);
  const startFp = footprint(gw.pid);
  errors.length = 0;
  errorCount = 0;
  measuring = true;
  const t0 = Date.now();
  const samples = [{ t: 0, ...startFp }];
  while (Date.now() - t0 < DURATION * 1000) {
    await sleep(Math.min(30_000, DURATION * 1000 - (Date.now() - t0)));
    const fp = footprint(gw.pid);
    samples.push({ t: Math.round((Date.now() - t0) / 1000), ...fp });
    if (!gw.exitInfo) console.log(`soak: ${samples.at(-1).t} s: ${counts.keepalive + counts.fresh + counts.upload} requests, ${errorCount} errors, RSS ${fmtMB(fp.rss)}, ${fp.fds} fds, ${counts.restarts} restarts`);
  }
  measuring = false;
  // The end figures are taken under the same load as the start ones, then the load stops.
  const endFp = samples.at(-1);
  over = true;
  await Promise.all([...loops, restarts]);
  await keepalive.close();
  await fresh.close();
  const elapsed = (Date.now() - t0) / 1000;
  await stop(gw, 35_000);

  const requests = counts.keepalive + counts.fresh + counts.upload;
  const pct = (a, b) => `${b >= a ? '+' : ''}${(((b - a) / a) * 100).toFixed(1)}%`;
  console.log('');
  console.log(`soak: ${elapsed.toFixed(0)} s, gateway --workers ${WORKERS} (${startFp.processes} processes), demo app`);
  console.log(`requests ${requests} (keep-alive ${counts.keepalive}, new connection ${counts.fresh}, 300 KB uploads ${counts.upload}), ${(requests / elapsed).toFixed(0)} req/s`);
  console.log(`app restarts ${counts.restarts}`);
  console.log(`errors ${errorCount}`);
  console.log(`RSS ${fmtMB(startFp.rss)} -> ${fmtMB(endFp.rss)} (${pct(startFp.rss, endFp.rss)}), peak ${fmtMB(Math.max(...samples.map((s) => s.rss)))}`);
  console.log(`open fds ${startFp.fds} -> ${endFp.fds} (${pct(startFp.fds, endFp.fds)})`);
  for (const e of errors.slice(0, 10)) console.log(`  error: ${e.kind}: ${e.what} at ${e.at}`);
  writeWorkJson('soak.json', { commit: gitCommit(), duration: elapsed, workers: WORKERS, counts, requests, errorCount, errors, start: startFp, end: endFp, samples });
  return errorCount === 0 ? 0 : 1;
}

runMain('soak', main);
