// Throughput/latency bench: the gateway against peer proxies, all in front of one shared
// upstream on a Unix socket; optionally a sweep over worker counts (gateway and nginx); a
// comparison with the previous recorded run. See bench/README.md for what is measured and why.
//
//   node bench/run.mjs [--only a,b] [--duration N] [--connections N] [--runs N] [--workers-sweep] [--record]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BENCH, CAN_PIN, ROOT, checkMachine, children, ensureTools, freePort, gitCommit, groupCpuMs, median, mkTemp, node,
  nginxProxyServer, parseWrk, printTable, runMain, start, startCaddy, startNginx, startTinyUpstream, stop, waitFor200, wrk,
  pairedRounds, writeConf, writeWorkJson,
} from './lib.mjs';

// BENCH_GATEWAY lets you point the bench at another build (or a stand-in) of the CLI.
const GATEWAY_CLI = path.resolve(ROOT, process.env.BENCH_GATEWAY || 'dist/src/cli.js');
// The recorded run the next one is compared with (committed when figures are recorded).
const RECORDED = path.join(BENCH, 'results/latest.json');
const USAGE = 'usage: node bench/run.mjs [--only a,b] [--duration N] [--connections N] [--runs N] [--workers-sweep] [--record] | --report FILE.json';

// ---------------------------------------------------------------- options
function parseArgs(argv) {
  const opts = {
    only: null,
    duration: Number(process.env.BENCH_DURATION || 10),
    connections: 50,
    runs: 1,
    workersSweep: false,
    record: false,
    report: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (flag === '--only') opts.only = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (flag === '--duration') opts.duration = Number(value());
    else if (flag === '--connections') opts.connections = Number(value());
    else if (flag === '--runs') opts.runs = Number(value());
    else if (flag === '--workers-sweep') opts.workersSweep = true;
    else if (flag === '--record') opts.record = true;
    else if (flag === '--report') opts.report = value();
    else if (flag === '--help' || flag === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument ${argv[i]}`);
  }
  for (const k of ['duration', 'connections', 'runs']) {
    if (!Number.isInteger(opts[k]) || opts[k] < 1) throw new Error(`--${k} must be a positive integer`);
  }
  return opts;
}

// ---------------------------------------------------------------- contenders
// The gateway as the bench runs it: no access log, no control socket, no supervisor.
// workers 0 = one process doing everything (the 1-core row); N = a primary and N workers.
const gatewayArgs = (port, sock, workers, extra = []) => [
  GATEWAY_CLI, 'run', '--workers', String(workers), '--listen', `127.0.0.1:${port}`, '--upstream', sock,
  '--admin', '127.0.0.1:0', '--access-log', 'off', '--control', 'null', '--pid-file', 'null', ...extra,
];
const checkGateway = () => {
  if (!fs.existsSync(GATEWAY_CLI)) return `${path.relative(ROOT, GATEWAY_CLI)} not found (build failed or gateway not written yet)`;
};
// Sweep pinning: wrk and the upstream stay on core 1; one worker gets core 0 alone (as the main
// table), two workers get both cores and share core 1 with wrk and the upstream (see README).
const sweepCpu = (n) => (n === 1 ? 0 : `0-${n - 1}`);
const sweepRows = [1, 2].flatMap((n) => [
  {
    name: `gateway-w${n}`,
    sweep: n,
    needs: [],
    check: checkGateway,
    start: ({ port, sock }) => start(`gateway-w${n}`, node, gatewayArgs(port, sock, n), { cpu: sweepCpu(n) }),
  },
  {
    name: `nginx-w${n}`,
    sweep: n,
    needs: ['nginx'],
    start: ({ port, sock }) => startNginx(`nginx-w${n}`, mkTemp('bench-nginx-'), nginxProxyServer(port, sock), sweepCpu(n), { workers: n }),
  },
]);

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
    check: checkGateway,
    start: ({ port, sock }) => start('gateway', node, gatewayArgs(port, sock, 0), { cpu: 0 }),
  },
  {
    // The same gateway on undici, the upstream client it used first (--upstream-client undici):
    // what the native client (src/proxy/upstream.ts) gains.
    name: 'gateway-undici',
    needs: [],
    check: checkGateway,
    start: ({ port, sock }) => start('gateway-undici', node, gatewayArgs(port, sock, 0, ['--upstream-client', 'undici']), { cpu: 0 }),
  },
  {
    // Holding off (--hold-timeout 0): with nothing held, the difference to `gateway` is the
    // gate's cost on every request (the issue bounds it at 2%).
    name: 'gateway-nogate',
    needs: [],
    check: checkGateway,
    start: ({ port, sock }) => start('gateway-nogate', node, gatewayArgs(port, sock, 0, ['--hold-timeout', '0']), { cpu: 0 }),
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
  {
    // Opt-in (named in --only): both sides on Node's native parser over raw sockets, no features:
    // what a Node proxy could reach (docs/performance.md).
    name: 'native-floor',
    optIn: true,
    needs: [],
    start: ({ port, sock }) => start('native-floor', node, [
      path.join(BENCH, 'peers/native-floor.mjs'), '--listen', `127.0.0.1:${port}`, '--upstream', sock,
    ], { cpu: 0 }),
  },
  ...sweepRows,
];

// ---------------------------------------------------------------- measuring
const load = (url, seconds, opts, latency) => wrk(url, { seconds, connections: opts.connections, latency });

/**
 * One measured run of one contender: start it, wait for a 200, warm it up (JIT, connection pools),
 * run wrk, stop it. Its CPU time over the measured run (every process of its group: workers and
 * masters too) divided by the requests gives CPU per request, a figure that moves less than req/s
 * with the rest of the machine.
 */
async function measureOnce(c, opts, upstream, tcpPort) {
  let child = null;
  let port = tcpPort;
  try {
    if (!c.direct) {
      port = await freePort();
      child = c.start({ port, sock: upstream.sock });
      await waitFor200({ host: '127.0.0.1', port }, child, c.name);
    }
    const url = `http://127.0.0.1:${port}/`;
    await load(url, 2, opts, false);
    if (child && !children.has(child)) throw new Error(`${c.name} died during warm-up (${child.exitInfo}):\n${child.tail.trim()}`);
    const cpu0 = child ? groupCpuMs(child.pid) : NaN;
    const r = parseWrk(await load(url, opts.duration, opts, true));
    const cpu1 = child ? groupCpuMs(child.pid) : NaN;
    if (child && !children.has(child)) throw new Error(`${c.name} died under load (${child.exitInfo}):\n${child.tail.trim()}`);
    if (!Number.isFinite(r.rps)) throw new Error('could not parse wrk output');
    r.cpuUs = r.requests > 0 ? (1000 * (cpu1 - cpu0)) / r.requests : NaN;
    return r;
  } finally {
    if (child) await stop(child);
  }
}

/**
 * Every contender once per round, `runs` rounds: a machine that gets busier or quieter during the
 * bench moves every contender alike, rather than the ones measured at that moment (with all runs
 * of one contender back to back, a noisy minute could take one row alone down).
 */
async function measureAll(list, opts, upstream, tcpPort) {
  const state = new Map(list.map((c) => [c.name, { runs: [], failed: null }]));
  for (let round = 1; round <= opts.runs; round++) {
    for (const c of list) {
      const st = state.get(c.name);
      if (st.failed) continue;
      console.error(`${c.name}: round ${round}/${opts.runs}: warm-up 2 s, then ${opts.duration} s ...`);
      try {
        const r = await measureOnce(c, opts, upstream, tcpPort);
        st.runs.push(r);
        console.error(`${c.name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, CPU ${fmt(r.cpuUs, 1)} us/request`);
      } catch (err) {
        console.error(`${c.name}: FAILED: ${err.message}`);
        st.failed = err.message;
      }
      if (!children.has(upstream.child)) throw new Error(`upstream nginx died (${upstream.child.exitInfo}): ${upstream.child.tail}`);
    }
  }
  return list.map((c) => {
    const { runs, failed } = state.get(c.name);
    const base = c.sweep ? { sweep: c.sweep } : {};
    if (failed) return { name: c.name, status: 'failed', reason: failed, ...base };
    // With several runs, report the run with the median req/s (its own latencies with it).
    const best = runs.find((r) => r.rps === median(runs.map((x) => x.rps)));
    const errors = runs.reduce((a, r) => a + r.non2xx + r.socketErrors, 0);
    const cpuUs = median(runs.map((r) => r.cpuUs));
    return { name: c.name, status: 'ok', ...best, cpuUs, runs: runs.map((r) => r.rps), cpuRuns: runs.map((r) => r.cpuUs), errors, ...base };
  });
}

/**
 * The gate's cost measured paired (lib.mjs pairedRounds): the gateway with holding off (A) and on
 * (B) at once on core 0. Taken one after the other, as the table's rows are, the two differ by more
 * than the 2% bound from the machine alone (-7% to +5% between runs of one build).
 */
async function measureGatePaired(opts, upstream) {
  console.error(`gate cost, paired: gateway with --hold-timeout 0 and without, both on core 0 at once, ${opts.runs} round(s) of ${opts.duration} s ...`);
  const side = (name, extra) => ({ name, args: (port) => gatewayArgs(port, upstream.sock, 0, extra) });
  const rounds = await pairedRounds([side('gateway-nogate', ['--hold-timeout', '0']), side('gateway', [])], { rounds: opts.runs, duration: opts.duration, connections: opts.connections });
  return { rounds, cost: 1 - median(rounds.map((r) => r.ratio)) };
}

// ---------------------------------------------------------------- report
const fmt = (n, d = 0) => (n == null || !Number.isFinite(n) ? '-' : n.toFixed(d));
const pct = (x) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%` : '-');
const okRow = (results, name) => results.find((r) => r.name === name && r.status === 'ok');
/**
 * a ÷ b in req/s: the median of the per-round ratios (both measured in the same round, minutes
 * apart at most) when both have them, else of their reported runs. Two medians taken apart can
 * come from different rounds, one quiet and one busy; a ratio within a round cannot.
 */
function ratio(a, b) {
  if (a.runs?.length > 0 && a.runs.length === b.runs?.length) return median(a.runs.map((x, i) => x / b.runs[i]));
  return a.rps / b.rps;
}

function printFailures(rows) {
  for (const r of rows) {
    if (r.status !== 'ok') {
      // First line says what went wrong, the last line of the child's output usually why.
      const lines = r.reason.trim().split('\n');
      console.log(`  ${r.name} ${r.status}: ${lines[0]}${lines.length > 1 ? ` ... ${lines.at(-1)}` : ''}`);
    } else if (r.errors) console.log(`  warning: ${r.name} had ${r.errors} non-2xx responses or socket errors`);
  }
}

// The performance issue's one-worker targets, each a ratio of two rows of this run.
const TARGETS = [
  ['undici', 1.3], ['caddy', 1.3], ['node-http-proxy', 1.6], ['nginx', 0.5],
];

function reportMain(results, opts) {
  const main = results.filter((r) => !r.sweep);
  if (main.length === 0) return;
  const gw = okRow(main, 'gateway');
  for (const r of main) if (r.status === 'ok') r.ratio = gw ? ratio(r, gw) : null;
  const rows = [['contender', 'req/s', 'p50 ms', 'p99 ms', 'ratio', 'CPU us/req']];
  for (const r of main) {
    if (r.status === 'ok') rows.push([r.name, fmt(r.rps), fmt(r.p50, 2), fmt(r.p99, 2), r.ratio == null ? 'n/a' : `${fmt(r.ratio, 2)}x`, fmt(r.cpuUs, 1)]);
    else rows.push([r.name, r.status, '', '', '', '']);
  }
  console.log(`\nwrk -t1 -c${opts.connections} -d${opts.duration}s, ${opts.runs} round(s), median reported; one core each; ratio = contender req/s / gateway req/s;`);
  console.log('CPU us/req = the contender\'s CPU time (all its processes) over the measured run / requests;');
  console.log('every ratio here and below is the median of the per-round ratios');
  printTable(rows);
  printFailures(main);
  if (!gw) return;

  console.log('\ntargets (one worker, ratios within this run):');
  for (const [peer, min] of TARGETS) {
    const p = okRow(main, peer);
    if (!p) { console.log(`  gateway / ${peer} = n/a (no ${peer} row)`); continue; }
    const x = ratio(gw, p);
    console.log(`  gateway / ${peer} = ${x.toFixed(2)}x  (target >= ${min}x: ${x >= min ? 'PASS' : 'FAIL'})`);
  }
  const ngx = okRow(main, 'nginx');
  if (ngx) console.log(`  p99: gateway ${fmt(gw.p99, 2)} ms, nginx ${fmt(ngx.p99, 2)} ms`);
  const nogate = okRow(main, 'gateway-nogate');
  const paired = opts.gatePaired;
  if (paired) {
    // The gate's cost with nothing held: how much more the gateway costs per request with holding on.
    const per = paired.rounds.map((r) => `${(100 * (1 - r.ratio)).toFixed(1)}%`).join(', ');
    console.log(`  gate cost (nothing held) = ${(100 * paired.cost).toFixed(2)}% (paired on one core: 1 - gateway / --hold-timeout 0, median of rounds ${per}; target < 2%: ${paired.cost < 0.02 ? 'PASS' : 'FAIL'})`);
  }
  if (nogate) {
    // The rows' own figure, taken one after the other: shown, but the machine moves it more than 2%.
    const cost = 1 - ratio(gw, nogate);
    console.log(`  ${paired ? 'the rows\' own figure (not paired, noise above 2%): ' : 'gate cost (nothing held, not paired: noise above 2%) = '}${(100 * cost).toFixed(2)}% (per round, 1 - gateway / --hold-timeout 0; medians ${fmt(gw.rps)} vs ${fmt(nogate.rps)} req/s)`);
  }
}

function reportSweep(results) {
  const sweep = results.filter((r) => r.sweep);
  if (sweep.length === 0) return;
  const counts = [...new Set(sweep.map((r) => r.sweep))].sort();
  const rows = [['workers', 'gateway req/s', 'gateway p99 ms', 'nginx req/s', 'nginx p99 ms', 'gateway / nginx']];
  for (const n of counts) {
    const g = okRow(sweep, `gateway-w${n}`);
    const x = okRow(sweep, `nginx-w${n}`);
    rows.push([String(n), g ? fmt(g.rps) : 'failed', g ? fmt(g.p99, 2) : '', x ? fmt(x.rps) : 'failed', x ? fmt(x.p99, 2) : '', g && x ? `${ratio(g, x).toFixed(2)}x` : '-']);
  }
  console.log('\nworkers sweep: gateway --workers N (a primary + N workers), nginx master + worker_processes N;');
  console.log('N = 1 on core 0; N = 2 on both cores, sharing core 1 with wrk and the upstream (see README)');
  printTable(rows);
  printFailures(sweep);
  const g1 = okRow(sweep, 'gateway-w1');
  const g2 = okRow(sweep, 'gateway-w2');
  const n1 = okRow(sweep, 'nginx-w1');
  const n2 = okRow(sweep, 'nginx-w2');
  if (g1 && g2) console.log(`  scaling 1 -> 2 workers: gateway ${ratio(g2, g1).toFixed(2)}x${n1 && n2 ? `, nginx ${ratio(n2, n1).toFixed(2)}x` : ''}`);
}

// Per contender, this run against the previous recorded one (bench/results/latest.json).
function reportChange(results, previous) {
  if (!previous) {
    console.log(`\nno recorded run to compare with (${path.relative(ROOT, RECORDED)} is written by --record)`);
    return;
  }
  const rows = [['contender', 'recorded req/s', 'now req/s', 'change', 'recorded p99', 'now p99']];
  for (const r of results) {
    const p = previous.results?.find((x) => x.name === r.name && x.status === 'ok');
    if (r.status !== 'ok' || !p) continue;
    rows.push([r.name, fmt(p.rps), fmt(r.rps), pct(r.rps / p.rps - 1), fmt(p.p99, 2), fmt(r.p99, 2)]);
  }
  console.log(`\nagainst the recorded run of ${previous.date?.slice(0, 10) ?? '?'} (commit ${previous.commit ?? '?'}, load ${fmt(previous.loadAverageAtStart, 2)} at start):`);
  if (rows.length === 1) { console.log('  no contender in common'); return; }
  printTable(rows);
  // A ratio within one run moves less with the machine than a raw req/s: show the gateway/nginx one too.
  const ratio = (res) => {
    const g = res.find((x) => x.name === 'gateway' && x.status === 'ok');
    const n = res.find((x) => x.name === 'nginx' && x.status === 'ok');
    return g && n ? g.rps / n.rps : NaN;
  };
  const [was, now] = [ratio(previous.results ?? []), ratio(results)];
  if (Number.isFinite(was) && Number.isFinite(now)) console.log(`  gateway / nginx: recorded ${was.toFixed(2)}x, now ${now.toFixed(2)}x`);
  for (const name of ['gateway', 'gateway-w1', 'gateway-w2']) {
    const r = okRow(results, name);
    const p = previous.results?.find((x) => x.name === name && x.status === 'ok');
    if (r && p && r.rps < 0.95 * p.rps) {
      console.log(`  WARNING: ${name} req/s dropped ${pct(r.rps / p.rps - 1)} against the recorded run (more than 5%): a slowdown, or a busier machine (compare the load averages and the peers' change)`);
    }
  }
}

