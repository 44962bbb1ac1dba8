/**
 * Rails' public/ through an nginx.conf as these hosts write it: `root .../public; try_files
 * $uri/index.html $uri @app;` serves files from the disk and sends the rest to the app; `location
 * ^~ /assets/ { gzip_static on; expires max; }` serves precompressed assets with far-future caching.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

describe('static files from an nginx.conf', () => {
  const tmp = tempDir();
  const pub = join(tmp.dir, 'public');
  const seen: string[] = [];
  let app: Upstream;
  let gw: RunningGateway;
  const css = 'body { color: red; }\n'.repeat(50);

  beforeAll(async () => {
    mkdirSync(join(pub, 'assets'), { recursive: true });
    writeFileSync(join(pub, 'index.html'), '<h1>home</h1>\n');
    writeFileSync(join(pub, 'robots.txt'), 'User-agent: *\n');
    writeFileSync(join(pub, 'assets', 'app.css'), css);
    writeFileSync(join(pub, 'assets', 'app.css.gz'), gzipSync(css));
    writeFileSync(join(tmp.dir, 'secret.txt'), 'outside the root\n');
    app = await httpUpstream(join(tmp.dir, 'web_server.sock'), (req, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      req.on('end', () => res.end('from the app'));
    });
    const conf = join(tmp.dir, 'nginx.conf');
    writeFileSync(
      conf,
      `events { worker_connections 1024; }
http {
  upstream app_server { server unix:${app.socketPath} fail_timeout=0; }
  server {
    listen 80;
    root ${pub};
    try_files $uri/index.html $uri @app;
    location ^~ /assets/ {
      gzip_static on;
      expires max;
      add_header X-Asset yes;
    }
    location @app { proxy_pass http://app_server; }
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

  it('serves files that exist, with type, validators and 304s', async () => {
    const home = await request(`${gw.url}/`);
    expect(home.statusCode).toBe(200);
    expect(await home.body.text()).toBe('<h1>home</h1>\n');
    const robots = await request(`${gw.url}/robots.txt`);
    expect(robots.statusCode).toBe(200);
    expect(robots.headers['content-type']).toBe('text/plain');
    const etag = robots.headers.etag as string;
    expect(etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    await robots.body.dump();
    const again = await request(`${gw.url}/robots.txt`, { headers: { 'if-none-match': etag } });
    expect(again.statusCode).toBe(304);
    await again.body.dump();
    expect(seen).toEqual([]);
  });

  it('sends what is not on the disk to the app, any method', async () => {
    const r = await request(`${gw.url}/users/1?x=2`);
    expect(await r.body.text()).toBe('from the app');
    const post = await request(`${gw.url}/users`, { method: 'POST', body: 'a=1' });
    expect(await post.body.text()).toBe('from the app');
    expect(seen).toEqual(['GET /users/1?x=2', 'POST /users']);
  });

  it('serves precompressed assets with far-future caching and the location headers; 404 for a missing asset', async () => {
    const gz = await request(`${gw.url}/assets/app.css`, { headers: { 'accept-encoding': 'gzip' } });
    expect(gz.statusCode).toBe(200);
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers['content-type']).toBe('text/css');
    expect(gz.headers.vary).toBe('Accept-Encoding');
    expect(gz.headers['cache-control']).toBe('max-age=315360000');
    expect(gz.headers.expires).toBe('Thu, 31 Dec 2037 23:55:55 GMT');
    expect(gz.headers['x-asset']).toBe('yes');
    expect(Buffer.from(await gz.body.arrayBuffer())).toEqual(gzipSync(css));
    const plain = await request(`${gw.url}/assets/app.css`);
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(await plain.body.text()).toBe(css);
    const missing = await request(`${gw.url}/assets/nope.css`);
    expect(missing.statusCode).toBe(404);
    await missing.body.dump();
  });

  it('never serves a file outside the root, however the path is written', async () => {
    for (const path of ['/../secret.txt', '/%2e%2e/secret.txt', '/assets/..%2f..%2fsecret.txt']) {
      const r = await rawRequest(gw.port, `GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);
      expect(r.text, path).not.toContain('outside the root');
    }
  });

  it('answers 405 to a POST on a static file, as nginx does', async () => {
    const r = await request(`${gw.url}/robots.txt`, { method: 'POST', body: 'x' });
    expect(r.statusCode).toBe(405);
    await r.body.dump();
  });
});

describe('error_page from an nginx.conf', () => {
  const tmp = tempDir();
  let gw: RunningGateway | undefined;
  afterAll(async () => {
    await gw?.stop();
    tmp.cleanup();
  });

  it("answers the gateway's own 502 with the server's error_page file", async () => {
    const pub = join(tmp.dir, 'public');
    mkdirSync(pub);
    writeFileSync(join(pub, '50x.html'), '<h1>We will be right back</h1>\n');
    const conf = join(tmp.dir, 'nginx.conf');
    writeFileSync(
      conf,
      `events { worker_connections 64; }
http {
  upstream app_server { server unix:${join(tmp.dir, 'missing.sock')}; }
  server {
    listen 80;
    root ${pub};
    error_page 500 502 503 504 /50x.html;
    location / { proxy_pass http://app_server; }
  }
}
`,
    );
    // Holding off, so the missing app is a 502 at once, as with nginx.
    gw = await startGateway(['--nginx-config', conf, '--access-log', 'off', '--hold-timeout', '0']);
    const r = await request(`${gw.url}/anything`);
    expect(r.statusCode).toBe(502);
    expect(await r.body.text()).toBe('<h1>We will be right back</h1>\n');
  });
});

describe('return from an nginx.conf', () => {
  const tmp = tempDir();
  let gw: RunningGateway | undefined;
  let app: Upstream | undefined;
  afterAll(async () => {
    await gw?.stop();
    await app?.close();
    tmp.cleanup();
  });

  it('redirects, answers a text, or a bare status, and proxies the rest', async () => {
    app = await httpUpstream(join(tmp.dir, 'app.sock'), (_req, res) => res.end('from the app'));
    const conf = join(tmp.dir, 'nginx.conf');
    writeFileSync(
      conf,
      `events { worker_connections 64; }
http {
  upstream app_server { server unix:${app.socketPath}; }
  server {
    listen 80;
    location /legacy/ { return 301 https://$host$request_uri; }
    location = /up { return 200 "ok"; }
    location = /gone { return 410; }
    location / { proxy_pass http://app_server; }
  }
}
`,
    );
    gw = await startGateway(['--nginx-config', conf, '--access-log', 'off']);
    const moved = await request(`${gw.url}/legacy/page?q=1`, { headers: { host: 'shop.example:8080' } });
    expect(moved.statusCode).toBe(301);
    expect(moved.headers.location).toBe('https://shop.example/legacy/page?q=1');
    await moved.body.dump();
    const up = await request(`${gw.url}/up`);
    expect(up.statusCode).toBe(200);
    expect(await up.body.text()).toBe('ok');
    const gone = await request(`${gw.url}/gone`);
    expect(gone.statusCode).toBe(410);
    await gone.body.dump();
    const rest = await request(`${gw.url}/other`);
    expect(await rest.body.text()).toBe('from the app');
  });
});
