/**
 * What an nginx.conf's server and locations do to each request beyond static files: gzip of
 * responses, a location's error_page (and proxy_intercept_errors), rewrite, a location's
 * client_max_body_size and proxy_set_header. A real gateway from an nginx.conf in a mkdtemp dir, a
 * real app on a Unix socket; each expectation is what nginx does with the same file.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { parseHead, rawRequest } from '../helpers/raw.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

/** The access log line of a request, once it is written. */
async function logLine(file: string, text: string): Promise<string | undefined> {
  const end = Date.now() + 3000;
  for (;;) {
    let content = '';
    try {
      content = readFileSync(file, 'utf8');
    } catch {
      // not created yet
    }
    const line = content.split('\n').find((l) => l.includes(text));
    if (line !== undefined || Date.now() > end) return line;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const page = '<html><body>' + 'hello gzip, '.repeat(200) + '</body></html>\n';

describe('gzip from an nginx.conf', () => {
  const tmp = tempDir();
  const pub = join(tmp.dir, 'public');
  const css = 'body { color: red; }\n'.repeat(100);
  /** Bytes the app wrote of /stream so far (backpressure). */
  let streamed = 0;
  const block = Buffer.from(randomBytes(768 * 1024).toString('base64'));
  const blocks = 40;
  let app: Upstream;
  let gw: RunningGateway;
  const log = join(tmp.dir, 'access.log');

  beforeAll(async () => {
    mkdirSync(join(pub, 'static'), { recursive: true });
    writeFileSync(join(pub, 'static', 'app.css'), css);
    app = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const send = (status: number, type: string, body: string, extra: Record<string, string> = {}) => {
        res.writeHead(status, { 'Content-Type': type, ...extra });
        res.end(body);
      };
      switch (url.pathname) {
        case '/html':
          return send(200, 'text/html; charset=utf-8', page, { ETag: '"v1"' });
        case '/json':
          return send(200, 'application/json', JSON.stringify({ list: page.split(' ') }));
        case '/png':
          return send(200, 'image/png', page);
        case '/small':
          return send(200, 'text/html', '<p>tiny</p>', { 'Content-Length': '11' });
        case '/encoded':
          return send(200, 'text/html', page, { 'Content-Encoding': 'identity-x' });
        case '/status':
          return send(Number(url.searchParams.get('code')), 'text/html', page);
        case '/cached':
          return send(200, 'text/html', page, { 'Cache-Control': url.searchParams.get('cc') ?? '' });
        case '/expires':
          return send(200, 'text/html', page, { Expires: new Date(Date.now() + Number(url.searchParams.get('in')) * 1000).toUTCString() });
        case '/stream': {
          res.writeHead(200, { 'Content-Type': 'text/plain' });
          let i = 0;
          const next = (): void => {
            while (i < blocks) {
              i++;
              streamed += block.length;
              if (!res.write(block)) {
                res.once('drain', next);
                return;
              }
            }
            res.end();
          };
          next();
          return;
        }
        default:
          return send(404, 'text/plain', 'no');
      }
    });
    const conf = join(tmp.dir, 'nginx.conf');
    writeFileSync(
      conf,
      `events { worker_connections 64; }
http {
  upstream app_server { server unix:${app.socketPath}; }
  gzip on;
  gzip_types text/css application/json text/plain;
  gzip_min_length 100;
  gzip_comp_level 6;
  gzip_vary on;
  gzip_proxied expired no-cache;
  gzip_disable "OldBrowser/\\d";
  server {
    listen 80;
    root ${pub};
    location /static/ { }
    location / { proxy_pass http://app_server; }
  }
}
`,
    );
    gw = await startGateway(['--nginx-config', conf, '--access-log', log]);
  });

  afterAll(async () => {
    await gw?.stop();
    await app?.close();
    tmp.cleanup();
  });

  const get = async (path: string, headers: Record<string, string> = { 'accept-encoding': 'gzip, deflate' }) => {
    const r = await request(`${gw.url}${path}`, { headers });
    return { status: r.statusCode, headers: r.headers, body: Buffer.from(await r.body.arrayBuffer()) };
  };

  it('compresses text/html and gzip_types from the app, without Content-Length, with Vary and a weak ETag', async () => {
    const html = await get('/html');
    expect(html.status).toBe(200);
    expect(html.headers['content-encoding']).toBe('gzip');
    expect(html.headers['content-length']).toBeUndefined();
    expect(html.headers.vary).toBe('Accept-Encoding');
    expect(html.headers.etag).toBe('W/"v1"');
    expect(gunzipSync(html.body).toString()).toBe(page);
    expect(html.body.length).toBeLessThan(page.length / 5);
    const json = await get('/json');
    expect(json.headers['content-encoding']).toBe('gzip');
    expect(JSON.parse(gunzipSync(json.body).toString())).toEqual({ list: page.split(' ') });
  });

  it('leaves alone what nginx leaves alone: other types, short bodies, encoded ones, statuses other than 200/403/404, HEAD', async () => {
    for (const path of ['/png', '/small', '/encoded', '/status?code=500', '/status?code=201']) {
      const r = await get(path);
      expect(r.headers['content-encoding'], path).not.toBe('gzip');
      expect(r.body.toString(), path).toContain(path === '/small' ? 'tiny' : 'hello gzip');
    }
    const notFound = await get('/status?code=404');
    expect(notFound.status).toBe(404);
    expect(notFound.headers['content-encoding']).toBe('gzip');
    const head = await request(`${gw.url}/html`, { method: 'HEAD', headers: { 'accept-encoding': 'gzip' } });
    expect(head.headers['content-encoding']).toBeUndefined();
    await head.body.dump();
  });

  it('sends it plain to clients that did not ask, gzip_disable and HTTP/1.0, with Vary still set', async () => {
    const plain = await get('/html', {});
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.headers.vary).toBe('Accept-Encoding');
    expect(plain.headers.etag).toBe('"v1"');
    expect(plain.body.toString()).toBe(page);
    const refused = await get('/html', { 'accept-encoding': 'gzip;q=0' });
    expect(refused.headers['content-encoding']).toBeUndefined();
    const old = await get('/html', { 'accept-encoding': 'gzip', 'user-agent': 'OldBrowser/5' });
    expect(old.headers['content-encoding']).toBeUndefined();
    const http10 = await rawRequest(gw.port, 'GET /html HTTP/1.0\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n');
    expect(http10.status).toBe(200);
    expect(parseHead(http10.text).headers['content-encoding']).toBeUndefined();
  });

  it('applies gzip_proxied to requests with Via: expired and no-cache compress, others do not', async () => {
    const via = { 'accept-encoding': 'gzip', via: '1.1 cdn' };
    expect((await get('/cached?cc=no-cache', via)).headers['content-encoding']).toBe('gzip');
    expect((await get('/cached?cc=max-age%3D60', via)).headers['content-encoding']).toBeUndefined();
    expect((await get('/expires?in=-60', via)).headers['content-encoding']).toBe('gzip');
    expect((await get('/expires?in=600', via)).headers['content-encoding']).toBeUndefined();
    // No Expires, no Cache-Control: nginx lets it through unless no_last_modified/no_etag say otherwise.
    expect((await get('/html', via)).headers['content-encoding']).toBe('gzip');
  });

  it('compresses a static file served without gzip_static', async () => {
    const r = await get('/static/app.css');
    expect(r.headers['content-encoding']).toBe('gzip');
    expect(r.headers['content-type']).toBe('text/css');
    expect(r.headers.etag).toMatch(/^W\/"[0-9a-f]+-[0-9a-f]+"$/);
    expect(gunzipSync(r.body).toString()).toBe(css);
  });

  it('streams with backpressure: a client that does not read holds the app back, and gets every byte', async () => {
    streamed = 0;
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get(`${gw.url}/stream`, { headers: { 'accept-encoding': 'gzip' } }, resolve).on('error', reject);
    });
    res.pause();
    await new Promise((r) => setTimeout(r, 1500));
    // 30 MB of base64 compresses to ~23 MB: far more than the socket buffers between us hold.
    expect(streamed).toBeLessThan((block.length * blocks) / 2);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    expect(res.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(body).length).toBe(block.length * blocks);
    expect(streamed).toBe(block.length * blocks);
    // The access log counts what the client received: the compressed bytes.
    expect(await logLine(log, 'GET /stream ')).toContain(`" 200 ${body.length} `);
  });
});

