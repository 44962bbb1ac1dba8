/**
 * Fuzzing nginx-compat (lexer -> parser -> analyzer -> translate) with fast-check: arbitrary text,
 * a token soup of nginx's syntax (quotes, escapes, braces, comments, variables, includes of missing
 * and present files) and generated configs shaped like real ones. See test/fuzz/README.md.
 *
 * Properties:
 * - parsing throws nothing but NginxConfigError; analyze and translate throw nothing at all;
 * - every error and warning names a file that was read and a line inside it;
 * - a parsed tree printed back and parsed again is the same tree (lines aside);
 * - translate's config never makes validateConfig throw (problems are fine: they are reported).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyze, DIRECTIVES, type Arity, lex, NginxConfigError, parseText, translate, type Directive, type ParseResult, type Warning } from '../../nginx-compat/index.js';
import { endLine } from '../../nginx-compat/lexer.js';
import { validateConfig } from '../../src/config/validate.js';
import { fuzzParams, fuzzTimeout } from '../helpers/fuzz.js';

/** Seconds per property by default: six properties, about 30 s for the file. */
const SECONDS = 5;
const RUNS = 5000;

let dir: string;
let main: string;
/** Every file a parse may read, with its text: errors' lines are checked against these. */
const texts = new Map<string, string>();

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nginx-fuzz-'));
  main = join(dir, 'nginx.conf');
  // Files the generators include by name; missing.conf and the glob's other names do not exist.
  const files: Record<string, string> = {
    'good.conf': 'gzip on;\nclient_max_body_size 2m;\n',
    'broken.conf': 'gzip on;\n\nserver {\n',
    'server.conf': 'server {\n  listen 127.0.0.1:8080;\n  location / { proxy_pass http://unix:/tmp/app.sock:; }\n}\n',
    'self.conf': 'include self.conf;\n',
  };
  for (const [name, text] of Object.entries(files)) {
    writeFileSync(join(dir, name), text);
    texts.set(join(dir, name), text);
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------
// Generators

/** `include` is left to the soup: in a generated tree it would read files named by random args. */
const NAMES = Object.keys(DIRECTIVES).filter((n) => n !== 'include');
const UNKNOWN = ['foo', 'lua_code_cache', 'more_set_headers', 'passenger_enabled', 'Gzip', 'proxy_pass_x', 'constructor', '__proto__', 'toString'];
/** Values the directives take, good and bad, so translation gets past the first check often. */
const VALUES = [
  'on', 'off', 'ON', 'yes', '0', '1', '-1', '30s', '500ms', '1h', '2m', '1d', '10', '1m', '50k', '8', '16k', '4g', '99999999999999999999', '1.5s', 's', 'k',
  '/tmp/app.sock', 'unix:/tmp/app.sock', 'http://app', 'http://app/', 'http://unix:/tmp/app.sock:', 'http://unix:/tmp/app.sock:/x', 'http://127.0.0.1:3000', 'https://x', 'unix:',
  '$uri', '$host', '$request_uri', '$1', '${var}x', '$http_x_forwarded_proto', '/', '/api', '/api/', '~', '~*', '=', '^~', '@fallback', '@',
  '^/(.*)$', '^/(?<name>[a-z]+)$', '(', 'a{2,', '[z-a]', '\\', '(?i)x', '/new/$1', '/new?x=1', 'last', 'break', 'redirect', 'permanent',
  '200', '301', '302', '404', '444', '499', '500', '600', '=200', '=', 'default_server', 'proxy_protocol', 'ssl', 'http2', 'reuseport', 'backlog=10',
  '127.0.0.1:8080', '[::1]:80', '[::]:443', '80', '*:80', 'localhost', '0.0.0.0:0', '65536', 'nowhere:x',
  'X-Forwarded-For', 'X-Real-IP', 'proxy_protocol', '10.0.0.0/8', '::1/128', '300.0.0.1', 'text/html', 'application/json', '*', 'combined', 'main', 'json',
  '/var/log/nginx/access.log', '/dev/stdout', 'logs/access.log', 'syslog:server=127.0.0.1', 'buffer=32k', 'www-data', 'nobody', 'nogroup', '/run/nginx.pid', 'nginx.pid',
  'max', 'epoch', 'modified', '+1h', '-1', 'always', 'any', 'expired', 'no-cache', 'Host', 'Upgrade', '"', "'", '{', '}', ';', '#', '',
];

const value = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...VALUES) }, { weight: 1, arbitrary: fc.string({ maxLength: 12 }) }, { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 6 }) });
const name = fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...NAMES) }, { weight: 1, arbitrary: fc.constantFrom(...UNKNOWN) });

