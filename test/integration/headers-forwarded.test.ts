/**
 * What the upstream learns about the client, and which headers cross the gateway. Host is kept; the
 * X-Forwarded-* family is believed only from a trusted proxy (nginx's set_real_ip_from with
 * real_ip_recursive on); hop-by-hop fields and every field Connection names are dropped both ways
 * (RFC 9110 7.6.1).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { parseHead, rawRequest } from '../helpers/raw.js';
import { httpUpstream, rawUpstream, tempDir, type Upstream } from '../helpers/upstream.js';
import type net from 'node:net';

interface Seen {
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

let tmp: ReturnType<typeof tempDir>;
let echo: Upstream;
let hopResponder: Upstream<net.Server>;
let plain: RunningGateway;
let appending: RunningGateway;
let trusting: RunningGateway;
let hops: RunningGateway;

beforeAll(async () => {
  tmp = tempDir();
  // Answers with what it received, so each test asserts on the upstream's view.
  echo = await httpUpstream(join(tmp.dir, 'echo.sock'), (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const seen: Seen = { headers: req.headers, rawHeaders: req.rawHeaders, body };
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(seen));
    });
  });
  // A response full of hop-by-hop fields, written byte for byte.
  hopResponder = await rawUpstream(join(tmp.dir, 'hops.sock'), (s) => {
    // The gateway keeps the connection for the next request: answer every request head on it.
    s.on('data', () => {
      s.write(
        'HTTP/1.1 200 OK\r\n' +
          'Connection: keep-alive, X-Conn-Named\r\n' +
          'Keep-Alive: timeout=5, max=100\r\n' +
          'X-Conn-Named: must-not-pass\r\n' +
          'Proxy-Connection: keep-alive\r\n' +
          'TE: trailers\r\n' +
          'Upgrade: h2c\r\n' +
          'X-End-To-End: kept\r\n' +
          'Transfer-Encoding: chunked\r\n' +
          '\r\n' +
          '5\r\nhello\r\n0\r\n\r\n',
      );
    });
  });
  const base = ['--access-log', 'off'];
  [plain, appending, trusting, hops] = await Promise.all([
    startGateway(['--upstream', echo.socketPath, ...base]),
    startGateway(['--upstream', echo.socketPath, '--forwarded-for-untrusted', 'append', ...base]),
    startGateway(['--upstream', echo.socketPath, '--trusted-proxies', '127.0.0.1/32', ...base]),
    startGateway(['--upstream', hopResponder.socketPath, ...base]),
  ]);
});

afterAll(async () => {
  await Promise.all([plain, appending, trusting, hops].map((g) => g?.stop()));
  await echo?.close();
  await hopResponder?.close();
  tmp?.cleanup();
});

/** One raw request; returns what the echo upstream saw. */
async function seenBy(gw: RunningGateway, head: string[], body = ''): Promise<Seen> {
  const req = head.join('\r\n') + '\r\nConnection: close\r\n\r\n' + body;
  const r = await rawRequest(gw.port, req, { waitMs: 3000 });
  const p = parseHead(r.text);
  expect(p.status, r.text).toBe(200);
  // Responses from the echo upstream may be chunked: take the JSON object between the braces.
  const json = p.body.slice(p.body.indexOf('{'), p.body.lastIndexOf('}') + 1);
  return JSON.parse(json) as Seen;
}

