/** nginx's rewrite phases (src/proxy/rewrite.ts), without sockets. */
import { describe, expect, it } from 'vitest';
import { escapeUri, route, type RequestVars } from '../../src/proxy/rewrite.js';
import type { RewriteRule, Site, SiteLocation } from '../../src/proxy/site.js';

const loc = (name: string, rewrite: [string, string, RewriteRule['flag']][] = [], ret: SiteLocation['ret'] = null): SiteLocation => ({
  root: name,
  tryFiles: null,
  proxy: true,
  expires: { kind: 'off' },
  headers: [],
  gzipStatic: false,
  ret,
  rewrite: rewrite.map(([re, replacement, flag]) => ({ regex: new RegExp(re), replacement, flag })),
  errorPages: new Map(),
  interceptErrors: false,
  maxBodySize: 0,
  setHeaders: [],
  gzip: null,
});

/** Prefix locations by their `root` name. */
function site(server: SiteLocation, locations: SiteLocation[]): Site {
  return {
    server,
    match: (uri) => locations.filter((l) => uri.startsWith(l.root as string)).sort((a, b) => (b.root as string).length - (a.root as string).length)[0] ?? server,
  };
}

const vars: RequestVars = { requestUri: '/orig?a=1', host: 'shop.example:8080', scheme: 'http' };

describe('rewrite phases', () => {
  it('runs server rewrites before choosing a location, with captures and the arguments kept', () => {
    const s = site(loc('', [['^/srv/(.*)$', '/app/$1', 'last']]), [loc('/app/')]);
    const r = route(s, '/srv/users', 'x=1', vars);
    expect(r).toMatchObject({ kind: 'location', uri: '/app/users', args: 'x=1', changed: true });
    expect(r.loc.root).toBe('/app/');
  });

  it('puts new arguments first and drops the old ones after a trailing ?', () => {
    const s = site(loc(''), [loc('/blog/', [['^/blog/(\\d+)$', '/posts?id=$1', 'last']]), loc('/cut/', [['^/cut/(.*)$', '/$1?', 'break']])]);
    expect(route(s, '/blog/7', 'ref=a', vars)).toMatchObject({ uri: '/posts', args: 'id=7&ref=a' });
    expect(route(s, '/cut/x', 'ref=a', vars)).toMatchObject({ uri: '/x', args: null, changed: true });
  });

  it('redirects: permanent 301, redirect 302, arguments appended unless cut', () => {
    const s = site(loc('', [['^/old/(.*)$', '/new/$1', 'permanent'], ['^/ext$', 'https://$host/landing?', 'redirect']]), []);
    expect(route(s, '/old/a', 'q=1', vars)).toMatchObject({ kind: 'redirect', status: 301, location: '/new/a?q=1' });
    expect(route(s, '/ext', 'q=1', vars)).toMatchObject({ kind: 'redirect', status: 302, location: 'https://shop.example/landing' });
  });

  it('break stays in the location and skips its return; no flag goes on and re-chooses', () => {
    const brk = loc('/b/', [['^/b/(.*)$', '/other/$1', 'break']], { status: 403, text: null });
    const s = site(loc(''), [brk, loc('/c/', [['^/c/(.*)$', '/b/$1', null]]), loc('/other/')]);
    const r = route(s, '/b/x', null, vars);
    expect(r).toMatchObject({ kind: 'location', uri: '/other/x', ret: null });
    expect(r.loc).toBe(brk);
    const chained = route(s, '/c/y', null, vars);
    expect(chained).toMatchObject({ uri: '/other/y' });
    expect(chained.loc).toBe(brk);
  });

  it("runs a location's return after rewrites without a flag", () => {
    const s = site(loc(''), [loc('/r/', [['^/r/(.*)$', '/z/$1', null]], { status: 410, text: null })]);
    expect(route(s, '/r/a', null, vars)).toMatchObject({ kind: 'location', uri: '/z/a', ret: { status: 410, text: null } });
  });

  it('answers a cycle after 10 URI changes, as NGX_HTTP_MAX_URI_CHANGES', () => {
    let n = 0;
    const counting = loc('/loop/', [['^/loop/(.*)$', '/loop/x$1', 'last']]);
    const s: Site = { server: loc(''), match: () => (n++, counting) };
    expect(route(s, '/loop/a', null, vars).kind).toBe('cycle');
    expect(n).toBe(11);
    // Nine changes end in a location that does not rewrite: served.
    const steps = Array.from({ length: 10 }, (_, i) => loc(`/s${i}/`, i < 9 ? [[`^/s${i}/$`, `/s${i + 1}/`, 'last']] : []));
    expect(route(site(loc(''), steps), '/s0/', null, vars)).toMatchObject({ kind: 'location', uri: '/s9/' });
  });

  it('escapes a rewritten URI as nginx sends it', () => {
    expect(escapeUri('/a b/ü?#%')).toBe('/a%20b/%C3%BC%3F%23%25');
  });
});