const directive = (depth: number): fc.Arbitrary<Directive> =>
  fc
    .record({
      directive: name,
      args: fc.array(value, { maxLength: 4 }),
      block: depth > 0 ? fc.option(fc.array(fc.constant(null), { maxLength: 0 }), { freq: 3 }) : fc.constant(null),
    })
    .chain(({ directive: n, args, block }) =>
      block === null ? fc.constant<Directive>({ directive: n, args, line: 0, file: '' }) : fc.array(directive(depth - 1), { maxLength: 4 }).map((b) => ({ directive: n, args, line: 0, file: '', block: b })),
    );

const TIME = ['30s', '500ms', '1h', '2m', '10', '75s', '0', '60s'];
const SIZE = ['1m', '50k', '10', '0', '2g', '512'];
/** Values per directive and argument position (the last list serves the positions after it). */
const HINTS: Record<string, string[][]> = {
  keepalive_timeout: [TIME, TIME], client_header_timeout: [TIME], client_body_timeout: [TIME], send_timeout: [TIME],
  proxy_read_timeout: [TIME], proxy_connect_timeout: [TIME], proxy_send_timeout: [TIME],
  client_max_body_size: [SIZE], gzip_min_length: [SIZE], large_client_header_buffers: [['4', '2', '0', 'x'], ['8k', '1k', '64k']],
  listen: [['127.0.0.1:8080', '[::1]:80', '8080', '80', '*:8080', '443', 'unix:/tmp/gw.sock'], ['default_server', 'proxy_protocol', 'ssl', 'http2', 'reuseport']],
  proxy_pass: [['http://app', 'http://unix:/tmp/app.sock:', 'http://unix:/tmp/app.sock:/p/', 'http://app/x']],
  root: [['/var/www', '/srv/public', 'public']], alias: [['/var/www/static/', '/srv/']],
  set_real_ip_from: [['10.0.0.0/8', '127.0.0.1', '::1', 'unix:', '192.168.0.0/33']], real_ip_header: [['X-Forwarded-For', 'X-Real-IP', 'proxy_protocol']],
  return: [['301', '302', '404', '200', '444'], ['https://example.com$request_uri', '/login', 'ok']],
  rewrite: [['^/(.*)$', '^/old/(\\d+)$', '^'], ['/new/$1', '/x?y=1', 'https://example.com/$1'], ['last', 'break', 'redirect', 'permanent']],
  error_page: [['502', '503', '404', '500'], ['/50x.html', '@fallback', '=200', '=']],
  add_header: [['X-Frame-Options', 'Cache-Control', 'X-A'], ['DENY', 'no-cache', '$host'], ['always']],
  proxy_set_header: [['Host', 'X-Forwarded-Proto', 'Connection', 'X-Real-IP'], ['$host', '$scheme', '""', '$remote_addr', '$proxy_add_x_forwarded_for']],
  access_log: [['/var/log/nginx/access.log', 'off', '/dev/stdout', 'logs/a.log', 'syslog:server=x'], ['combined', 'main'], ['buffer=32k']],
  user: [['www-data', 'nobody'], ['nogroup']], pid: [['/run/nginx.pid', 'nginx.pid', 'off']], error_log: [['/var/log/nginx/error.log', 'stderr'], ['warn', 'debug', 'crit', 'bogus']],
  gzip_types: [['text/css', 'application/json', '*']], try_files: [['$uri', '$uri/', '@fallback', '=404']], expires: [['1h', 'max', 'off', 'epoch', '-1', 'modified', '+1d']],
  index: [['index.html']], server_name: [['example.com', '_', '*.example.com']], worker_processes: [['auto', '2']], worker_rlimit_nofile: [['1024']],
  gzip_proxied: [['any', 'expired', 'off', 'no-cache', 'auth']], gzip_comp_level: [['1', '6', '10']], set: [['$x', '$y'], ['1', '$uri']],
  default_type: [['application/octet-stream']], log_format: [['main', 'json'], ['$remote_addr - $request']], underscores_in_headers: [['on', 'off']], real_ip_recursive: [['on', 'off']],
};