describe("a location's error_page, rewrite, client_max_body_size and proxy_set_header", () => {
  const tmp = tempDir();
  const pub = join(tmp.dir, 'public');
  const seen: { url: string; headers: http.IncomingHttpHeaders; bytes: number }[] = [];
  const gif = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');
  let app: Upstream;
  let gw: RunningGateway;

  beforeAll(async () => {
    mkdirSync(join(pub, 'files'), { recursive: true });
    writeFileSync(join(pub, '404.html'), '<h1>not here</h1>\n');
    writeFileSync(join(pub, '50x.html'), '<h1>back soon</h1>\n');
    writeFileSync(join(pub, 'empty.gif'), gif);
    writeFileSync(join(pub, 'files', 'a.txt'), 'file a\n');
    app = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
      let bytes = 0;
      req.on('data', (c: Buffer) => (bytes += c.length));
      req.on('end', () => {
        seen.push({ url: req.url ?? '', headers: req.headers, bytes });
        const m = /[?&]status=(\d+)/.exec(req.url ?? '');
        res.writeHead(m ? Number(m[1]) : 200, { 'Content-Type': 'text/plain' });
        res.end(`app saw ${req.url}`);
      });
    });
    const conf = join(tmp.dir, 'nginx.conf');
    writeFileSync(
      conf,
      `events { worker_connections 64; }
http {
  upstream app_server { server unix:${app.socketPath}; }
  server {
    listen 80;
    root ${pub};
    error_page 404 /404.html;
    error_page 500 502 503 504 /50x.html;

    rewrite ^/old/(.*)$ /new/$1 permanent;
    rewrite ^/elsewhere$ https://example.com/landing? redirect;
    rewrite ^/srv/(.*)$ /app/$1 last;

    location /files/ { try_files $uri =404; }
    location /pixel/ {
      error_page 404 =200 /empty.gif;
      try_files $uri =404;
    }
    location /intercept/ {
      proxy_intercept_errors on;
      proxy_pass http://app_server;
    }
    location /blog/ { rewrite ^/blog/(\\d+)$ /posts?id=$1 last; }
    location /b/ {
      rewrite ^/b/(.*)$ /inner/$1 break;
      proxy_pass http://app_server;
    }
    location /to-files/ { rewrite ^/to-files/(.*)$ /files/$1 last; }
    location /loop/ { rewrite ^/loop/(.*)$ /loop/x$1 last; }
    location /upload/ {
      client_max_body_size 0;
      proxy_pass http://app_server;
    }
    location /tiny/ {
      client_max_body_size 10;
      proxy_pass http://app_server;
    }
    location /hdr/ {
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Custom "v-$http_x_thing";
      proxy_set_header X-Real-IP "";
      proxy_set_header Connection "";
      proxy_pass http://app_server;
    }
    location / { proxy_pass http://app_server; }
  }
}
`,
    );
    gw = await startGateway(['--nginx-config', conf, '--access-log', 'off']);
  });

  afterAll(async () => {
    await gw?.stop();
    await app?.close();
    tmp.cleanup();
  });

  const fetch = async (path: string, opts: Parameters<typeof request>[1] = {}) => {
    const r = await request(`${gw.url}${path}`, opts);
    return { status: r.statusCode, headers: r.headers, body: Buffer.from(await r.body.arrayBuffer()) };
  };
  const appSaw = (): string[] => seen.splice(0).map((s) => s.url);

  it("answers a static 404 with the server's error_page, inherited by the location", async () => {
    const r = await fetch('/files/missing.txt');
    expect(r.status).toBe(404);
    expect(r.headers['content-type']).toBe('text/html');
    expect(r.body.toString()).toBe('<h1>not here</h1>\n');
    expect((await fetch('/files/a.txt')).body.toString()).toBe('file a\n');
  });

  it("serves a location's own error_page with =200 and the page's type", async () => {
    const r = await fetch('/pixel/nope.gif');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('image/gif');
    expect(r.body).toEqual(gif);
  });

  it("replaces the app's error responses only with proxy_intercept_errors on", async () => {
    const caught = await fetch('/intercept/x?status=500');
    expect(caught.status).toBe(500);
    expect(caught.body.toString()).toBe('<h1>back soon</h1>\n');
    const missing = await fetch('/intercept/x?status=404');
    expect(missing.status).toBe(404);
    expect(missing.body.toString()).toBe('<h1>not here</h1>\n');
    // No error_page for 410 and none for a 200: the app's own response.
    const gone = await fetch('/intercept/x?status=410');
    expect(gone.status).toBe(410);
    expect(gone.body.toString()).toBe('app saw /intercept/x?status=410');
    const passed = await fetch('/other?status=500');
    expect(passed.status).toBe(500);
    expect(passed.body.toString()).toBe('app saw /other?status=500');
    appSaw();
  });

  it('redirects with permanent and redirect, keeping the arguments unless the replacement ends with ?', async () => {
    const moved = await fetch('/old/page?q=1');
    expect(moved.status).toBe(301);
    expect(moved.headers.location).toBe('/new/page?q=1');
    const away = await fetch('/elsewhere?q=1');
    expect(away.status).toBe(302);
    expect(away.headers.location).toBe('https://example.com/landing');
    expect(appSaw()).toEqual([]);
  });

  it('sends the app the rewritten URI: server-level last, location last with new arguments first, break', async () => {
    expect((await fetch('/srv/users?x=1')).body.toString()).toBe('app saw /app/users?x=1');
    expect((await fetch('/blog/42?ref=home')).body.toString()).toBe('app saw /posts?id=42&ref=home');
    expect((await fetch('/b/deep/path')).body.toString()).toBe('app saw /inner/deep/path');
    expect(appSaw()).toEqual(['/app/users?x=1', '/posts?id=42&ref=home', '/inner/deep/path']);
  });

  it('chooses the location again after last: a rewrite to a static location serves the file', async () => {
    const r = await fetch('/to-files/a.txt');
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('file a\n');
    expect(appSaw()).toEqual([]);
  });

  it('answers 500 after 10 URI changes, as nginx does for a rewrite cycle', async () => {
    const r = await fetch('/loop/a');
    expect(r.status).toBe(500);
    expect(r.body.toString()).toBe('<h1>back soon</h1>\n');
    expect(appSaw()).toEqual([]);
  });

  it("limits request bodies by the location's client_max_body_size (0: none), announced or chunked", async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 'a');
    // The server's limit is nginx's default 1m; this location lifts it.
    const up = await fetch('/upload/file', { method: 'POST', body: big });
    expect(up.status).toBe(200);
    expect(seen.at(-1)?.bytes).toBe(big.length);
    expect((await fetch('/other', { method: 'POST', body: big })).status).toBe(413);
    expect((await fetch('/tiny/x', { method: 'POST', body: '0123456789' })).status).toBe(200);
    expect((await fetch('/tiny/x', { method: 'POST', body: '0123456789A' })).status).toBe(413);
    const chunked = await rawRequest(gw.port, 'POST /tiny/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n8\r\n89ABCDEF\r\n0\r\n\r\n');
    expect(chunked.status).toBe(413);
    appSaw();
  });

  it("sends the location's proxy_set_header fields, expanded; an empty value removes the field", async () => {
    await fetch('/hdr/x', { headers: { host: 'Shop.Example:8080', 'x-forwarded-for': '203.0.113.9', 'x-thing': 'blue', 'x-real-ip': '6.6.6.6' } });
    const h = seen.splice(0).at(-1)?.headers ?? {};
    expect(h.host).toBe('shop.example');
    expect(h['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1');
    expect(h['x-custom']).toBe('v-blue');
    expect(h['x-real-ip']).toBeUndefined();
    // Unnamed fields stay the gateway's: X-Forwarded-Proto is still set.
    expect(h['x-forwarded-proto']).toBe('http');
    await fetch('/other', { headers: { 'x-forwarded-for': '203.0.113.9' } });
    // Elsewhere the gateway's own rule: a client's X-Forwarded-For is not trusted.
    expect(seen.splice(0).at(-1)?.headers['x-forwarded-for']).toBe('127.0.0.1');
  });
});

