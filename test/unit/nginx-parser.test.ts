import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NginxConfigError } from '../../nginx-compat/errors.js';
import { expandGlob, segmentRegExp } from '../../nginx-compat/glob.js';
import { parseConfig, parseText, type Directive } from '../../nginx-compat/parser.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nginx-parser-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function write(rel: string, text: string): string {
  const path = join(dir, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  return path;
}

function parseError(fn: () => unknown): NginxConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NginxConfigError);
    return err as NginxConfigError;
  }
  throw new Error('no error');
}

/** [directive, ...args] per node, blocks nested: compact to compare. */
const shape = (tree: Directive[]): unknown[] => tree.map((d) => (d.block ? [d.directive, ...d.args, shape(d.block)] : [d.directive, ...d.args]));

describe('nginx parser', () => {
  it('builds the tree with args, blocks, files and lines', () => {
    const { tree } = parseText('user www-data;\nhttp {\n  server {\n    listen 80;\n    location / { }\n  }\n}\n', '/t/nginx.conf');
    expect(shape(tree)).toEqual([['user', 'www-data'], ['http', [['server', [['listen', '80'], ['location', '/', []]]]]]]);
    const listen = tree[1]?.block?.[0]?.block?.[0];
    expect(listen).toEqual({ directive: 'listen', args: ['80'], line: 4, file: '/t/nginx.conf' });
  });

  it.each([
    ['a "}" after arguments', 'http {\n  gzip on\n}\n', 'unexpected "}" in /t/nginx.conf:3'],
    ['a "}" at the top level', 'events { }\n}\n', 'unexpected "}" in /t/nginx.conf:2'],
    ['a ";" with no directive', 'http {\n  ;\n}', 'unexpected ";" in /t/nginx.conf:2'],
    ['a "{" with no directive', '{ }', 'unexpected "{" in /t/nginx.conf:1'],
    ['a directive cut by the end of file', 'http {\n}\nworker_processes 2', 'unexpected end of file, expecting ";" or "}" in /t/nginx.conf:3'],
    ['an unclosed block', 'http {\n  server {\n  }\n', 'unexpected end of file, expecting "}" in /t/nginx.conf:4'],
  ])('refuses %s with nginx words and file:line', (_what, text, message) => {
    const err = parseError(() => parseText(text, '/t/nginx.conf'));
    expect(err.message).toBe(message);
    expect(err.code).toBe('GW_ERR_NGINX_SYNTAX');
  });

  it('splices an include in place, the included directives keeping their own file and line', () => {
    write('mime.types', 'types {\n  text/html html;\n}\n');
    const main = write('nginx.conf', 'http {\n  include mime.types;\n  gzip on;\n}\n');
    const res = parseConfig(main);
    expect(shape(res.tree)).toEqual([['http', [['types', [['text/html', 'html']]], ['gzip', 'on']]]]);
    expect(res.tree[0]?.block?.[0]).toMatchObject({ file: join(dir, 'mime.types'), line: 1 });
    expect(res.files).toEqual([main, join(dir, 'mime.types')]);
    expect(res.includes).toEqual([{ file: main, line: 2, pattern: 'mime.types', files: [join(dir, 'mime.types')] }]);
  });

  it('expands a glob sorted, skipping hidden files, and an empty glob is no error', () => {
    write('conf.d/b.conf', 'server { listen 81; }\n');
    write('conf.d/a.conf', 'server { listen 80; }\n');
    write('conf.d/.hidden.conf', 'bogus;\n');
    write('conf.d/c.conf.disabled', 'bogus;\n');
    const main = write('nginx.conf', 'http {\n  include conf.d/*.conf;\n  include empty.d/*.conf;\n}\n');
    const res = parseConfig(main);
    expect(shape(res.tree)).toEqual([['http', [['server', [['listen', '80']]], ['server', [['listen', '81']]]]]]);
    expect(res.includes[1]?.files).toEqual([]);
  });

  it('resolves a relative include against the main file directory, not the including file', () => {
    write('snippets/proxy.conf', 'proxy_set_header Host $host;\n');
    write('sites/app.conf', 'server { include snippets/proxy.conf; }\n');
    const res = parseConfig(write('nginx.conf', 'http { include sites/*.conf; }\n'));
    expect(shape(res.tree)).toEqual([['http', [['server', [['proxy_set_header', 'Host', '$host']]]]]]);
    const other = parseConfig(write('sites2/main.conf', 'http { include sites/app.conf; }\n'), { prefix: dir });
    expect(other.tree[0]?.block?.[0]?.block?.[0]?.directive).toBe('proxy_set_header');
  });

  it('reports a missing include as nginx does, at the include', () => {
    const main = write('nginx.conf', 'http {\n  include missing.conf;\n}\n');
    const err = parseError(() => parseConfig(main));
    expect(err.message).toBe(`open() "${join(dir, 'missing.conf')}" failed (2: No such file or directory) in ${main}:2`);
    expect(err.code).toBe('GW_ERR_NGINX_INCLUDE');
    expect(parseError(() => parseConfig(join(dir, 'nope.conf'))).message).toBe(`open() "${join(dir, 'nope.conf')}" failed (2: No such file or directory)`);
  });

  it('reports an error inside an included file with that file and line', () => {
    write('conf.d/bad.conf', 'server {\n  listen 80\n}\n');
    const err = parseError(() => parseConfig(write('nginx.conf', 'http { include conf.d/*.conf; }\n')));
    expect(err.message).toBe(`unexpected "}" in ${join(dir, 'conf.d/bad.conf')}:3`);
  });

  it('stops an include cycle at the include that closes it', () => {
    const a = write('a.conf', 'http {\n  include b.conf;\n}\n');
    const b = write('b.conf', '\ninclude a.conf;\n');
    const err = parseError(() => parseConfig(a));
    expect(err.code).toBe('GW_ERR_NGINX_INCLUDE');
    expect(err.message).toBe(`include of "${a}" makes a cycle (${a} -> ${b} -> ${a}) in ${b}:2`);
  });

  it('sees a cycle through a symlink and a file including itself by glob', () => {
    const main = write('nginx.conf', 'include conf.d/*.conf;\n');
    write('conf.d/self.conf', 'include conf.d/*.conf;\n');
    symlinkSync(main, join(dir, 'link.conf'));
    expect(parseError(() => parseConfig(main)).message).toMatch(/makes a cycle .* in .*self\.conf:1$/);
    expect(parseError(() => parseConfig(write('x.conf', 'include link.conf;\n'))).message).toMatch(/makes a cycle/);
  });

  it('lets the same file be included twice when it is no cycle', () => {
    write('proxy.conf', 'proxy_read_timeout 30s;\n');
    const res = parseConfig(write('nginx.conf', 'http { server { include proxy.conf; } server { include proxy.conf; } }\n'));
    expect(shape(res.tree)).toEqual([['http', [['server', [['proxy_read_timeout', '30s']]], ['server', [['proxy_read_timeout', '30s']]]]]]);
  });

  it('checks include itself: one argument, terminated by ";"', () => {
    expect(parseError(() => parseText('http {\n  include a.conf b.conf;\n}', '/t/n.conf')).message).toBe('invalid number of arguments in "include" directive in /t/n.conf:2');
    expect(parseError(() => parseText('include a.conf { }', '/t/n.conf')).message).toBe('directive "include" is not terminated by ";" in /t/n.conf:1');
  });
});

describe('include globs', () => {
  it('translates *, ? and [...] per path segment', () => {
    expect(segmentRegExp('*.conf').test('app.conf')).toBe(true);
    expect(segmentRegExp('*.conf').test('app.conf.bak')).toBe(false);
    expect(segmentRegExp('site-?.conf').test('site-1.conf')).toBe(true);
    expect(segmentRegExp('[a-c]*.conf').test('b.conf')).toBe(true);
    expect(segmentRegExp('[!a-c]*.conf').test('b.conf')).toBe(false);
  });

  it('globs directories too', () => {
    write('sites/one/app.conf', '');
    write('sites/two/app.conf', '');
    write('sites/two/other.conf', '');
    expect(expandGlob(join(dir, 'sites/*/app.conf'))).toEqual([join(dir, 'sites/one/app.conf'), join(dir, 'sites/two/app.conf')]);
  });
});
