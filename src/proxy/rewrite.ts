/**
 * nginx's rewrite phases, pure: the server's rewrites run once, before a location is chosen; then
 * the chosen location's, after which a changed URI chooses the location again (nginx's post-rewrite
 * phase), at most 10 times, as NGX_HTTP_MAX_URI_CHANGES. Flags as ngx_http_rewrite_module reads
 * them: none (go on with the next rewrite; a change still re-chooses the location), `last` (stop,
 * re-choose), `break` (stop, stay in this location), `redirect` 302 and `permanent` 301.
 */
import type { RewriteRule, Site, SiteLocation } from './site.js';

export interface RequestVars {
  /** The request target as the client sent it ($request_uri). */
  requestUri: string;
  host: string | undefined;
  scheme: string;
}

export type Route =
  /** Serve in `loc` with `uri` (decoded) and `args`; `changed`: a rewrite changed either. */
  | { kind: 'location'; loc: SiteLocation; uri: string; args: string | null; changed: boolean; ret: SiteLocation['ret'] }
  | { kind: 'redirect'; loc: SiteLocation; status: 301 | 302; location: string }
  /** Too many URI changes: nginx's "rewrite or internal redirection cycle", a 500. */
  | { kind: 'cycle'; loc: SiteLocation };

const MAX_URI_CHANGES = 10;

export function route(site: Site, uri: string, args: string | null, vars: RequestVars): Route {
  let changed = false;
  const server = run(site.server.rewrite, uri, args, vars);
  if (server.redirect) return { kind: 'redirect', loc: site.server, ...server.redirect };
  if (server.changed) changed = true;
  uri = server.uri;
  args = server.args;
  // A server-level return runs unless a rewrite before it stopped the phase.
  if (site.server.ret && !server.stopped) return { kind: 'location', loc: site.match(uri), uri, args, changed, ret: site.server.ret };
  for (let changes = 0; ; changes++) {
    const loc = site.match(uri);
    const r = run(loc.rewrite, uri, args, vars);
    if (r.redirect) return { kind: 'redirect', loc, ...r.redirect };
    if (r.changed) changed = true;
    // `return` comes after the location's rewrites; a `last` or `break` before it skips it.
    if (r.stopped === 'break' || (!r.changed && !r.stopped) || (loc.ret && !r.stopped)) {
      return { kind: 'location', loc, uri: r.uri, args: r.args, changed, ret: r.stopped ? null : loc.ret };
    }
    // The 11th change is nginx's cycle (uri_changes counts down from 11).
    if (changes + 1 > MAX_URI_CHANGES) return { kind: 'cycle', loc };
    uri = r.uri;
    args = r.args;
  }
}

interface Ran {
  uri: string;
  args: string | null;
  changed: boolean;
  stopped: 'last' | 'break' | null;
  redirect?: { status: 301 | 302; location: string };
}

function run(rules: readonly RewriteRule[], uri: string, args: string | null, vars: RequestVars): Ran {
  let changed = false;
  for (const rule of rules) {
    const m = rule.regex.exec(uri);
    if (!m) continue;
    const text = expand(rule.replacement, m, uri, args, vars);
    // A trailing `?` keeps the original arguments off (it is not part of the result).
    const noArgs = text.endsWith('?');
    const value = noArgs ? text.slice(0, -1) : text;
    if (rule.flag === 'redirect' || rule.flag === 'permanent') {
      const location = !noArgs && args ? `${value}${value.includes('?') ? '&' : '?'}${args}` : value;
      return { uri, args, changed, stopped: null, redirect: { status: rule.flag === 'permanent' ? 301 : 302, location } };
    }
    const q = value.indexOf('?');
    const newUri = q === -1 ? value : value.slice(0, q);
    let newArgs = args;
    if (q !== -1) {
      // New arguments come first; the original ones follow unless cut by the trailing `?`.
      const own = value.slice(q + 1);
      newArgs = noArgs || !args ? own : own === '' ? args : `${own}&${args}`;
    } else if (noArgs) newArgs = null;
    uri = newUri;
    args = newArgs;
    changed = true;
    if (rule.flag === 'last' || rule.flag === 'break') return { uri, args, changed, stopped: rule.flag };
  }
  return { uri, args, changed, stopped: null };
}

/** $1..$9 (and ${1}), and the variables a rewrite commonly uses; others stay as written. */
function expand(replacement: string, m: RegExpExecArray, uri: string, args: string | null, vars: RequestVars): string {
  return replacement.replace(/\$(?:(\d)|\{(\d)\}|\{([a-z_]+)\}|([a-z_]+))/g, (whole, d1?: string, d2?: string, n1?: string, n2?: string) => {
    const digit = d1 ?? d2;
    if (digit !== undefined) return m[Number(digit)] ?? '';
    switch (n1 ?? n2) {
      case 'args':
      case 'query_string':
        return args ?? '';
      case 'is_args':
        return args ? '?' : '';
      case 'uri':
      case 'document_uri':
        return uri;
      case 'request_uri':
        return vars.requestUri;
      case 'host':
        return (vars.host ?? '').replace(/:\d+$/, '');
      case 'http_host':
        return vars.host ?? '';
      case 'scheme':
        return vars.scheme;
      default:
        return whole;
    }
  });
}

/**
 * A rewritten URI as it goes to the app: nginx escapes it again (ngx_escape_uri, NGX_ESCAPE_URI):
 * spaces, `#`, `%`, `?`, controls and non-ASCII bytes.
 */
export function escapeUri(uri: string): string {
  let out = '';
  for (const byte of Buffer.from(uri, 'utf8')) {
    out += byte <= 0x20 || byte >= 0x7f || byte === 0x23 || byte === 0x25 || byte === 0x3f ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return out;
}
