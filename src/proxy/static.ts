/**
 * Static files, as nginx serves them in front of Rails: a location with `root` (and `try_files
 * $uri/index.html $uri @app`) answers from the disk when the file is there and sends the request
 * to the app otherwise; `expires`, `add_header` and `gzip_static` as nginx applies them. Only used
 * when the configuration came from an nginx.conf with such locations (the composition root passes a
 * router); without one the proxy never touches the disk.
 */
import { createReadStream, promises as fsp, type Stats } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, resolve, sep } from 'node:path';
import { errorPage, reasonOf } from './errors.js';
import { GzipWriter, gzipHeaders, gzipPlan, type GzipRule } from './gzip.js';

export interface StaticLocation {
  root: string | null;
  tryFiles: string[] | null;
  /** The location itself proxies (proxy_pass). */
  proxy: boolean;
  expires: { kind: 'off' } | { kind: 'epoch' } | { kind: 'max' } | { kind: 'after'; seconds: number };
  headers: { name: string; value: string }[];
  gzipStatic: boolean;
  /** gzip: files sent without a precompressed `.gz` are compressed as they stream (gzip.ts). */
  gzip?: GzipRule | null;
  /** nginx's `return code [text|URL]`, variables as text ($scheme, $host, $request_uri, $uri). */
  ret?: { status: number; text: string | null } | null;
}

/** The location for a decoded path; undefined: no static handling (proxy). */
export type StaticRouter = (path: string) => StaticLocation | undefined;

/** What happened: the file was served (with its body bytes), go to the app, or answer a status. */
export type StaticOutcome = { served: number; status: number } | 'proxy' | { error: number };

const TYPES: Record<string, string> = {
  '.html': 'text/html', '.htm': 'text/html', '.css': 'text/css', '.js': 'application/javascript', '.mjs': 'application/javascript',
  '.json': 'application/json', '.xml': 'application/xml', '.txt': 'text/plain', '.svg': 'image/svg+xml', '.png': 'image/png',
  '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.webp': 'image/webp', '.ico': 'image/x-icon',
  '.woff': 'font/woff', '.woff2': 'font/woff2', '.ttf': 'font/ttf', '.map': 'application/json', '.pdf': 'application/pdf',
  '.wasm': 'application/wasm',
};

