// A/B of two gateway builds (or flags) on a noisy machine: both run at once, pinned to the same
// core, each loaded by its own wrk (both on core 1) for the same seconds. The core is shared
// fairly between them, so the ratio of their req/s is the inverse ratio of their CPU cost per
// request, and whatever else the machine does hits both alike. Run-to-run noise of the ratio is
// about 2-3% (A against itself), against 10-20% for req/s taken one after the other on the VMs
// this was written on. Used to weigh each hot-path change (bench/README.md, "A/B of two builds").
//
//   node bench/ab.mjs --a dist/src/cli.js --b /path/to/other/cli.js [--a-args "..."] [--b-args "..."]
//                     [--a-node "..."] [--b-node "..."] [--rounds 3] [--duration 5]
//
// A side is a gateway CLI path (run with the bench's flags, as run.mjs does) plus extra flags, e.g.
// `--a-args "--upstream-client undici"`, and Node flags before it (`--b-node "--max-semi-space-size=32"`).
// Prints each round's req/s and B/A, then the median B/A.
import path from 'node:path';
import {
  ROOT, cleanup, ensureTools, median, pairedRounds, runMain, startTinyUpstream,
} from './lib.mjs';

function parseArgs(argv) {
  const o = { a: 'dist/src/cli.js', b: 'dist/src/cli.js', aArgs: '', bArgs: '', aNode: '', bNode: '', rounds: 3, duration: 5 };
  for (let i = 0; i < argv.length; i++) {
    const v = () => argv[++i];
    const flag = argv[i];
    if (flag === '--a') o.a = v();
    else if (flag === '--b') o.b = v();
    else if (flag === '--a-args') o.aArgs = v();
    else if (flag === '--b-args') o.bArgs = v();
    else if (flag === '--a-node') o.aNode = v();
    else if (flag === '--b-node') o.bNode = v();
    else if (flag === '--rounds') o.rounds = Number(v());
    else if (flag === '--duration') o.duration = Number(v());
    else throw new Error(`unknown argument ${flag}; usage: node bench/ab.mjs --a CLI --b CLI [--a-args ...] [--b-args ...] [--a-node ...] [--b-node ...] [--rounds N] [--duration S]`);
  }
  return o;
}

const gateway = (cli, extra, port, sock) => [
  path.resolve(ROOT, cli), 'run', '--workers', '0', '--listen', `127.0.0.1:${port}`, '--upstream', sock,
  '--admin', '127.0.0.1:0', '--access-log', 'off', '--control', 'null', '--pid-file', 'null', ...extra.split(' ').filter(Boolean),
];

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const missing = await ensureTools(['wrk', 'nginx']);
  if (missing.wrk || missing.nginx) throw new Error(missing.wrk || missing.nginx);
  const { sock } = await startTinyUpstream();
  const sides = [['A', o.a, o.aArgs, o.aNode], ['B', o.b, o.bArgs, o.bNode]].map(([name, cli, extra, flags]) => ({
    name,
    args: (port) => [...flags.split(' ').filter(Boolean), ...gateway(cli, extra, port, sock)],
  }));
  const rounds = await pairedRounds(sides, { rounds: o.rounds, duration: o.duration });
  rounds.forEach((r, i) => console.log(`round ${i + 1}: A ${r.a.toFixed(0)} req/s, B ${r.b.toFixed(0)} req/s, B/A ${r.ratio.toFixed(3)}`));
  console.log(`A = node ${o.aNode} ${o.a} ${o.aArgs}\nB = node ${o.bNode} ${o.b} ${o.bArgs}\nmedian B/A = ${median(rounds.map((r) => r.ratio)).toFixed(3)} (above 1: B costs less per request)`);
  await cleanup();
  return 0;
}

runMain('ab', main);