describe('forwarded headers, untrusted peer (default)', () => {
  it('keeps Host as the client sent it', async () => {
    const s = await seenBy(plain, ['GET / HTTP/1.1', 'Host: shop.example.com:8080']);
    expect(s.headers.host).toBe('shop.example.com:8080');
  });

  it('replaces a client-sent X-Forwarded-For and X-Real-IP with the peer address', async () => {
    const s = await seenBy(plain, ['GET / HTTP/1.1', 'Host: t', 'X-Forwarded-For: 6.6.6.6', 'X-Real-IP: 6.6.6.6']);
    expect(s.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(s.headers['x-real-ip']).toBe('127.0.0.1');
  });

  it('adds X-Forwarded-For when the client sent none', async () => {
    const s = await seenBy(plain, ['GET / HTTP/1.1', 'Host: t']);
    expect(s.headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('with --forwarded-for-untrusted append, appends the peer to the client chain', async () => {
    const s = await seenBy(appending, ['GET / HTTP/1.1', 'Host: t', 'X-Forwarded-For: 6.6.6.6, 7.7.7.7']);
    expect(s.headers['x-forwarded-for']).toBe('6.6.6.6, 7.7.7.7, 127.0.0.1');
    // Appending is for the app's logs only: the address the app should trust is still the peer.
    expect(s.headers['x-real-ip']).toBe('127.0.0.1');
  });

  it('does not believe X-Forwarded-Proto, X-Forwarded-Host or Forwarded from an untrusted peer', async () => {
    const s = await seenBy(plain, ['GET / HTTP/1.1', 'Host: real.example', 'X-Forwarded-Proto: https', 'X-Forwarded-Host: evil.example', 'Forwarded: for=6.6.6.6;proto=https;host=evil.example']);
    expect(s.headers['x-forwarded-proto']).toBe('http');
    expect(s.headers['x-forwarded-host']).toBe('real.example');
    expect(s.headers.forwarded).toBeUndefined();
    expect(JSON.stringify(s.rawHeaders)).not.toContain('evil.example');
    expect(JSON.stringify(s.rawHeaders)).not.toContain('6.6.6.6');
  });
});

describe('forwarded headers, --trusted-proxies 127.0.0.1/32', () => {
  it('appends the peer to a client-sent X-Forwarded-For', async () => {
    const s = await seenBy(trusting, ['GET / HTTP/1.1', 'Host: t', 'X-Forwarded-For: 203.0.113.7']);
    expect(s.headers['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(s.headers['x-real-ip']).toBe('203.0.113.7');
  });

  it('X-Real-IP is the rightmost untrusted address of the chain', async () => {
    // 198.51.100.1 is what the client claims; 203.0.113.7 is what the (trusted) peer saw.
    const s = await seenBy(trusting, ['GET / HTTP/1.1', 'Host: t', 'X-Forwarded-For: 198.51.100.1, 203.0.113.7, 127.0.0.1']);
    expect(s.headers['x-forwarded-for']).toBe('198.51.100.1, 203.0.113.7, 127.0.0.1, 127.0.0.1');
    expect(s.headers['x-real-ip']).toBe('203.0.113.7');
  });

  it('keeps X-Forwarded-Proto and X-Forwarded-Host from the trusted peer', async () => {
    const s = await seenBy(trusting, ['GET / HTTP/1.1', 'Host: internal:3000', 'X-Forwarded-Proto: https', 'X-Forwarded-Host: shop.example.com']);
    expect(s.headers['x-forwarded-proto']).toBe('https');
    expect(s.headers['x-forwarded-host']).toBe('shop.example.com');
    expect(s.headers.host).toBe('internal:3000');
  });

  it('without a client chain, the peer itself is the client', async () => {
    const s = await seenBy(trusting, ['GET / HTTP/1.1', 'Host: t']);
    expect(s.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(s.headers['x-real-ip']).toBe('127.0.0.1');
    expect(s.headers['x-forwarded-proto']).toBe('http');
  });
});

describe('hop-by-hop headers', () => {
  it('are stripped from the request, with every field Connection names', async () => {
    const s = await seenBy(
      plain,
      [
        'POST /upload HTTP/1.1',
        'Host: t',
        'Connection: keep-alive, X-Conn-Named, X-Other-Named',
        'Keep-Alive: timeout=300',
        'X-Conn-Named: secret-hop',
        'X-Other-Named: another-hop',
        'TE: trailers',
        'Upgrade: h2c',
        'Proxy-Connection: keep-alive',
        'X-End-To-End: kept',
        'Transfer-Encoding: chunked',
      ],
      '5\r\nhello\r\n0\r\n\r\n',
    );
    expect(s.body).toBe('hello');
    expect(s.headers['x-end-to-end']).toBe('kept');
    for (const h of ['keep-alive', 'x-conn-named', 'x-other-named', 'te', 'upgrade', 'proxy-connection']) {
      expect(s.headers[h], h).toBeUndefined();
    }
    // The Connection the upstream sees is the pool's own (keep-alive), never the client's list.
    expect(s.headers.connection ?? 'keep-alive').toBe('keep-alive');
    // The upstream sees exactly one Transfer-Encoding: the one undici frames the streamed body with.
    const te = s.rawHeaders.filter((_, i) => i % 2 === 0).filter((n) => n.toLowerCase() === 'transfer-encoding');
    expect(te).toHaveLength(1);
    expect(s.headers['transfer-encoding']).toBe('chunked');
    expect(JSON.stringify(s.rawHeaders)).not.toContain('hop');
  });

  it('are stripped from the response, with every field Connection names', async () => {
    // HTTP/1.0 client: were the upstream's Transfer-Encoding passed on, Node would frame the body
    // chunked for it; stripped, the body is delimited by the close (RFC 9112 6.3).
    const r = await rawRequest(hops.port, 'GET / HTTP/1.0\r\nHost: t\r\n\r\n', { waitMs: 3000 });
    const p = parseHead(r.text);
    expect(p.status).toBe(200);
    expect(p.headers['x-end-to-end']).toEqual(['kept']);
    for (const h of ['keep-alive', 'x-conn-named', 'proxy-connection', 'te', 'upgrade', 'transfer-encoding']) {
      expect(p.headers[h], h).toBeUndefined();
    }
    expect(p.headers.connection).toEqual(['close']);
    expect(p.body).toBe('hello');
    expect(r.text).not.toContain('must-not-pass');
  });

  it('response hop-by-hop fields are stripped for an HTTP/1.1 client too', async () => {
    const r = await rawRequest(hops.port, 'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', { waitMs: 3000 });
    const p = parseHead(r.text);
    expect(p.status).toBe(200);
    for (const h of ['keep-alive', 'x-conn-named', 'proxy-connection', 'te', 'upgrade']) {
      expect(p.headers[h], h).toBeUndefined();
    }
    // Node's own framing, once: the upstream's Transfer-Encoding was not added beside it.
    expect(p.headers['transfer-encoding']).toEqual(['chunked']);
    expect(p.headers.connection).toEqual(['close']);
    expect(r.text).not.toContain('must-not-pass');
  });
});