/** A file's Content-Type by its extension, from the gateway's table (nginx's mime.types subset). */
export function contentType(path: string): string {
  return TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** nginx's `return`: a redirect with Location, a status with a text body, or a bare status. */
export function answerReturn(req: IncomingMessage, res: ServerResponse, ret: { status: number; text: string | null }, path: string): StaticOutcome {
  const host = String(req.headers.host ?? 'localhost').replace(/:\d+$/, '');
  const text = ret.text?.replace(/\$(scheme|host|request_uri|uri|http_host)\b|\$\{(scheme|host|request_uri|uri|http_host)\}/g, (_m, a?: string, b?: string) => {
    const v = a ?? b;
    if (v === 'scheme') return 'http';
    if (v === 'host') return host;
    if (v === 'http_host') return String(req.headers.host ?? '');
    if (v === 'request_uri') return req.url ?? '/';
    return path;
  });
  if (REDIRECTS.has(ret.status) && text != null) {
    // nginx's own page for the status, as for errors.
    const body = errorPage(ret.status);
    res.writeHead(ret.status, reasonOf(ret.status), { Location: text, 'Content-Type': 'text/html', 'Content-Length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
    return { served: req.method === 'HEAD' ? 0 : body.length, status: ret.status };
  }
  if (text == null) return { error: ret.status };
  res.writeHead(ret.status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(text) });
  res.end(req.method === 'HEAD' ? undefined : text);
  return { served: req.method === 'HEAD' ? 0 : Buffer.byteLength(text), status: ret.status };
}

export async function serveStatic(req: IncomingMessage, res: ServerResponse, loc: StaticLocation, path: string): Promise<StaticOutcome> {
  if (loc.ret) return answerReturn(req, res, loc.ret, path);
  const entries = loc.tryFiles ?? (loc.proxy ? null : ['$uri']);
  if (entries === null || loc.root === null) return 'proxy';
  const last = entries[entries.length - 1] as string;
  const tries = loc.tryFiles ? entries.slice(0, -1) : entries;
  const get = req.method === 'GET' || req.method === 'HEAD';
  for (const entry of tries) {
    const file = await findFile(loc.root, entry.replaceAll('$uri', path));
    if (!file) continue;
    // nginx answers 405 to other methods on a static file.
    if (!get) return { error: 405 };
    return send(req, res, loc, file.path, file.stat);
  }
  if (!loc.tryFiles) return { error: 404 };
  if (last.startsWith('@')) return 'proxy';
  const code = /^=(\d{3})$/.exec(last);
  if (code) return { error: Number(code[1]) };
  const file = get ? await findFile(loc.root, last.replaceAll('$uri', path)) : undefined;
  return file ? send(req, res, loc, file.path, file.stat) : { error: 404 };
}

/** The file for a URI under root: never outside it (`..` is resolved first), a directory's index.html. */
async function findFile(root: string, uri: string): Promise<{ path: string; stat: Stats } | undefined> {
  const base = resolve(root);
  let path = resolve(base, '.' + (uri.startsWith('/') ? uri : `/${uri}`));
  if (path !== base && !path.startsWith(base + sep)) return undefined;
  if (uri.endsWith('/')) path = resolve(path, 'index.html');
  try {
    const stat = await fsp.stat(path);
    return stat.isFile() ? { path, stat } : undefined;
  } catch {
    return undefined;
  }
}

async function send(req: IncomingMessage, res: ServerResponse, loc: StaticLocation, path: string, stat: Stats): Promise<StaticOutcome> {
  let file = path;
  let gzipped = false;
  if (loc.gzipStatic && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))) {
    try {
      const gz = await fsp.stat(`${path}.gz`);
      if (gz.isFile()) {
        // As nginx's gzip_static: the validators are the .gz file's, so the two encodings never
        // share a strong ETag (RFC 9110 8.8.3).
        file = `${path}.gz`;
        stat = gz;
        gzipped = true;
      }
    } catch {
      // no precompressed file: the plain one
    }
  }
  const size = stat.size;
  // nginx's ETag: hex mtime (seconds) and hex size.
  const etag = `"${Math.floor(stat.mtimeMs / 1000).toString(16)}-${stat.size.toString(16)}"`;
  const headers: Record<string, string | number> = {
    'Content-Type': contentType(path),
    'Last-Modified': stat.mtime.toUTCString(),
    ETag: etag,
  };
  Object.assign(headers, expiresHeaders(loc.expires));
  // nginx's add_header adds a field (`add_header Cache-Control public` after `expires max` sends
  // both); only Last-Modified and ETag are replaced.
  const added: string[] = [];
  for (const h of loc.headers) {
    const name = h.name.toLowerCase();
    if (name === 'last-modified') headers['Last-Modified'] = h.value;
    else if (name === 'etag') headers.ETag = h.value;
    else added.push(h.name, h.value);
  }
  const since = req.headers['if-modified-since'];
  if (req.headers['if-none-match'] === headers.ETag || (since !== undefined && Date.parse(since) >= Math.floor(stat.mtimeMs / 1000) * 1000)) {
    // nginx's not_modified filter: no representation metadata on a 304 (RFC 9110 15.4.5).
    delete headers['Content-Type'];
    res.writeHead(304, [...Object.entries(headers).flatMap(([k, v]) => [k, String(v)]), ...added]);
    res.end();
    return { served: 0, status: 304 };
  }
  if (loc.gzipStatic) headers.Vary = 'Accept-Encoding';
  if (gzipped) headers['Content-Encoding'] = 'gzip';
  headers['Content-Length'] = size;
  const plan = loc.gzip ? gzipPlan(loc.gzip, req, 200, (name) => lookup(headers, name)) : 'none';
  const fields = [...Object.entries(headers).flatMap(([k, v]) => [k, String(v)]), ...added];
  const flat = plan === 'none' ? fields : gzipHeaders(fields, plan, loc.gzip as GzipRule);
  res.writeHead(200, flat);
  if (req.method === 'HEAD') {
    res.end();
    return { served: 0, status: 200 };
  }
  let served = size;
  await new Promise<void>((done) => {
    const stream = createReadStream(file);
    stream.on('error', () => {
      res.destroy();
      done();
    });
    res.on('close', () => {
      stream.destroy();
      done();
    });
    if (plan !== 'gzip') {
      stream.pipe(res);
      return;
    }
    // Compressed as it streams: the file is paused while zlib (or the client behind it) is full.
    served = 0;
    const gz = new GzipWriter(res, (loc.gzip as GzipRule).level, () => stream.resume(), (n) => (served += n));
    res.on('close', () => gz.destroy());
    stream.on('data', (chunk) => {
      if (!gz.write(chunk as Buffer)) stream.pause();
    });
    stream.on('end', () => gz.end(done));
  });
  return { served, status: 200 };
}

/** A header of a response being built, any case. */
function lookup(headers: Record<string, string | number>, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === name) return String(v);
  return undefined;
}

function expiresHeaders(e: StaticLocation['expires']): Record<string, string> {
  switch (e.kind) {
    case 'off':
      return {};
    case 'epoch':
      return { Expires: 'Thu, 01 Jan 1970 00:00:01 GMT', 'Cache-Control': 'no-cache' };
    case 'max':
      return { Expires: 'Thu, 31 Dec 2037 23:55:55 GMT', 'Cache-Control': 'max-age=315360000' };
    case 'after':
      return e.seconds < 0 ? { Expires: new Date(Date.now() + e.seconds * 1000).toUTCString(), 'Cache-Control': 'no-cache' } : { Expires: new Date(Date.now() + e.seconds * 1000).toUTCString(), 'Cache-Control': `max-age=${e.seconds}` };
  }
}
