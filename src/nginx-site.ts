/**
 * An nginx.conf as the proxy uses it: the gateway keys it maps to (for validateConfig), and the
 * behaviour behind its locations (static files, return, error pages), built from nginx-compat's
 * per-location specs. Read at start and again on HUP (a reload).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { importNginxConfig, matchLocation, type LocationSpec } from '../nginx-compat/index.js';
import type { StaticLocation, StaticRouter } from './proxy/static.js';

/** What the proxy takes from an nginx.conf besides config keys. */
export interface NginxSite {
  statics?: StaticRouter;
  errorPages?: Map<number, Buffer>;
}

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
  // Static files (root, try_files, expires, add_header, gzip_static) are served, and the server's
  // error_page files answer the errors the gateway makes (502, 503, 504...); return, rewrite,
  // location-level error_page and gzip of responses are read but not applied yet: say so.
  const pending = [...r.locations].filter((l) => l.rewrite.length > 0 || l.errorPage.length > 0 || l.gzip.enabled);
  if (r.server && (r.server.rewrite.length > 0 || r.server.gzip.enabled)) pending.push(r.server);
  if (pending.length > 0) {
    say(`[warn] ${pending.length} block(s) use rewrite, a location's error_page or gzip: read, but not applied yet`);
  }
  const errorPages = new Map<number, Buffer>();
  for (const ep of r.server?.errorPage ?? []) {
    if (!ep.uri.startsWith('/') || r.server?.root == null) continue;
    try {
      const page = readFileSync(join(r.server.root, ep.uri));
      for (const code of ep.codes) errorPages.set(code, page);
    } catch (err) {
      say(`[warn] error_page ${ep.codes.join(' ')} ${ep.uri}: ${(err as Error).message}; the built-in page is used`);
    }
  }
  const adapt = (l: LocationSpec): StaticLocation => ({
    root: l.root,
    tryFiles: l.tryFiles,
    proxy: l.proxyPass !== null,
    expires: l.expires.kind === 'after' ? { kind: 'after', seconds: l.expires.seconds } : l.expires,
    headers: l.addHeader,
    gzipStatic: l.gzipStatic !== 'off',
    // A server-level `return` runs in nginx's rewrite phase, before any location is chosen.
    ret: r.server?.return ?? l.return,
  });
  const statics = [r.server, ...r.locations].some((l) => l && (l.root !== null || l.tryFiles || l.return))
    ? (path: string) => {
        const loc = matchLocation(r.locations, path) ?? r.server ?? undefined;
        return loc ? adapt(loc) : undefined;
      }
    : undefined;
  return { config: r.config, ...(statics ? { statics } : {}), ...(errorPages.size > 0 ? { errorPages } : {}) };
}

