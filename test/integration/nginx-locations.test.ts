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