/** How many arguments a directive takes (its first spec), as [min, max]. */
const ARGS: Record<Arity, [number, number]> = { noargs: [0, 0], take1: [1, 1], flag: [1, 1], take2: [2, 2], take12: [1, 2], take23: [2, 3], '1more': [1, 3], '2more': [2, 3] };

/** A directive with as many args as it takes (mostly), on/off for flags, so translation gets far. */
const plausible = (names: readonly string[]): fc.Arbitrary<Directive> =>
  fc.oneof({ weight: 150, arbitrary: fc.constantFrom(...names) }, { weight: 1, arbitrary: name }).chain((n) => {
    const spec = Object.hasOwn(DIRECTIVES, n) ? DIRECTIVES[n]?.[0] : undefined;
    const [min, max] = spec ? ARGS[spec.arity] : [0, 3];
    const hints = Object.hasOwn(HINTS, n) ? (HINTS[n] as string[][]) : [];
    const arg = (i: number): fc.Arbitrary<string> => {
      const hint = hints[Math.min(i, hints.length - 1)];
      if (spec?.arity === 'flag') return fc.oneof({ weight: 20, arbitrary: fc.constantFrom('on', 'off', 'Off') }, { weight: 1, arbitrary: value });
      return hint ? fc.oneof({ weight: 50, arbitrary: fc.constantFrom(...hint) }, { weight: 1, arbitrary: value }) : value;
    };
    const args = fc.oneof(
      { weight: 150, arbitrary: fc.integer({ min, max }).chain((k) => fc.tuple(...Array.from({ length: k }, (_, i) => arg(i)))) },
      { weight: 1, arbitrary: fc.array(value, { maxLength: 4 }) },
    );
    return args.map((a) => ({ directive: n, args: a, line: 0, file: '' }));
  });
const at = (names: readonly string[]): fc.Arbitrary<Directive[]> => fc.array(plausible(names), { maxLength: 4 });
const block = (n: string, args: string[], inner: Directive[]): Directive => ({ directive: n, args, line: 0, file: '', block: inner });
const LOCATION_NAMES = ['proxy_pass', 'proxy_set_header', 'proxy_read_timeout', 'proxy_connect_timeout', 'client_max_body_size', 'return', 'rewrite', 'root', 'alias', 'try_files', 'expires', 'add_header', 'error_page', 'gzip', 'gzip_types', 'proxy_intercept_errors', 'access_log', 'keepalive_timeout', 'index', 'internal', 'set', 'break'];
const SERVER_NAMES = ['listen', 'server_name', 'root', 'return', 'rewrite', 'error_page', 'client_max_body_size', 'keepalive_timeout', 'access_log', 'set_real_ip_from', 'real_ip_header', 'real_ip_recursive', 'underscores_in_headers', 'large_client_header_buffers', 'proxy_read_timeout', 'gzip'];
const HTTP_NAMES = ['default_type', 'sendfile', 'keepalive_timeout', 'client_body_timeout', 'send_timeout', 'gzip', 'gzip_proxied', 'access_log', 'log_format', 'error_log', 'proxy_read_timeout', 'client_header_timeout'];
const MAIN_NAMES = ['user', 'worker_processes', 'pid', 'error_log', 'daemon', 'worker_rlimit_nofile'];

