/**
 * What Node's parser lets through but a front door refuses itself (REFERENCE.md, "Limits"): request
 * lines with HTTP/2.0 or no version, duplicate Host, chunked bodies on HTTP/1.0, header names with
 * `_` (unless --underscores-in-headers), CONNECT. None of them reaches the app. And the one thing
 * Node drops that must be served: a client that half-closes after its request.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { parseHead, rawRequest } from '../helpers/raw.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

describe('requests the gateway refuses itself', () => {
  const tmp = tempDir();
  const seen: { url: string; headers: Record<string, string | string[] | undefined> }[] = [];
  let upstream: Upstream;
  let gw: RunningGateway;
  let gwUnderscores: RunningGateway;

  beforeAll(async () => {
    upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      req.resume();
      req.on('end', () => {
        // A delayed, sizeable answer: a gateway that gave up on a half-closed client would cut it.
        setTimeout(() => res.end(`answer for ${req.url} ` + 'b'.repeat(64 * 1024)), 100);
      });
    });
    const common = ['--upstream', upstream.socketPath, '--access-log', 'off'];
    [gw, gwUnderscores] = await Promise.all([startGateway(common), startGateway([...common, '--underscores-in-headers', 'true'])]);
  });

  afterAll(async () => {
    await Promise.all([gw?.stop(), gwUnderscores?.stop()]);
    await upstream?.close();
    tmp.cleanup();
  });

  const urls = () => seen.map((s) => s.url);

  it.each([
    ['an HTTP/2.0 request line', 'GET /v2 HTTP/2.0\r\nHost: example.test\r\n\r\n', '/v2', 505],
    ['a request line without a version', 'GET /noversion\r\n\r\n', '/noversion', 400],
    ['a duplicate Host', 'GET /twohosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n', '/twohosts', 400],
    ['Transfer-Encoding: chunked on HTTP/1.0', 'POST /te10 HTTP/1.0\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', '/te10', 400],
    ['a header name with an underscore', 'GET /underscore HTTP/1.1\r\nHost: example.test\r\nX_Forwarded_For: 10.0.0.1\r\n\r\n', '/underscore', 400],
    ['CONNECT', 'CONNECT /connect HTTP/1.1\r\nHost: example.test:443\r\n\r\n', '/connect', 405],
  ])('refuses %s', async (_what, request, path, status) => {
    const r = await rawRequest(gw.port, request, { waitMs: 3000 });
    expect(r.status).toBe(status);
    expect(r.closed).toBe(true);
    expect(urls()).not.toContain(path);
  });

  it('refuses CONNECT in authority form too', async () => {
    const r = await rawRequest(gw.port, 'CONNECT app.example:443 HTTP/1.1\r\nHost: app.example:443\r\n\r\n');
    expect(r.status).toBe(405);
    expect(seen.some((s) => s.url.includes('app.example'))).toBe(false);
  });

  it('forwards a header name with an underscore when --underscores-in-headers is true', async () => {
    const r = await rawRequest(gwUnderscores.port, 'GET /underscore-allowed HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\nX_Custom_Flag: on\r\n\r\n');
    expect(r.status).toBe(200);
    const entry = seen.find((s) => s.url === '/underscore-allowed');
    expect(entry?.headers.x_custom_flag).toBe('on');
  });

  it('answers in full a client that half-closes right after its request', async () => {
    const r = await rawRequest(gw.port, 'GET /half-close HTTP/1.1\r\nHost: example.test\r\n\r\n', { halfClose: true, waitMs: 3000 });
    expect(r.status).toBe(200);
    const { headers, body } = parseHead(r.text);
    const expected = 'answer for /half-close ' + 'b'.repeat(64 * 1024);
    expect(body.length).toBe(Number(headers['content-length']?.[0]));
    expect(body).toBe(expected);
    // And then the connection is closed: both sides are done, nothing is left holding it.
    expect(r.closed).toBe(true);
  });
});
