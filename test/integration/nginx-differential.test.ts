/**
 * Differential: one nginx.conf, written the way Rails hosts write it, served by real nginx (Debian
 * nginx-light) and by the gateway (`--nginx-config`), in front of the same app on a Unix socket.
 * Each row of a table of requests goes to both; the status, the headers a client or cache acts on,
 * the body, and (for requests that reach the app) what the app saw must be the same. Where the
 * gateway differs from nginx by design, the row asserts the difference and names the doc line.
 * Rows this file found and the gateway now matches: proxy_set_header of the `@app` that try_files
 * falls to (X-Forwarded-For after realip), `add_header Cache-Control` next to `expires`'s, the
 * `.gz` file's ETag under gzip_static, no Content-Type on a 304, nginx's page on a redirect.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBinary } from '../helpers/debian.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

const nginxBin = requireBinary('nginx', 'nginx-light');

// Every request names the same Host, so `$http_host` is the same for both servers (their ports differ).
const HOST = 'shop.example';
const css = 'body { color: red; }\n'.repeat(50);
const page = '<html><body>' + 'hello gzip, '.repeat(200) + '</body></html>\n';

/**
 * The file both read. The nginx-only lines are the ones any nginx needs to run unprivileged in a
 * temp dir (temp paths; the gateway warns that it ignores them); the rest is what a Rails host
 * writes. `pid`, `error_log`, `daemon` and `master_process` go on nginx's command line instead, so
 * the gateway (which would write a PID file for `pid`) reads nothing it would act on differently.
 */
function nginxConf(dir: string, sock: string, port: number): string {
  return `events { worker_connections 64; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;

  gzip on;
  gzip_types text/css application/json;
  gzip_min_length 20;
  gzip_proxied any;
  gzip_vary on;

  upstream app {
    server unix:${sock} fail_timeout=0;
  }

  server {
    listen 127.0.0.1:${port};
    server_name ${HOST};
    root ${dir}/public;
    client_max_body_size 1k;

    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    real_ip_recursive on;

    rewrite ^/old/(.*)$ /new/$1 permanent;

    try_files $uri/index.html $uri @app;

    location = /health {
      return 200 "ok";
    }

    location ^~ /assets/ {
      gzip_static on;
      expires max;
      add_header Cache-Control public;
    }

    location @app {
      proxy_pass http://app;
      proxy_set_header Host $http_host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_redirect off;
    }

    error_page 500 502 503 504 /500.html;
    error_page 404 /404.html;
  }
}
`;
}

/** What the app saw, as it echoes it. */
interface Echo {
  method: string;
  url: string;
  host: string | undefined;
  xRealIp: string | undefined;
  xForwardedFor: string | undefined;
  xForwardedProto: string | undefined;
  bodySize: number;
}

/** One response, reduced to what is compared. */
interface Seen {
  status: number;
  /** The significant headers (see `significant`). */
  headers: Record<string, string>;
  /** The body as text, gunzipped when Content-Encoding is gzip. */
  body: string;
  /** All headers, for a failure message. */
  all: IncomingHttpHeaders;
}

/** A value, absent (undefined), or one known once the servers run. */
type Expected = string | undefined | (() => string);

interface Row {
  name: string;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** Runs before the row is sent to either server. */
  before?: () => Promise<void>;
  /** Sent to the gateway started with `--hold-timeout 0`. */
  noHold?: boolean;
  /**
   * Where the two differ, each field's [nginx, gateway] value (undefined: absent) and why; every
   * other field, the status and the body must be the same.
   */
  differs?: { fields: Record<string, [Expected, Expected]>; why: string };
  /** What the app saw (the same from both, checked by the body); asserted for the record. */
  app?: Partial<Echo>;
}

/**
 * The headers compared, normalized. `Content-Type` is compared exactly, charset included: neither
 * server adds a charset here (no `charset` directive), and the app's passes unchanged, so a
 * difference there would be real. Several fields of one name (`Cache-Control` after `expires` and
 * `add_header`) are joined in order. Left out, each for a reason:
 * - `Server`: nginx sends its own; the gateway adds none (nginx-compat/README.md, `server_tokens`).
 * - `Date`: the time of each response.
 * - `Connection`, `Keep-Alive`: connection management; each server keeps connections its own way
 *   and both close here because the client asks (`reset`).
 * - `Transfer-Encoding`: folded into `framing`, with `Content-Length` only when the body is framed by length.
 * - `ETag`'s value on proxied responses is the app's, compared as is; on static files both use
 *   nginx's hex mtime-size, so it is compared exactly too.
 */