const location = fc
  .tuple(fc.oneof({ weight: 20, arbitrary: fc.constantFrom(['/'], ['/api'], ['=', '/'], ['~', '^/(a|b)$'], ['~*', '\\.css$'], ['^~', '/static/'], ['@fallback']) }, { weight: 1, arbitrary: fc.constantFrom(['~', '('], ['/', 'x'], ['/'], []) }), at(LOCATION_NAMES), fc.option(fc.constantFrom('http://app', 'http://unix:/tmp/app.sock:', 'http://unix:/tmp/app.sock:', 'http://unix:/tmp/app.sock:/prefix/', 'http://app', 'http://127.0.0.1:3000')))
  .map(([args, inner, pass]) => block('location', [...args], pass === null ? inner : [...inner, { directive: 'proxy_pass', args: [pass], line: 0, file: '' }]));
const server = fc.tuple(at(SERVER_NAMES), fc.array(location, { maxLength: 3 })).map(([own, locs]) => block('server', [], [...own, ...locs]));
const upstream = fc.constantFrom<Directive[]>([], [block('upstream', ['app'], [{ directive: 'server', args: ['unix:/tmp/app.sock', 'fail_timeout=0'], line: 0, file: '' }])], [block('upstream', ['app'], [{ directive: 'server', args: ['127.0.0.1:3000'], line: 0, file: '' }])]);
const plausibleTree: fc.Arbitrary<Directive[]> = fc
  .tuple(at(MAIN_NAMES), fc.boolean(), at(HTTP_NAMES), upstream, fc.array(server, { minLength: 1, maxLength: 2 }), fc.oneof({ weight: 8, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(directive(2), { minLength: 1, maxLength: 2 }) }))
  .map(([top, events, http, ups, servers, extra]) => [...top, ...(events ? [block('events', [], [])] : []), block('http', [], [...http, ...ups, ...servers]), ...extra]);

/** Pieces of nginx syntax, joined in any order: most soups are broken, in every way nginx can be. */
const piece = fc.oneof(
  fc.constantFrom('{', '}', ';', ' ', '\n', '\t', '\r\n', '#', '# comment\n', '"', "'", '\\', '\\\n', '\\"', "\\'", '\\\\', '$', '${', '${var}', '$uri', ')', '(', '\u0000', '\u00a0', '\u2028', '\ufeff'),
  fc.constantFrom(...NAMES, ...UNKNOWN, 'include'),
  fc.constantFrom(...VALUES),
  fc.constantFrom('include missing.conf;', 'include good.conf;', 'include broken.conf;', 'include server.conf;', 'include self.conf;', 'include *.conf;', 'include nope/*.conf;', 'include /nonexistent/x.conf;', 'include;', 'include a b;', 'include x {'),
  fc.string({ maxLength: 8 }).map((s) => `"${s}"`),
  fc.string({ maxLength: 8 }).map((s) => `'${s}'`),
  fc.string({ unit: 'binary', maxLength: 8 }),
);
const soup = fc.array(piece, { maxLength: 40 }).map((parts) => parts.join(''));

// ---------------------------------------------------------------------------------------------
// Printing a tree back as nginx.conf text

/** Double quotes keep every character; only `"` and `\` need a backslash (lexer.ts's unescape). */
const quote = (s: string): string => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

function print(tree: readonly Directive[], indent = ''): string {
  return tree
    .map((d) => {
      const head = [d.directive, ...d.args].map(quote).join(' ');
      return d.block === undefined ? `${indent}${head};\n` : `${indent}${head} {\n${print(d.block, `${indent}  `)}${indent}}\n`;
    })
    .join('');
}

/** The tree without lines and files: what a round trip must keep. */
const shape = (tree: readonly Directive[]): unknown[] => tree.map((d) => (d.block ? [d.directive, d.args, shape(d.block)] : [d.directive, d.args]));

// ---------------------------------------------------------------------------------------------
// Checks

/** Parses; returns the result, or null after checking the error is an NginxConfigError with a place. */
function parseOrError(text: string): ParseResult | null {
  try {
    return parseText(text, main);
  } catch (err) {
    if (!(err instanceof NginxConfigError)) throw err;
    checkPlace(err, text);
    return null;
  }
}

