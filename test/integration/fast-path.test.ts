/**
 * The client fast path (src/proxy/fast-path.ts): the common request is parsed off the socket and
 * answered without Node's http module, byte for byte as Node's server answers it; every other
 * request goes to Node's server with its connection, its bytes read again from the first.
 *
 * Two gateways run in this process on one app: the fast path on (the default) and off. Which side
 * served each request is recorded from the request object ProxyServer gets.
 */
import type http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { configFrom } from '../../src/config/resolve.js';
import { createLogger } from '../../src/log/logger.js';
import { AccessLog } from '../../src/proxy/access-log.js';
import { FastRequest } from '../../src/proxy/fast-request.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { framingAnswer, httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

let tmp: ReturnType<typeof tempDir>;
let app: Upstream;
let fast: { proxy: ProxyServer; port: number };
let node: { proxy: ProxyServer; port: number };
/** `fast GET /x` or `node POST /y`, per request the fast-path gateway got, in order. */
let served: string[];
/** The same for the gateway with the fast path off. */
let servedOff: string[];
/** What the app read, per request: method, URL, body. */
let seen: string[];

async function gateway(extra: string[]): Promise<{ proxy: ProxyServer; port: number }> {
  return gatewayTo(app.socketPath, extra);
}

async function gatewayTo(upstream: string, extra: string[]): Promise<{ proxy: ProxyServer; port: number }> {
  const { config, problems } = configFrom(['--upstream', upstream, '--listen', '127.0.0.1:0', '--access-log', 'off', '--workers', '0', '--client-header-timeout', '1s', ...extra], () => undefined);
  if (!config) throw new Error(JSON.stringify(problems));
  const proxy = new ProxyServer(config, createLogger('silent'), new AccessLog('off', 'combined'));
  const port = (await proxy.listen())[0]!.port;
  return { proxy, port };
}

