import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SCHEMA, flagOf } from '../../src/config/schema.js';

// docs/configuration.md is the operator's reference: a key missing there is a key nobody finds.
describe('docs/configuration.md', () => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  it.each(Object.entries(SCHEMA))('documents %s with its flag and default', (key, spec) => {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${key}\` |`));
    expect(row, `no row for ${key}`).toBeDefined();
    expect(row).toContain(`\`${flagOf(key)}\``);
    expect(row).toContain(`\`${JSON.stringify(spec.default)}\``);
  });
});