/** A file that was read (the main one or a fixture) and a line between 1 and its line count. */
function checkPlace(at: NginxConfigError | Warning, mainText: string): void {
  expect(at.file, `${at.message}: no file`).toBeDefined();
  const text = at.file === main ? mainText : texts.get(at.file as string);
  expect(text, `${at.message}: not a file that was read`).toBeDefined();
  expect(at.line, at.message).toBeGreaterThanOrEqual(1);
  expect(at.line, at.message).toBeLessThanOrEqual(endLine(text as string));
}

/** analyze and translate throw nothing; their errors and warnings have places; validateConfig takes the config. */
function checkTranslate(parsed: ParseResult, text: string): void {
  const analysis = analyze(parsed.tree);
  const strict = analyze(parsed.tree, { strict: true });
  const result = translate(parsed.tree);
  for (const e of [...analysis.errors, ...strict.errors, ...result.errors]) {
    expect(e).toBeInstanceOf(NginxConfigError);
    // "no server block" names the first directive's place, or none for an empty file.
    if (e.file !== undefined || parsed.tree.length > 0) checkPlace(e, text);
  }
  for (const w of [...analysis.warnings, ...result.warnings]) checkPlace(w, text);
  if (result.errors.length === 0) {
    const { problems } = validateConfig(result.config);
    expect(Array.isArray(problems)).toBe(true);
  }
}

describe('nginx-compat under fuzzing', () => {
  it('any text: lex and parse throw only NginxConfigError, with a file and a line in it', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 200 })), (text) => {
        try {
          lex(text, main);
        } catch (err) {
          if (!(err instanceof NginxConfigError)) throw err;
          checkPlace(err, text);
        }
        const parsed = parseOrError(text);
        if (parsed) checkTranslate(parsed, text);
      }),
      fuzzParams({ runs: RUNS, seconds: SECONDS }),
    );
  }, fuzzTimeout(SECONDS));

  it('a soup of nginx syntax: errors and warnings in place, translate and validateConfig never throw', () => {
    fc.assert(
      fc.property(soup, (text) => {
        const parsed = parseOrError(text);
        if (parsed) checkTranslate(parsed, text);
      }),
      fuzzParams({ runs: RUNS, seconds: SECONDS }),
    );
  }, fuzzTimeout(SECONDS));

  it('a soup that parses prints back to the same tree', () => {
    fc.assert(
      fc.property(soup, (text) => {
        const parsed = parseOrError(text);
        if (parsed === null) return;
        const again = parseText(print(parsed.tree), main);
        expect(shape(again.tree)).toEqual(shape(parsed.tree));
      }),
      fuzzParams({ runs: RUNS, seconds: SECONDS }),
    );
  }, fuzzTimeout(SECONDS));

  it('a generated tree (any names, any args) round-trips through the printer', () => {
    fc.assert(
      fc.property(fc.array(directive(3), { maxLength: 5 }), (tree) => {
        const text = print(tree);
        const parsed = parseText(text, main);
        expect(shape(parsed.tree)).toEqual(shape(tree));
        for (const d of parsed.tree) expect(d.line).toBeLessThanOrEqual(endLine(text));
      }),
      fuzzParams({ runs: RUNS, seconds: SECONDS }),
    );
  }, fuzzTimeout(SECONDS));

  it('a plausible config: translate keeps its errors and warnings in place and validateConfig never throws', () => {
    fc.assert(
      fc.property(plausibleTree, (tree) => {
        const text = print(tree);
        const parsed = parseText(text, main);
        expect(shape(parsed.tree)).toEqual(shape(tree));
        checkTranslate(parsed, text);
      }),
      fuzzParams({ runs: RUNS, seconds: SECONDS }),
    );
  }, fuzzTimeout(SECONDS));

  it('nested blocks of any depth: an NginxConfigError, never a stack overflow', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20_000 }), fc.boolean(), (depth, closed) => {
        const text = 'a {'.repeat(depth) + (closed ? '}'.repeat(depth) : '');
        const parsed = parseOrError(text);
        if (parsed) checkTranslate(parsed, text);
      }),
      fuzzParams({ runs: 50, seconds: SECONDS }),
    );
  }, fuzzTimeout(SECONDS));
});