beforeAll(async () => {
  tmp = tempDir('gw-fast-path-');
  app = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${body}`);
      const url = req.url ?? '/';
      if (framingAnswer(req, res)) return;
      if (url === '/unsized') {
        // No Content-Length: chunked to an HTTP/1.1 client.
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('one piece');
      } else if (url === '/empty') {
        res.writeHead(200, { 'X-Empty': 'yes' });
        res.end();
      } else if (url === '/dated') {
        res.writeHead(200, { Date: 'Tue, 01 Jan 2030 00:00:00 GMT', 'Content-Length': '2' });
        res.end('ok');
      } else if (url === '/large') {
        res.writeHead(200, { 'Content-Length': String(3 * 1024 * 1024) });
        res.end(Buffer.alloc(3 * 1024 * 1024, 97));
      } else if (url.startsWith('/slow')) {
        setTimeout(() => res.end(`slow ${url}`), 150);
      } else {
        res.end(`${req.method} ${url} ${body}`);
      }
    });
  });
  fast = await gateway([]);
  node = await gateway(['--client-fast-path', 'false']);
  for (const g of [fast, node]) {
    const p = g.proxy as unknown as { handle: (req: http.IncomingMessage, res: http.ServerResponse) => void };
    const handle = p.handle.bind(g.proxy);
    // handle() runs again for a pipelined request that waited its turn: each request counts once.
    const counted = new WeakSet<object>();
    p.handle = (req, res) => {
      if (!counted.has(req)) (g === fast ? served : servedOff).push(`${req instanceof FastRequest ? 'fast' : 'node'} ${req.method} ${req.url}`);
      counted.add(req);
      handle(req, res);
    };
  }
});

afterAll(async () => {
  await fast?.proxy.stop(false);
  await node?.proxy.stop(false);
  await app?.close();
  tmp?.cleanup();
});

beforeEach(() => {
  served = [];
  servedOff = [];
  seen = [];
});

/**
 * Writes `parts` on one connection (a pause between them), then reads until the gateway closes it
 * (the last request says Connection: close) or `waitMs` passes.
 */
function exchange(port: number, parts: (string | Buffer)[], opts: { pauseMs?: number; waitMs?: number; halfClose?: boolean } = {}): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let text = '';
    let closed = false;
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closed });
    };
    const timer = setTimeout(done, opts.waitMs ?? 3000);
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('end', () => {
      closed = true;
      done();
    });
    socket.on('connect', async () => {
      for (const [i, part] of parts.entries()) {
        if (i > 0) await new Promise((r) => setTimeout(r, opts.pauseMs ?? 100));
        socket.write(part);
      }
      if (opts.halfClose) socket.end();
    });
  });
}

const get = (path: string, more = '') => `GET ${path} HTTP/1.1\r\nHost: example.test\r\n${more}\r\n`;
const req = (method: string, path: string, more = '') => `${method} ${path} HTTP/1.1\r\nHost: example.test\r\n${more}\r\n`;
const LAST = 'Connection: close\r\n';
const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
const undated = (text: string) => text.replace(/\r\nDate: [^\r]*/g, '\r\nDate: (now)');

describe('the fast path answers as Node does', () => {
  const cases: [string, string][] = [];
  for (const path of ['/fixed', '/unsized', '/chunked', '/empty', '/204', '/304', '/dated', '/trailers', '/missing?q=1']) {
    for (const method of ['GET', 'HEAD', 'DELETE']) cases.push([method, path]);
  }

  it.each(cases)('%s %s: the same bytes, kept alive and then closed', async (method, path) => {
    // Two requests on one connection: the first kept alive, the second with Connection: close.
    const parts = [req(method, path), req(method, path, LAST)];
    const viaFast = await exchange(fast.port, parts);
    const viaNode = await exchange(node.port, parts);
    expect(viaFast.closed).toBe(true);
    expect(statuses(viaFast.text)).toHaveLength(2);
    expect(undated(viaFast.text)).toBe(undated(viaNode.text));
    expect(served).toEqual([`fast ${method} ${path}`, `fast ${method} ${path}`]);
  });

  it('sends a large response whole, the client reading it as it comes', async () => {
    const r = await exchange(fast.port, [get('/large', LAST)], { waitMs: 10_000 });
    expect(r.closed).toBe(true);
    expect(r.text.length - r.text.indexOf('\r\n\r\n') - 4).toBe(3 * 1024 * 1024);
    expect(served).toEqual(['fast GET /large']);
  });

  it('answers a client that half-closed after its request, then closes', async () => {
    const r = await exchange(fast.port, [get('/slow-fin')], { halfClose: true });
    expect(r.closed).toBe(true);
    expect(r.text).toMatch(/^HTTP\/1\.1 200 [\s\S]*slow \/slow-fin$/);
    expect(served).toEqual(['fast GET /slow-fin']);
  });

  it('serves a request sent while the one before is in flight, after it, in order', async () => {
    const r = await exchange(fast.port, [get('/slow-1'), get('/after-1', LAST)], { pauseMs: 50 });
    expect(statuses(r.text)).toEqual([200, 200]);
    expect(r.text.indexOf('slow /slow-1')).toBeLessThan(r.text.indexOf('GET /after-1'));
    expect(seen.map((s) => s.split(' ')[1])).toEqual(['/slow-1', '/after-1']);
    expect(served).toEqual(['fast GET /slow-1', 'fast GET /after-1']);
  });

  it('answers 408 on a connection that sends nothing within clientHeaderTimeout, as Node does', async () => {
    const viaFast = await exchange(fast.port, [], { waitMs: 3000 });
    const viaNode = await exchange(node.port, [], { waitMs: 3000 });
    expect(viaFast.closed).toBe(true);
    expect(statuses(viaFast.text)).toEqual([408]);
    expect(undated(viaFast.text)).toBe(undated(viaNode.text));
  });
});

describe('what the fast path hands to Node with its connection', () => {
  it('a request with a body, after fast ones: the app reads the body', async () => {
    const r = await exchange(fast.port, [get('/a'), `POST /b HTTP/1.1\r\nHost: example.test\r\nContent-Length: 5\r\n\r\nhello`, get('/c', LAST)]);
    expect(statuses(r.text)).toEqual([200, 200, 200]);
    expect(seen).toEqual(['GET /a ', 'POST /b hello', 'GET /c ']);
    // Once handed over, the connection stays with Node's server.
    expect(served).toEqual(['fast GET /a', 'node POST /b', 'node GET /c']);
  });

  it('a head without its body yet (the body comes later)', async () => {
    const r = await exchange(fast.port, ['POST /late HTTP/1.1\r\nHost: example.test\r\nContent-Length: 4\r\nConnection: close\r\n\r\n', 'body']);
    expect(statuses(r.text)).toEqual([200]);
    expect(seen).toEqual(['POST /late body']);
    expect(served).toEqual(['node POST /late']);
  });

  it('pipelined requests in one packet: answered in order', async () => {
    const r = await exchange(fast.port, [get('/p1') + get('/p2') + get('/p3', LAST)]);
    expect(statuses(r.text)).toEqual([200, 200, 200]);
    expect(seen.map((s) => s.split(' ')[1])).toEqual(['/p1', '/p2', '/p3']);
    expect(served).toEqual(['node GET /p1', 'node GET /p2', 'node GET /p3']);
  });

  it('a head split over two packets', async () => {
    const r = await exchange(fast.port, ['GET /split HTTP/1.1\r\nHost: exa', `mple.test\r\n${LAST}\r\n`]);
    expect(statuses(r.text)).toEqual([200]);
    expect(served).toEqual(['node GET /split']);
  });

  it('Expect: 100-continue', async () => {
    const r = await exchange(fast.port, ['PUT /cont HTTP/1.1\r\nHost: example.test\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n', 'ok']);
    expect(statuses(r.text)).toEqual([100, 200]);
    expect(seen).toEqual(['PUT /cont ok']);
  });

  it('more fields than llhttp hands over at once, HTTP/1.0, a missing Host, a bad header and a bad request line: answered as Node answers them', async () => {
    const many = Array.from({ length: 40 }, (_, i) => `X-Field-${i}: ${i}\r\n`).join('');
    const requests = [`GET /many HTTP/1.1\r\nHost: a\r\n${many}\r\n`, 'GET /old HTTP/1.0\r\n\r\n', 'GET /nohost HTTP/1.1\r\n\r\n', 'GET /bad HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n', 'GET  HTTP/1.1\r\nHost: a\r\n\r\n'];
    for (const text of requests) {
      const viaFast = await exchange(fast.port, [text], { waitMs: 1000 });
      const viaNode = await exchange(node.port, [text], { waitMs: 1000 });
      expect(undated(viaFast.text)).toBe(undated(viaNode.text));
    }
    // 41 fields: more than llhttp hands over at once; Node's server takes them.
    expect(served).toEqual(['node GET /many', 'node GET /old']);
    // The shared parser is sound after the errors: the next fast request parses.
    expect((await exchange(fast.port, [get('/next', LAST)])).text).toMatch(/^HTTP\/1\.1 200 /);
    expect(served).toEqual(['node GET /many', 'node GET /old', 'fast GET /next']);
  });

  it('a WebSocket upgrade after a fast request on the same connection reaches the app', async () => {
    const upgrades: string[] = [];
    app.server.once('upgrade', (r: http.IncomingMessage, socket: net.Socket) => {
      upgrades.push(`${r.url} ${r.headers.upgrade}`);
      socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi');
    });
    const r = await exchange(fast.port, [get('/before'), get('/ws', 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n')]);
    expect(statuses(r.text)).toEqual([200, 101]);
    expect(r.text.endsWith('hi')).toBe(true);
    expect(upgrades).toEqual(['/ws websocket']);
    expect(served).toEqual(['fast GET /before']);
  });
});

describe('a held request whose client half-closes', () => {
  it.each([['fast', []], ['node', ['--client-fast-path', 'false']]])('%s: dropped from the gate, and the connection closed without an answer', async (_side, extra) => {
    const held = await gatewayTo(join(tmp.dir, 'absent.sock'), extra as string[]);
    try {
      const r = await exchange(held.port, [get('/held')], { halfClose: true, waitMs: 3000 });
      expect(r.closed).toBe(true);
      expect(r.text).toBe('');
      expect(held.proxy.gate.depth).toBe(0);
    } finally {
      await held.proxy.stop(false);
    }
  });
});

describe('switched off', () => {
  it('a reload with clientFastPath false: the next request on an open connection goes to Node', async () => {
    const config = (on: boolean) => configFrom(['--upstream', app.socketPath, '--listen', '127.0.0.1:0', '--access-log', 'off', '--workers', '0', '--client-header-timeout', '1s', '--client-fast-path', String(on)], () => undefined).config!;
    const r = exchange(fast.port, [get('/before-reload'), get('/after-reload', LAST)], { pauseMs: 300 });
    await new Promise((resolve) => setTimeout(resolve, 150));
    fast.proxy.reconfigure(config(false), {});
    try {
      expect(statuses((await r).text)).toEqual([200, 200]);
    } finally {
      fast.proxy.reconfigure(config(true), {});
    }
    expect(served).toEqual(['fast GET /before-reload', 'node GET /after-reload']);
  });

  it('--client-fast-path false: Node serves every request', async () => {
    const r = await exchange(node.port, [get('/x'), get('/y', LAST)]);
    expect(statuses(r.text)).toEqual([200, 200]);
    expect(servedOff).toEqual(['node GET /x', 'node GET /y']);
  });
});
