#!/usr/bin/env node
// Rewrites docs/configuration.md's table from the schema (run after `npm run build`):
// `npm run docs:config`. test/unit/docs-config.test.ts fails when the two drift apart.
import { readFileSync, writeFileSync } from 'node:fs';
import { SCHEMA, flagOf } from '../dist/src/config/schema.js';

const path = new URL('../docs/configuration.md', import.meta.url);
const doc = readFileSync(path, 'utf8');
const rows = Object.entries(SCHEMA).map(([k, s]) => `| \`${k}\` | \`${flagOf(k)}\` | \`${JSON.stringify(s.default)}\` | ${s.doc.replace(/\|/g, '\\|')} |`);
const start = doc.indexOf('| key | flag | default | meaning |');
const end = doc.indexOf('\n\n', start);
const table = ['| key | flag | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
writeFileSync(path, doc.slice(0, start) + table + doc.slice(end));
