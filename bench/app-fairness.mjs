// How requests fare through the gateway against a real, busy app server (Debian's puma 5.6 with
// its default 5 threads, or unicorn with 4 workers, or thin; the test fixture's Rack app): 12
// closed loops (half keep-alive) and one new request every 25 ms, each spending 20 ms in the app,
// so the server is always full. Prints requests/s and the latency spread per round; the pool's
// growth rule (docs/proxy.md) is what this measures. With `--a PATH` a second build runs in
// alternate rounds against the same server.
//
//   node bench/app-fairness.mjs [--server puma|unicorn|thin] [--duration 5] [--runs 2] [--a BASE/dist/src/cli.js]
import path from 'node:path';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { ROOT, ensureTools, freePort, mkTemp, node, runMain, start, stop, waitFor200, writeConf } from './lib.mjs';

function parseArgs(argv) {
  const o = { server: 'puma', duration: 5, runs: 2, a: null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--server') o.server = argv[++i];
    else if (argv[i] === '--duration') o.duration = Number(argv[++i]);
    else if (argv[i] === '--runs') o.runs = Number(argv[++i]);
    else if (argv[i] === '--a') o.a = path.resolve(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}; usage: node bench/app-fairness.mjs [--server puma|unicorn|thin] [--duration S] [--runs N] [--a PATH]`);
  }
  if (!['puma', 'unicorn', 'thin'].includes(o.server)) throw new Error(`--server ${o.server}: puma, unicorn or thin`);
  return o;
}

async function load(url, seconds) {
  const lat = [];
  let failed = 0;
  const end = Date.now() + seconds * 1000;
  const one = async (pool, keepAlive) => {
    const t = performance.now();
    try {
      const r = await pool.request({ path: '/echo/fair?sleep=0.02', method: 'GET', headers: keepAlive ? {} : { connection: 'close' } });
      await r.body.text();
      if (r.statusCode !== 200) failed++;
    } catch {
      failed++;
    }
    lat.push(performance.now() - t);
  };
  const pools = [];
  const running = [];
  for (let i = 0; i < 12; i++) {
    const p = new Pool(url, { connections: 1 });
    pools.push(p);
    running.push((async () => { while (Date.now() < end) await one(p, i % 2 === 0); })());
  }
  const open = new Pool(url, { connections: 256 });
  pools.push(open);
  let n = 0;
  const arrivals = setInterval(() => running.push(one(open, n++ % 2 === 0)), 25);
  await Promise.all(running.slice(0, 12));
  clearInterval(arrivals);
  await Promise.all(running);
  await Promise.all(pools.map((p) => p.destroy()));
  lat.sort((x, y) => x - y);
  const q = (f) => lat[Math.min(lat.length - 1, Math.floor(lat.length * f))].toFixed(0);
  return `${(lat.length / seconds).toFixed(0).padStart(4)} req/s, failed ${failed}, p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, slowest ${q(1)} ms`;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const missing = await ensureTools([o.server]);
  if (missing[o.server]) throw new Error(missing[o.server]);
  const dir = mkTemp('bench-fairness-');
  const sock = path.join(dir, 'app.sock');
  const rackup = path.join(ROOT, 'test/fixtures/rack/config.ru');
  const args = {
    puma: ['-e', 'production', '-b', `unix://${sock}`, rackup],
    unicorn: ['-c', writeConf(dir, 'unicorn.rb', `listen ${JSON.stringify(sock)}\nworker_processes 4\n`), '-E', 'production', rackup],
    thin: ['start', '--socket', sock, '-e', 'production', '-R', rackup],
  }[o.server];
  const app = start(o.server, o.server, args);
  for (let i = 0; !(await new Promise((r) => net.connect(sock).on('connect', function () { this.destroy(); r(true); }).on('error', () => r(false)))); i++) {
    if (i > 300) throw new Error(`${o.server} not accepting on ${sock}:\n${app.tail}`);
    await sleep(100);
  }
  const builds = [['gateway', path.join(ROOT, 'dist/src/cli.js')], ...(o.a ? [['A', o.a]] : [])];
  for (let run = 1; run <= o.runs; run++) {
    for (const [name, cli] of builds) {
      const port = await freePort();
      const gw = start(name, node, [cli, 'run', '--workers', '0', '--listen', `127.0.0.1:${port}`, '--upstream', sock, '--admin', '127.0.0.1:0', '--access-log', 'off', '--control', 'null', '--pid-file', 'null']);
      await waitFor200({ host: '127.0.0.1', port, path: '/echo/up' }, gw, name);
      console.log(`round ${run} ${name.padEnd(8)} ${await load(`http://127.0.0.1:${port}`, o.duration)}`);
      await stop(gw);
    }
  }
  await stop(app);
  return 0;
}

runMain('app-fairness', main);
