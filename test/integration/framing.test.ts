/**
 * Message framing through the gateway (RFC 9112 6): bodies that must not exist stay absent, a
 * Content-Length body keeps its length, a chunked body stays chunked (so streams are not buffered),
 * trailers survive, and Expect: 100-continue is answered by the gateway, not passed on.
 */
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { parseHead, rawRequest } from '../helpers/raw.js';
import { framingAnswer, httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

let tmp: ReturnType<typeof tempDir>;
let upstream: Upstream;
let gw: RunningGateway;
/** What the upstream saw for the last /continue request. */
let lastContinue: { expect: string | undefined; body: string } | undefined;

beforeAll(async () => {
  tmp = tempDir();
  upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
    const url = req.url ?? '/';
    if (framingAnswer(req, res)) return;
    if (url === '/head') {
      // A HEAD answer announces the length a GET would have; no body follows (RFC 9110 9.3.2).
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '100' });
      res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(100));
    } else if (url === '/sse') {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      res.write('data: one\n\n');
      setTimeout(() => {
        res.write('data: two\n\n');
        res.end();
      }, 1000);
    } else if (url === '/continue') {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        lastContinue = { expect: req.headers.expect, body };
        res.end(`got ${body}`);
      });
    } else if (url === '/next') {
      res.end('NEXT');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  gw = await startGateway(['--upstream', upstream.socketPath, '--access-log', 'off']);
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
  tmp?.cleanup();
});

/**
 * Sends `first` and a `GET /next` pipelined on one connection. If the gateway sent any body bytes
 * after a bodiless response, they would sit between the two heads and the second would not start
 * right after the first's blank line.
 */
async function thenNext(first: string): Promise<{ first: ReturnType<typeof parseHead>; rest: string }> {
  const r = await rawRequest(gw.port, [first, 'GET /next HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'], { waitMs: 3000 });
  const end = r.text.indexOf('\r\n\r\n');
  expect(end).toBeGreaterThan(0);
  return { first: parseHead(r.text.slice(0, end + 4)), rest: r.text.slice(end + 4) };
}

describe('framing', () => {
  it('HEAD gets the headers (with the GET length) and no body', async () => {
    const { first, rest } = await thenNext('HEAD /head HTTP/1.1\r\nHost: t\r\n\r\n');
    expect(first.status).toBe(200);
    expect(first.headers['content-length']).toEqual(['100']);
    expect(rest).toMatch(/^HTTP\/1\.1 200 /);
    expect(rest.endsWith('NEXT')).toBe(true);
  });

  it('204 has no body and no framing headers', async () => {
    const { first, rest } = await thenNext('GET /204 HTTP/1.1\r\nHost: t\r\n\r\n');
    expect(first.status).toBe(204);
    expect(first.headers['x-kind']).toEqual(['no-content']);
    expect(first.headers['transfer-encoding']).toBeUndefined();
    expect(first.headers['content-length']).toBeUndefined();
    expect(rest).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('304 has no body', async () => {
    const { first, rest } = await thenNext('GET /304 HTTP/1.1\r\nHost: t\r\nIf-None-Match: "v1"\r\n\r\n');
    expect(first.status).toBe(304);
    expect(first.headers.etag).toEqual(['"v1"']);
    expect(first.headers['transfer-encoding']).toBeUndefined();
    expect(rest).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('a Content-Length response keeps its length and is not re-chunked', async () => {
    const r = await rawRequest(gw.port, 'GET /fixed HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    const p = parseHead(r.text);
    expect(p.status).toBe(200);
    expect(p.headers['content-length']).toEqual(['11']);
    expect(p.headers['transfer-encoding']).toBeUndefined();
    expect(p.body).toBe('hello world');
  });

  it('a chunked upstream response stays chunked to an HTTP/1.1 client', async () => {
    const r = await rawRequest(gw.port, 'GET /chunked HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    const p = parseHead(r.text);
    expect(p.status).toBe(200);
    expect(p.headers['transfer-encoding']).toEqual(['chunked']);
    expect(p.headers['content-length']).toBeUndefined();
    // Decode the chunks to check the framing is well formed and ends with the last-chunk.
    let body = '';
    let rest = p.body;
    for (;;) {
      const nl = rest.indexOf('\r\n');
      expect(nl).toBeGreaterThan(0);
      const size = parseInt(rest.slice(0, nl), 16);
      if (size === 0) {
        expect(rest.slice(nl)).toBe('\r\n\r\n');
        break;
      }
      body += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    expect(body).toBe('first,second');
  });

  it('server-sent events arrive as they are sent, not when the response ends', async () => {
    const events: { text: string; at: number }[] = [];
    const t0 = performance.now();
    const endedAt = await new Promise<number>((resolve, reject) => {
      http
        .get(`${gw.url}/sse`, (res) => {
          expect(res.headers['content-type']).toBe('text/event-stream');
          res.setEncoding('utf8');
          res.on('data', (c: string) => events.push({ text: c, at: performance.now() - t0 }));
          res.on('end', () => resolve(performance.now() - t0));
          res.on('error', reject);
        })
        .on('error', reject);
    });
    const all = events.map((e) => e.text).join('');
    expect(all).toBe('data: one\n\ndata: two\n\n');
    const first = events[0];
    expect(first?.text.startsWith('data: one')).toBe(true);
    // The upstream waits 1 s between the events: the first must not have waited for the second.
    expect(endedAt - (first?.at ?? endedAt)).toBeGreaterThan(700);
  });

  it('trailers from a chunked upstream response reach the client', async () => {
    const { body, trailers, headers } = await new Promise<{ body: string; trailers: NodeJS.Dict<string>; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
      http
        .get(`${gw.url}/trailers`, { headers: { TE: 'trailers' } }, (res) => {
          let b = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (b += c));
          res.on('end', () => resolve({ body: b, trailers: res.trailers, headers: res.headers }));
          res.on('error', reject);
        })
        .on('error', reject);
    });
    expect(body).toBe('body-with-trailer');
    expect(headers['transfer-encoding']).toBe('chunked');
    expect(headers.trailer).toBe('X-Checksum');
    expect(trailers['x-checksum']).toBe('abc123');
  });

  it('Expect: 100-continue with a small body: 100 from the gateway, no Expect upstream', async () => {
    lastContinue = undefined;
    const socket = net.connect({ port: gw.port, host: '127.0.0.1' });
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    const waitFor = (re: RegExp) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}; got ${JSON.stringify(text)}`)), 3000);
        const check = () => {
          if (re.test(text)) {
            clearTimeout(timer);
            socket.off('data', check);
            resolve();
          }
        };
        socket.on('data', check);
        check();
      });
    socket.write('POST /continue HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n');
    // The client holds the body until invited, as curl does.
    await waitFor(/^HTTP\/1\.1 100 Continue\r\n\r\n/);
    socket.write('hello');
    await waitFor(/got hello$/);
    socket.destroy();
    const final = parseHead(text.slice(text.indexOf('\r\n\r\n') + 4));
    expect(final.status).toBe(200);
    expect(final.body).toBe('got hello');
    // Exactly one interim response: the upstream did not send a second 100 of its own.
    expect(text.match(/HTTP\/1\.1 100 /g)).toHaveLength(1);
    expect(lastContinue).toEqual({ expect: undefined, body: 'hello' });
  });
});