describe("a location's error_page for the gateway's own 502", () => {
  const tmp = tempDir();
  let gw: RunningGateway | undefined;
  afterAll(async () => {
    await gw?.stop();
    tmp.cleanup();
  });

  it("answers with the location's page where it has one, the server's elsewhere", async () => {
    const pub = join(tmp.dir, 'public');
    mkdirSync(pub);
    writeFileSync(join(pub, '50x.html'), '<h1>server page</h1>\n');
    writeFileSync(join(pub, 'api-down.json'), '{"error":"down"}\n');
    const conf = join(tmp.dir, 'nginx.conf');
    writeFileSync(
      conf,
      `events { worker_connections 64; }
http {
  upstream app_server { server unix:${join(tmp.dir, 'missing.sock')}; }
  server {
    listen 80;
    root ${pub};
    error_page 502 /50x.html;
    location /api/ {
      error_page 502 =503 /api-down.json;
      proxy_pass http://app_server;
    }
    location / { proxy_pass http://app_server; }
  }
}
`,
    );
    gw = await startGateway(['--nginx-config', conf, '--access-log', 'off', '--hold-timeout', '0']);
    const api = await request(`${gw.url}/api/users`);
    expect(api.statusCode).toBe(503);
    expect(api.headers['content-type']).toBe('application/json');
    expect(await api.body.text()).toBe('{"error":"down"}\n');
    const page = await request(`${gw.url}/home`);
    expect(page.statusCode).toBe(502);
    expect(await page.body.text()).toBe('<h1>server page</h1>\n');
  });
});
