// Where the gateway's CPU goes on the plain proxy path: the gateway under the bench's load
// (wrk -c50 on core 1, the gateway alone on core 0, the shared nginx upstream) with V8's
// --cpu-prof, then the profile summed by self time: the top functions, and the share of each file
// (the gateway's own, Node's, dependencies', native code and the kernel's writes). The .cpuprofile
// is kept for a flame graph (Chrome DevTools > Performance, or speedscope).
//
//   node bench/profile.mjs [--duration 8] [--top 30] [-- extra gateway flags]
import fs from 'node:fs';
import path from 'node:path';
import {
  ROOT, ensureTools, freePort, node, runMain, start, startTinyUpstream, stop, waitFor200, wrk,
} from './lib.mjs';

const GATEWAY_CLI = path.resolve(ROOT, process.env.BENCH_GATEWAY || 'dist/src/cli.js');

function parseArgs(argv) {
  const o = { duration: 8, top: 30, extra: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--') { o.extra = argv.slice(i + 1); break; }
    if (argv[i] === '--duration') o.duration = Number(argv[++i]);
    else if (argv[i] === '--top') o.top = Number(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}; usage: node bench/profile.mjs [--duration S] [--top N] [-- gateway flags]`);
  }
  return o;
}

/** Self time per function and per file group, in % of the profile's samples. */
function summarize(profile) {
  const dt = new Map();
  profile.samples.forEach((id, i) => dt.set(id, (dt.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const byFn = new Map();
  const byFile = new Map();
  let total = 0;
  for (const n of profile.nodes) {
    const t = dt.get(n.id) ?? 0;
    total += t;
    const { functionName, url, lineNumber } = n.callFrame;
    const file = url.replace(/^.*\/(dist\/src|node_modules)\//, (_, d) => (d === 'dist/src' ? 'gateway:' : 'dep:'));
    const fn = `${functionName || '(anonymous)'} ${file}${url ? `:${lineNumber + 1}` : ''}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + t);
    let group = `(${functionName || 'native'})`;
    if (url.includes('/dist/src/')) group = `gateway:${url.split('/dist/src/')[1]}`;
    else if (url.includes('/node_modules/')) group = `dep:${url.split('/node_modules/')[1].split('/')[0]}`;
    else if (url.startsWith('node:')) group = url;
    byFile.set(group, (byFile.get(group) ?? 0) + t);
  }
  const pct = (m) => [...m.entries()].sort((a, b) => b[1] - a[1]).map(([k, t]) => [k, (100 * t) / total]);
  return { functions: pct(byFn), files: pct(byFile) };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const missing = await ensureTools(['wrk', 'nginx']);
  if (missing.wrk || missing.nginx) throw new Error(missing.wrk || missing.nginx);
  const { sock } = await startTinyUpstream();
  const port = await freePort();
  const profDir = path.join(ROOT, 'bench/.work/profile');
  fs.rmSync(profDir, { recursive: true, force: true });
  const gw = start('gateway', node, [
    '--cpu-prof', `--cpu-prof-dir=${profDir}`, GATEWAY_CLI, 'run', '--workers', '0', '--listen', `127.0.0.1:${port}`,
    '--upstream', sock, '--admin', '127.0.0.1:0', '--access-log', 'off', '--control', 'null', '--pid-file', 'null', ...o.extra,
  ], { cpu: 0 });
  await waitFor200({ host: '127.0.0.1', port }, gw, 'gateway');
  await wrk(`http://127.0.0.1:${port}/`, { seconds: 2, connections: 50, latency: false });
  const out = await wrk(`http://127.0.0.1:${port}/`, { seconds: o.duration, connections: 50, latency: false });
  // SIGTERM: the gateway exits through process.exit, which writes the profile.
  await stop(gw, 10_000);
  const file = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written in ${profDir}`);
  const { functions, files } = summarize(JSON.parse(fs.readFileSync(path.join(profDir, file), 'utf8')));
  console.log(`load: ${/Requests\/sec:\s+\S+/.exec(out)?.[0] ?? '?'} (wrk -c50, ${o.duration} s; the profile also covers start-up and the 2 s warm-up)`);
  console.log(`\nself time by function (top ${o.top}), % of samples:`);
  for (const [k, p] of functions.slice(0, o.top)) console.log(`${p.toFixed(1).padStart(6)}  ${k}`);
  console.log('\nself time by file:');
  for (const [k, p] of files.slice(0, 25)) console.log(`${p.toFixed(1).padStart(6)}  ${k}`);
  console.log(`\nprofile: ${path.relative(ROOT, path.join(profDir, file))} (open in Chrome DevTools or https://www.speedscope.app for a flame graph)`);
  return 0;
}

runMain('profile', main);
