/**
 * What the proxy needs to know per location, with nginx's inheritance resolved: a value set in
 * http or server applies to every location that does not set its own (root, expires, gzip,
 * client_max_body_size); the lists add_header, error_page and proxy_set_header are inherited only
 * by a level that has none of its own; try_files, rewrite, return and proxy_pass are never inherited.
 * Defaults are nginx's, not the gateway's (client_max_body_size 1m, index index.html).
 */
import { innermost, named, single, type Level, type Report } from './report.js';
import { parseNginxSize, sizeString } from './units.js';
import {
  compileRegex,
  parseAddHeader,
  parseErrorPage,
  parseExpires,
  parseReturn,
  parseRewrite,
  type ErrorPageSpec,
  type ExpiresSpec,
  type HeaderSpec,
  type MatchType,
  type Parsed,
  type ReturnSpec,
  type RewriteSpec,
} from './values.js';
import type { Directive } from './parser.js';

export interface GzipSpec {
  enabled: boolean;
  /** MIME types compressed; text/html always is, `*` means all. */
  types: string[];
  minLength: number;
  compLevel: number;
  /** gzip_proxied: which responses to requests with a Via header are compressed (`off`: none). */
  proxied: string[];
  vary: boolean;
  /** User-Agent regexes (or `msie6`) that get no compression. */
  disable: string[];
  httpVersion: '1.0' | '1.1';
}

export interface LocationSpec {
  /** `server`: the server's own settings, used when no location matches (nginx does the same). */
  match: MatchType | 'server';
  /** The URI prefix, exact URI, regex source or `@name`; '' for `server`. */
  pattern: string;
  file: string;
  line: number;
  /** null: not set anywhere (nginx would use `<prefix>/html`). */
  root: string | null;
  index: string[];
  tryFiles: string[] | null;
  expires: ExpiresSpec;
  addHeader: HeaderSpec[];
  errorPage: ErrorPageSpec[];
  /** proxy_intercept_errors: the app's responses with an error_page status are replaced by the page. */
  interceptErrors: boolean;
  /** Run in order before `return`; for `server`, before a location is chosen (nginx's server rewrite phase). */
  rewrite: RewriteSpec[];
  return: ReturnSpec | null;
  /** proxy_pass as written; the socket it names is the config's `upstream`. */
  proxyPass: string | null;
  proxySetHeader: { name: string; value: string }[];
  /** A gateway size string (`50m`); `0` is no limit. */
  clientMaxBodySize: string;
  gzip: GzipSpec;
  gzipStatic: 'off' | 'on' | 'always';
  /** Reached only by internal redirects (error_page, try_files, rewrite). */
  internal: boolean;
  /** false after `access_log off`. */
  accessLog: boolean;
}

export interface Where {
  match: LocationSpec['match'];
  pattern: string;
  file: string;
  line: number;
}

