/**
 * An nginx.conf as the proxy uses it: the gateway keys it maps to (for validateConfig), and the
 * behaviour behind its server and locations (a Site: rewrites, static files, return, error pages,
 * body limits, proxy_set_header, gzip), built from nginx-compat's per-location specs. Read at start
 * and again on HUP (a reload); error_page files are read then too.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileRegex, importNginxConfig, matchLocation, type GzipSpec, type LocationSpec } from '../nginx-compat/index.js';
import { parseSize } from './config/units.js';
import type { GzipRule } from './proxy/gzip.js';
import { MANAGED } from './proxy/proxy-set-header.js';
import type { ErrorPageAnswer, RewriteRule, Site, SiteLocation } from './proxy/site.js';
import { contentType } from './proxy/static.js';

/** What the proxy takes from an nginx.conf besides config keys. */
export interface NginxSite {
  site?: Site;
}

/** The variables rewrite.ts and proxy-set-header.ts expand; others are sent as written. */
const REWRITE_VARS = /^(\d|args|query_string|is_args|uri|document_uri|request_uri|host|http_host|scheme)$/;
const HEADER_VARS = /^(host|http_host|remote_addr|proxy_add_x_forwarded_for|scheme|request_uri|server_port|http_[a-z0-9_]+)$/;

/**
 * An nginx.conf through nginx-compat: warnings and errors through `say` in nginx's words; the gateway
 * keys it maps to, or undefined when it has errors (as `nginx -t` fails).
 */
export function readNginx(file: string, strict: boolean, say: (line: string) => void): ({ config: Record<string, unknown> } & NginxSite) | undefined {
  const r = importNginxConfig(file, { strict });
  for (const w of r.warnings) say(`[warn] ${w.message}`);
  for (const e of r.errors) say(`[emerg] ${e.message}`);
  if (r.errors.length > 0) {
    say(`configuration file ${file} test failed`);
    return undefined;
  }
  const server = r.server;
  if (server === null) return { config: r.config };
  const said = new Set<string>();
  const warn = (line: string): void => {
    if (said.has(line)) return;
    said.add(line);
    say(`[warn] ${line}`);
  };
  const files = new Map<string, Buffer | undefined>();
  const pageOf = (l: LocationSpec, uri: string, codes: number[]): Buffer | undefined => {
    // nginx's internal redirect to the URI: the location it matches, and the file under its root.
    const target = matchLocation(r.locations, uri) ?? server;
    const at = `error_page ${codes.join(' ')} ${uri}`;
    if (target.root === null) {
      warn(`${at}: no root for ${uri}; the built-in page is used`);
      return undefined;
    }
    const path = join(target.root, uri);
    if (!files.has(path)) {
      try {
        files.set(path, readFileSync(path));
      } catch (err) {
        files.set(path, undefined);
        warn(`${at}: ${(err as Error).message}; the built-in page is used`);
      }
    }
    return files.get(path);
  };

  const errorPages = (l: LocationSpec): Map<number, ErrorPageAnswer> => {
    const out = new Map<number, ErrorPageAnswer>();
    for (const ep of l.errorPage) {
      const status = ep.status === 'uri' ? 200 : ep.status;
      let answer: ErrorPageAnswer | undefined;
      if (/^https?:\/\//.test(ep.uri) || ep.uri.startsWith('$scheme')) answer = { status: status ?? 302, location: ep.uri };
      else if (ep.uri.startsWith('@')) {
        warn(`error_page ${ep.codes.join(' ')} ${ep.uri}: a named location as an error page is not supported (only files); the built-in page is used`);
      } else {
        const body = pageOf(l, ep.uri.split('?')[0] as string, ep.codes);
        if (body) answer = { status, body, type: contentType(ep.uri.split('?')[0] as string) };
      }
      // nginx takes the first error_page that names a code.
      if (answer) for (const code of ep.codes) if (!out.has(code)) out.set(code, answer);
    }
    return out;
  };

  const rewrites = (l: LocationSpec): RewriteRule[] =>
    l.rewrite.flatMap((rw) => {
      const re = compileRegex(rw.regex, false);
      for (const v of rw.replacement.matchAll(/\$\{?([a-z_0-9]+)\}?/gi)) {
        if (!REWRITE_VARS.test(v[1] as string)) warn(`rewrite ${rw.regex} ${rw.replacement}: the variable $${v[1] as string} is not supported; it is kept as written in ${l.file}:${l.line}`);
      }
      return 'value' in re ? [{ regex: re.value, replacement: rw.replacement, flag: rw.flag }] : [];
    });

  const setHeaders = (l: LocationSpec): { name: string; value: string }[] => {
    for (const h of l.proxySetHeader) {
      if (MANAGED.has(h.name.toLowerCase())) {
        if (h.value !== '') warn(`proxy_set_header ${h.name} is ignored: the gateway manages connection-level headers itself (keep-alive to the app, WebSocket upgrades)`);
        continue;
      }
      for (const v of h.value.matchAll(/\$\{?([a-z_0-9]+)\}?/gi)) {
        if (!HEADER_VARS.test((v[1] as string).toLowerCase())) warn(`proxy_set_header ${h.name} ${h.value}: the variable $${v[1] as string} is not supported; it is sent as written`);
      }
    }
    return l.proxySetHeader;
  };

  const gzipRule = (g: GzipSpec): GzipRule | null => {
    if (!g.enabled) return null;
    // Invalid ones were refused by nginx-compat, as nginx refuses them.
    const disable = g.disable.flatMap((d) => {
      const re = d === 'msie6' ? undefined : compileRegex(d, true);
      return re && 'value' in re ? [re.value] : [];
    });
    return {
      types: g.types.includes('*') ? '*' : new Set(g.types.map((t) => t.toLowerCase())),
      minLength: g.minLength,
      level: g.compLevel,
      proxied: new Set(g.proxied),
      vary: g.vary,
      disable,
      msie6: g.disable.includes('msie6'),
      http10: g.httpVersion === '1.0',
    };
  };

  const adapt = (l: LocationSpec): SiteLocation => ({
    root: l.root,
    tryFiles: l.tryFiles,
    proxy: l.proxyPass !== null,
    expires: l.expires.kind === 'after' ? { kind: 'after', seconds: l.expires.seconds } : l.expires,
    headers: l.addHeader,
    gzipStatic: l.gzipStatic !== 'off',
    ret: l.return,
    rewrite: rewrites(l),
    errorPages: errorPages(l),
    interceptErrors: l.interceptErrors,
    maxBodySize: parseSize(l.clientMaxBodySize) ?? 0,
    setHeaders: setHeaders(l),
    gzip: gzipRule(l.gzip),
  });
  const own = adapt(server);
  const adapted = new Map(r.locations.map((l) => [l, adapt(l)]));
  const site: Site = {
    server: own,
    match: (uri) => {
      const l = matchLocation(r.locations, uri);
      return (l && adapted.get(l)) ?? own;
    },
    named: (name) => {
      const l = r.locations.find((x) => x.match === 'named' && x.pattern === name);
      return l && adapted.get(l);
    },
  };
  return { config: r.config, site };
}
