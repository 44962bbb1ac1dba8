#!/usr/bin/env node
// Writes docs/metrics.md's table from the metrics module (run after `npm run build`):
// `npm run docs:metrics`. test/unit/docs-metrics.test.ts fails when the two drift apart.
import { readFileSync, writeFileSync } from 'node:fs';
import { GatewayMetrics } from '../dist/src/metrics/metrics.js';

const m = new GatewayMetrics({});
const rows = m.registry
  .getMetricsAsArray()
  .filter((x) => !x.name.startsWith('gateway_process_') && !x.name.startsWith('gateway_nodejs_'))
  .map((x) => `| \`${x.name}\` | ${x.type} | ${(x.labelNames ?? []).map((l) => `\`${l}\``).join(', ') || '-'} | ${x.help.replace(/\|/g, '\\|')} |`);
const path = new URL('../docs/metrics.md', import.meta.url);
const doc = readFileSync(path, 'utf8');
const start = doc.indexOf('| name | type | labels | meaning |');
const end = doc.indexOf('\n\n', start);
writeFileSync(path, doc.slice(0, start) + ['| name | type | labels | meaning |', '|---|---|---|---|', ...rows].join('\n') + doc.slice(end));