function significant(h: IncomingHttpHeaders, method: string): Record<string, string> {
  const out: Record<string, string> = {};
  const one = (name: string): string | undefined => {
    const v = h[name];
    return Array.isArray(v) ? v.join(', ') : v;
  };
  for (const name of ['content-type', 'content-encoding', 'vary', 'cache-control', 'expires', 'location', 'etag', 'last-modified', 'accept-ranges', 'content-range']) {
    const v = one(name);
    if (v !== undefined) out[name] = v;
  }
  const te = one('transfer-encoding');
  const cl = one('content-length');
  out.framing = te?.includes('chunked') ? 'chunked' : cl !== undefined ? 'length' : method === 'HEAD' ? 'none' : 'close';
  if (!te && cl !== undefined) out['content-length'] = cl;
  return out;
}

/**
 * The built-in pages (413, a redirect's) end with a signature naming the server, as `Server` does
 * (nginx-compat/README.md, `server_tokens`): compared without it, and the length with it removed.
 */
const SIGNATURE = /<hr><center>(nginx\/[\d.]+|web-server-gateway)<\/center>\r\n/;

async function send(base: string, row: Row): Promise<Seen> {
  const method = row.method ?? 'GET';
  const res = await request(`${base}${row.path}`, {
    method: method as 'GET',
    headers: { host: HOST, ...row.headers },
    body: row.body,
    // One connection per request: no state carried between rows.
    reset: true,
  });
  const raw = Buffer.from(await res.body.arrayBuffer());
  let body = res.headers['content-encoding'] === 'gzip' ? gunzipSync(raw).toString() : raw.toString();
  const headers = significant(res.headers, method);
  if (SIGNATURE.test(body)) {
    body = body.replace(SIGNATURE, '');
    if (headers['content-length'] !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
  }
  return { status: res.statusCode, headers, body, all: res.headers };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as net.AddressInfo;
  s.close();
  return port;
}

describe.skipIf(!nginxBin)('the same nginx.conf served by nginx and by the gateway', () => {
  const tmp = tempDir('gw-diff-');
  const pub = join(tmp.dir, 'public');
  const sock = join(tmp.dir, 'app.sock');
  const conf = join(tmp.dir, 'nginx.conf');
  let app: Upstream | undefined;
  let nginx: ChildProcess;
  let nginxOut = '';
  let nginxUrl = '';
  let gw: RunningGateway;
  let gwNoHold: RunningGateway;
  const table: string[][] = [['row', 'nginx', 'gateway', '']];
  /** Requests the app received. */
  let hits = 0;

  async function startApp(): Promise<Upstream> {
    return httpUpstream(sock, (req, res) => {
      let size = 0;
      req.on('data', (c: Buffer) => (size += c.length));
      req.on('end', () => {
        const send = (status: number, type: string, body: string, extra: Record<string, string> = {}) => {
          // An explicit length: nginx talks HTTP/1.0 to the app, which cannot be sent chunked.
          res.writeHead(status, { 'Content-Type': type, 'Content-Length': String(Buffer.byteLength(body)), ...extra });
          res.end(req.method === 'HEAD' ? undefined : body);
        };
        hits++;
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        if (path === '/boom') return send(500, 'text/html; charset=utf-8', '<h1>the app failed</h1>\n');
        if (path === '/gone') return send(404, 'text/plain', 'no such record\n');
        if (path === '/page') return send(200, 'text/html; charset=utf-8', page, { ETag: '"v1"' });
        const echo: Echo = {
          method: req.method ?? '',
          url: req.url ?? '',
          host: req.headers.host,
          xRealIp: req.headers['x-real-ip'] as string | undefined,
          xForwardedFor: req.headers['x-forwarded-for'] as string | undefined,
          xForwardedProto: req.headers['x-forwarded-proto'] as string | undefined,
          bodySize: size,
        };
        send(200, 'application/json', JSON.stringify(echo));
      });
    });
  }

  beforeAll(async () => {
    mkdirSync(join(pub, 'assets'), { recursive: true });
    mkdirSync(join(tmp.dir, 'tmp'));
    writeFileSync(join(pub, 'index.html'), '<h1>home</h1>\n');
    writeFileSync(join(pub, 'robots.txt'), 'User-agent: *\nDisallow: /admin\n');
    writeFileSync(join(pub, '404.html'), '<h1>The page you were looking for does not exist.</h1>\n');
    writeFileSync(join(pub, '500.html'), '<h1>We are sorry, but something went wrong.</h1>\n');
    writeFileSync(join(pub, 'assets', 'app-1234.css'), css);
    writeFileSync(join(pub, 'assets', 'app-1234.css.gz'), gzipSync(css));
    app = await startApp();

    const port = await freePort();
    writeFileSync(conf, nginxConf(tmp.dir, sock, port));
    // master_process off: one process that stays root (a worker would switch to nobody, which
    // cannot enter the 0700 temp dir). -e: otherwise nginx first opens /var/log/nginx/error.log.
    const global = `daemon off; master_process off; pid ${tmp.dir}/nginx.pid; error_log ${tmp.dir}/error.log info;`;
    nginx = spawn(nginxBin as string, ['-p', `${tmp.dir}/`, '-e', `${tmp.dir}/error.log`, '-c', conf, '-g', global], { stdio: ['ignore', 'pipe', 'pipe'] });
    nginx.stdout?.on('data', (c: Buffer) => (nginxOut += c.toString()));
    nginx.stderr?.on('data', (c: Buffer) => (nginxOut += c.toString()));
    nginxUrl = `http://127.0.0.1:${port}`;

    // Flags win over the file: the gateway listens on a port of its own choosing.
    gw = await startGateway(['--nginx-config', conf, '--access-log', 'off']);
    // The gateway holds requests while the app cannot accept (docs/holding.md); nginx answers 502
    // at once. `--hold-timeout 0` turns holding off, which is nginx's behaviour, for the row that
    // stops the app.
    gwNoHold = await startGateway(['--nginx-config', conf, '--access-log', 'off', '--hold-timeout', '0']);

    const end = Date.now() + 10_000;
    for (;;) {
      try {
        const r = await request(`${nginxUrl}/health`);
        await r.body.dump();
        if (r.statusCode === 200) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > end || nginx.exitCode !== null) throw new Error(`nginx did not start:\n${nginxOut}\n${readFileSync(join(tmp.dir, 'error.log'), 'utf8')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  afterAll(async () => {
    // The record: one line per row.
    const widths = (table[0] ?? []).map((_, i) => Math.max(...table.map((r) => (r[i] ?? '').length)));
    process.stdout.write(`nginx-differential:\n${table.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')}\n`);
    await gw?.stop();
    await gwNoHold?.stop();
    if (nginx && nginx.exitCode === null) {
      nginx.kill('SIGTERM');
      await once(nginx, 'exit');
    }
    await app?.close();
    tmp.cleanup();
  });

  const robotsMtime = () => statSync(join(pub, 'robots.txt')).mtime.toUTCString();

  // The gateway serves static files whole: it neither advertises nor answers byte ranges, where
  // nginx's static module does both. Not yet in nginx-compat/README.md's known differences.
  const noRanges = { fields: { 'accept-ranges': ['bytes', undefined] as [string, undefined] }, why: 'no byte ranges (undocumented)' };
  // nginx's error_page answer is its static module serving the file, with the file's ETag; the
  // gateway reads the page at start and sends it without validators. Not yet documented.
  const pageEtag = (file: string): [Expected, Expected] => [
    () => {
      const st = statSync(join(pub, file));
      return `"${Math.floor(st.mtimeMs / 1000).toString(16)}-${st.size.toString(16)}"`;
    },
    undefined,
  ];

  const rows: Row[] = [
    { name: 'static file', path: '/robots.txt', differs: noRanges },
    { name: 'index.html through try_files $uri/index.html', path: '/', differs: noRanges },
    { name: 'static miss falls to the app', path: '/products/missing.txt', app: { url: '/products/missing.txt', xRealIp: '127.0.0.1', xForwardedFor: '127.0.0.1', xForwardedProto: 'http', host: HOST } },
    { name: 'asset, gzip_static, Accept-Encoding gzip', path: '/assets/app-1234.css', headers: { 'accept-encoding': 'gzip' } },
    { name: 'asset, no Accept-Encoding', path: '/assets/app-1234.css', differs: noRanges },
    { name: 'byte range of an asset', path: '/assets/app-1234.css', headers: { range: 'bytes=0-9' }, differs: { fields: { status: ['206', '200'], 'content-length': ['10', String(css.length)], 'content-range': [`bytes 0-9/${css.length}`, undefined], body: [css.slice(0, 10), css] }, why: 'no byte ranges (undocumented)' } },
    {
      name: 'missing asset: error_page 404',
      path: '/assets/nope-0000.css',
      // nginx-compat/README.md, known differences: "The gateway's own error pages are not
      // compressed; nginx compresses its 403/404 pages under gzip on" (hence its Vary here).
      differs: { fields: { vary: ['Accept-Encoding', undefined], etag: pageEtag('404.html') }, why: 'error pages: not compressed (README), no ETag (undocumented)' },
    },
    { name: 'app GET with a query string', path: '/products/7?color=red&size=%20L', app: { method: 'GET', url: '/products/7?color=red&size=%20L', bodySize: 0 } },
    { name: 'app POST with a small body', method: 'POST', path: '/orders', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'item=7&qty=2', app: { method: 'POST', url: '/orders', bodySize: 12 } },
    { name: 'oversized body: 413', method: 'POST', path: '/orders', headers: { 'content-type': 'application/octet-stream' }, body: 'x'.repeat(2048) },
    { name: "app's 500 passed through", path: '/boom' },
    { name: "app's 404 passed through", path: '/gone' },
    { name: 'gzip of a proxied text/html', path: '/page', headers: { 'accept-encoding': 'gzip' } },
    { name: 'gzip of a proxied application/json', path: '/products/8', headers: { 'accept-encoding': 'gzip' } },
    { name: 'HEAD of a static file', method: 'HEAD', path: '/robots.txt', differs: noRanges },
    {
      name: 'HEAD to the app',
      method: 'HEAD',
      path: '/page',
      // docs/proxy.md, gzip: "never HEAD": the gateway's gzip filter skips HEAD entirely, where
      // nginx's decides before it knows the response is header-only and so adds Vary.
      differs: { fields: { vary: ['Accept-Encoding', undefined] }, why: 'gzip never looks at HEAD (docs/proxy.md)' },
    },
    {
      name: 'rewrite ... permanent',
      path: '/old/products/7?ref=mail',
      // nginx-compat/README.md, known differences: "Redirects (`rewrite ... redirect|permanent`,
      // `return 301 /path`) keep a relative `Location`; nginx makes it absolute".
      // nginx's carries its listening port (port_in_redirect on).
      differs: { fields: { location: [() => `http://${HOST}:${new URL(nginxUrl).port}/new/products/7?ref=mail`, '/new/products/7?ref=mail'] }, why: 'relative Location (README)' },
    },
    {
      name: 'return 200 "ok"',
      path: '/health',
      // nginx-compat/README.md, directives: `default_type` is W, not translated: a `return` text
      // goes as text/plain, nginx sends the default_type.
      differs: { fields: { 'content-type': ['application/octet-stream', 'text/plain'] }, why: 'default_type not translated (README)' },
    },
    { name: 'X-Forwarded-For from a trusted peer', path: '/whoami', headers: { 'x-forwarded-for': '203.0.113.7' }, app: { xRealIp: '203.0.113.7', xForwardedFor: '203.0.113.7, 203.0.113.7' } },
    {
      name: 'X-Forwarded-For chain, recursive',
      path: '/whoami',
      headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.7, 127.0.0.1' },
      app: { xRealIp: '203.0.113.7', xForwardedFor: '198.51.100.1, 203.0.113.7, 127.0.0.1, 203.0.113.7' },
    },
    { name: 'If-Modified-Since on a static file: 304', path: '/robots.txt', headers: { 'if-modified-since': '' } },
    {
      name: 'app down: 502 with error_page 500.html',
      path: '/products/9',
      noHold: true,
      before: async () => {
        await app?.close();
        app = undefined;
      },
      differs: { fields: { etag: pageEtag('500.html') }, why: 'error page without ETag (undocumented)' },
    },
  ];

  /** The compared fields of a response: status, significant headers, body. */
  const fieldsOf = (s: Seen): Record<string, string> => ({ status: String(s.status), ...s.headers, body: s.body });

  for (const row of rows) {
    it(row.name, async () => {
      await row.before?.();
      if (row.headers?.['if-modified-since'] === '') row.headers['if-modified-since'] = robotsMtime();
      const before = hits;
      const a = await send(nginxUrl, row);
      const b = await send((row.noHold ? gwNoHold : gw).url, row);
      const n = fieldsOf(a);
      const g = fieldsOf(b);
      const diffs = [...new Set([...Object.keys(n), ...Object.keys(g)])].filter((k) => n[k] !== g[k]);
      table.push([row.name, String(a.status), String(b.status), diffs.length === 0 ? 'same' : `differs: ${diffs.join(', ')} (${row.differs?.why ?? 'UNEXPECTED'})`]);
      const expected = row.differs?.fields ?? {};
      for (const [k, [nv, gv]] of Object.entries(expected)) {
        expect(n[k], `${row.name}: nginx's ${k}`).toBe(typeof nv === 'function' ? nv() : nv);
        expect(g[k], `${row.name}: the gateway's ${k}`).toBe(typeof gv === 'function' ? gv() : gv);
      }
      const rest = (f: Record<string, string>) => Object.fromEntries(Object.entries(f).filter(([k]) => !(k in expected)));
      expect(rest(g), `${row.name}: ${JSON.stringify({ nginx: a.all, gateway: b.all })}`).toEqual(rest(n));
      if (row.app) {
        expect(JSON.parse(a.body) as Echo).toMatchObject(row.app);
        expect(JSON.parse(b.body) as Echo).toMatchObject(row.app);
      }
      // The 413 is answered before the body is read: neither lets the request reach the app.
      if (row.name.startsWith('oversized')) expect(hits).toBe(before);
    });
  }
});