function report(results, opts, previous) {
  reportMain(results, opts);
  reportSweep(results);
  reportChange(results, previous);

  const data = {
    date: new Date().toISOString(),
    commit: opts.commit,
    gateway: GATEWAY_CLI,
    node: process.version,
    cpus: os.cpus().length,
    pinned: CAN_PIN,
    loadAverageAtStart: opts.loadAverageAtStart,
    loadAverageAtEnd: os.loadavg()[0],
    wrk: { threads: 1, connections: opts.connections, duration: opts.duration, runs: opts.runs },
    results,
    ...(opts.gatePaired ? { gatePaired: opts.gatePaired } : {}),
  };
  console.log(`results written to ${writeWorkJson('last.json', data)}`);
  if (opts.record) {
    fs.mkdirSync(path.dirname(RECORDED), { recursive: true });
    fs.writeFileSync(RECORDED, `${JSON.stringify(data, null, 2)}\n`);
    console.log(`recorded as ${path.relative(ROOT, RECORDED)} (commit it with RESULTS.md; the next run compares with it)`);
  }
}

// ---------------------------------------------------------------- main
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.report) {
    // The tables of a run already made (its JSON), as this version of the bench reports them.
    const data = JSON.parse(fs.readFileSync(opts.report, 'utf8'));
    const o = { ...opts, connections: data.wrk.connections, duration: data.wrk.duration, runs: data.wrk.runs, gatePaired: data.gatePaired };
    console.log(`run of ${data.date}, commit ${data.commit}, load ${data.loadAverageAtStart} at start, ${data.loadAverageAtEnd} at the end`);
    reportMain(data.results, o);
    reportSweep(data.results);
    return 0;
  }
  const names = CONTENDERS.map((c) => c.name);
  const unknown = (opts.only ?? []).filter((n) => !names.includes(n));
  if (unknown.length) throw new Error(`unknown contender(s) ${unknown.join(', ')}; known: ${names.join(', ')}`);
  // Sweep rows run with --workers-sweep, opt-in rows never by default; any row when named in --only.
  const selected = CONTENDERS.filter((c) => (opts.only ? opts.only.includes(c.name) : !c.optIn && (!c.sweep || opts.workersSweep)));
  let previous = null;
  try { previous = JSON.parse(fs.readFileSync(RECORDED, 'utf8')); } catch { /* none recorded yet */ }

  opts.loadAverageAtStart = checkMachine();
  // At the start: the build being measured is the tree as it was then.
  opts.commit = gitCommit();
  // wrk and nginx (the upstream) are needed whatever is selected.
  const missing = await ensureTools([...new Set(['wrk', 'nginx', ...selected.flatMap((c) => c.needs)])]);
  if (missing.wrk) throw new Error(missing.wrk);
  if (missing.nginx) throw new Error(`${missing.nginx}; nginx is also the shared upstream`);

  const tcpPort = await freePort();
  const upstream = await startTinyUpstream(tcpPort);
  console.error(`upstream nginx on unix:${upstream.sock} and 127.0.0.1:${tcpPort}`);

  const results = [];
  const runnable = [];
  for (const c of selected) {
    const reason = c.needs.map((t) => missing[t]).find(Boolean);
    const broken = reason ? undefined : c.check?.();
    if (reason) console.error(`${c.name}: skipped: ${reason}`);
    else if (broken) console.error(`${c.name}: FAILED: ${broken}`);
    else runnable.push(c);
    if (reason || broken) results.push({ name: c.name, status: reason ? 'skipped' : 'failed', reason: reason ?? broken, ...(c.sweep ? { sweep: c.sweep } : {}) });
  }
  results.push(...(await measureAll(runnable, opts, upstream, tcpPort)));
  // The table keeps the contenders' order.
  results.sort((a, b) => selected.findIndex((c) => c.name === a.name) - selected.findIndex((c) => c.name === b.name));
  if (okRow(results, 'gateway') && okRow(results, 'gateway-nogate')) opts.gatePaired = await measureGatePaired(opts, upstream);
  report(results, opts, previous);
  // A gateway that could not be measured is a failure of the bench, not a footnote.
  return results.some((r) => r.status === 'failed') ? 1 : 0;
}

runMain('bench', main);