/** The spec of the innermost of `levels` (http, server[, location]). */
export function buildLocation(report: Report, levels: readonly Level[], where: Where): LocationSpec {
  const own = levels[levels.length - 1] ?? [];
  const parse = <T>(d: Directive, fn: (args: readonly string[]) => Parsed<T>): T | undefined => {
    const r = fn(d.args);
    if ('reason' in r) report.error('GW_ERR_NGINX_VALUE', r.reason, d);
    return 'value' in r ? r.value : undefined;
  };
  const list = <T>(name: string, fn: (args: readonly string[]) => Parsed<T>): T[] =>
    innermost(report, levels, name).flatMap((d) => {
      const v = parse(d, fn);
      return v === undefined ? [] : [v];
    });

  const tryFiles = single(report, [own], 'try_files');
  const expires = single(report, levels, 'expires');
  const proxyPass = single(report, [own], 'proxy_pass');
  const gzipStaticDirective = single(report, levels, 'gzip_static');
  let gzipStatic: LocationSpec['gzipStatic'] = 'off';
  const gs = gzipStaticDirective?.args[0];
  if (gs === 'on' || gs === 'always' || gs === 'off') gzipStatic = gs;
  else if (gzipStaticDirective !== undefined) report.invalid(gzipStaticDirective, `invalid value "${gs}"`);

  const rewrite: RewriteSpec[] = [];
  let ret: ReturnSpec | null = null;
  for (const d of own) {
    if (d.directive !== 'rewrite' && d.directive !== 'return') continue;
    // nginx stops at the first return: later rewrites and returns are never run.
    report.use(d);
    if (ret !== null) continue;
    if (d.directive === 'return') ret = parse(d, parseReturn) ?? null;
    else {
      const r = parse(d, parseRewrite);
      if (r !== undefined) rewrite.push(r);
    }
  }

  const logs = innermost(report, levels, 'access_log');
  const index = innermost(report, levels, 'index').flatMap((d) => d.args);

  return {
    ...where,
    root: single(report, levels, 'root')?.args[0] ?? null,
    index: index.length > 0 ? index : ['index.html'],
    tryFiles: report.use(tryFiles)?.args ?? null,
    expires: (expires && parse(expires, parseExpires)) ?? { kind: 'off' },
    addHeader: list('add_header', parseAddHeader),
    errorPage: list('error_page', parseErrorPage),
    interceptErrors: single(report, levels, 'proxy_intercept_errors')?.args[0]?.toLowerCase() === 'on',
    rewrite,
    return: ret,
    proxyPass: proxyPass?.args[0] ?? null,
    proxySetHeader: innermost(report, levels, 'proxy_set_header').map((d) => ({ name: d.args[0] ?? '', value: d.args[1] ?? '' })),
    clientMaxBodySize: bodySize(report, levels),
    gzip: gzipOf(report, levels),
    gzipStatic,
    internal: report.use(named(own, 'internal')[0]) !== undefined,
    accessLog: !(logs.length > 0 && logs.every((d) => d.args[0] === 'off')),
  };
}

function bodySize(report: Report, levels: readonly Level[]): string {
  const d = single(report, levels, 'client_max_body_size');
  if (d === undefined) return '1m';
  const bytes = parseNginxSize(d.args[0] ?? '');
  if (bytes === undefined) {
    report.invalid(d);
    return '1m';
  }
  return sizeString(bytes);
}

function gzipOf(report: Report, levels: readonly Level[]): GzipSpec {
  const arg = (name: string): string | undefined => single(report, levels, name)?.args[0];
  const number = (name: string, fallback: number, ok: (n: number) => boolean): number => {
    const d = single(report, levels, name);
    if (d === undefined) return fallback;
    const n = name === 'gzip_min_length' ? parseNginxSize(d.args[0] ?? '') : /^\d+$/.test(d.args[0] ?? '') ? Number(d.args[0]) : undefined;
    if (n === undefined || !ok(n)) {
      report.invalid(d);
      return fallback;
    }
    return n;
  };
  const types = innermost(report, levels, 'gzip_types').flatMap((d) => d.args);
  const proxied = innermost(report, levels, 'gzip_proxied').flatMap((d) => d.args);
  return {
    enabled: arg('gzip')?.toLowerCase() === 'on',
    types: types.includes('text/html') ? types : ['text/html', ...types],
    minLength: number('gzip_min_length', 20, () => true),
    compLevel: number('gzip_comp_level', 1, (n) => n >= 1 && n <= 9),
    proxied: proxied.length > 0 ? proxied : ['off'],
    vary: arg('gzip_vary')?.toLowerCase() === 'on',
    disable: innermost(report, levels, 'gzip_disable').flatMap((d) =>
      // nginx compiles them caseless at start; a bad one fails the configuration.
      d.args.filter((a) => {
        const re = a === 'msie6' ? undefined : compileRegex(a, true);
        if (re && 'reason' in re) report.error('GW_ERR_NGINX_VALUE', re.reason, d);
        return !(re && 'reason' in re);
      }),
    ),
    httpVersion: arg('gzip_http_version') === '1.0' ? '1.0' : '1.1',
  };
}
