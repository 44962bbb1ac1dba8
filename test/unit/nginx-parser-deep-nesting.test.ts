/**
 * Regression (found by test/fuzz/nginx-parser.fuzz.test.ts): 5000 nested `a {` overflowed the
 * parser's stack, a RangeError instead of an NginxConfigError with the file and line. Blocks now
 * nest at most MAX_DEPTH deep, includes counted.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NginxConfigError } from '../../nginx-compat/errors.js';
import { MAX_DEPTH, parseConfig, parseText } from '../../nginx-compat/parser.js';

function parseError(fn: () => unknown): NginxConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NginxConfigError);
    return err as NginxConfigError;
  }
  throw new Error('no error');
}

describe('nginx parser: deeply nested blocks', () => {
  it.each([5000, 200_000])('refuses %i nested blocks with an error at the line of the first "{" too many', (depth) => {
    const text = 'a {\n'.repeat(depth) + '}\n'.repeat(depth);
    const err = parseError(() => parseText(text, '/t/nginx.conf'));
    expect(err.code).toBe('GW_ERR_NGINX_SYNTAX');
    expect(err.message).toBe(`too many nested blocks (more than ${MAX_DEPTH}) in /t/nginx.conf:${MAX_DEPTH + 1}`);
  });

  it('reads MAX_DEPTH nested blocks', () => {
    const { tree } = parseText('a {'.repeat(MAX_DEPTH) + '}'.repeat(MAX_DEPTH), '/t/nginx.conf');
    let depth = 0;
    for (let level = tree; level[0]?.block; level = level[0].block) depth++;
    expect(depth).toBe(MAX_DEPTH);
  });

  it('counts the blocks around an include', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nginx-deep-'));
    try {
      writeFileSync(join(dir, 'inner.conf'), 'b {\n'.repeat(60) + '}\n'.repeat(60));
      writeFileSync(join(dir, 'nginx.conf'), 'a {'.repeat(60) + 'include inner.conf;' + '}'.repeat(60));
      const err = parseError(() => parseConfig(join(dir, 'nginx.conf')));
      expect(err.message).toBe(`too many nested blocks (more than ${MAX_DEPTH}) in ${join(dir, 'inner.conf')}:${MAX_DEPTH - 60 + 1}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
