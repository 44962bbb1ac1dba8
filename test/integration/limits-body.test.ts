/**
 * --client-max-body-size (nginx's client_max_body_size): an announced length over it is answered 413
 * before the app sees anything, and the unread body is never parsed as a next request; a chunked body
 * is counted as it streams and the upstream request is aborted at the limit; `Expect: 100-continue`
 * is answered by the gateway.
 */
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { parseHead, rawRequest } from '../helpers/raw.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

const LIMIT = 1024;

/** What the app saw of one request: its path, and how it ended. */
interface Seen {
  url: string;
  bytes: number;
  ended: Promise<'complete' | 'aborted'>;
}

/** A client socket the test drives step by step. */
interface Conn {
  socket: net.Socket;
  text(): string;
  /** Resolves with everything received once `re` matches it; rejects after `ms`. */
  waitFor(re: RegExp, ms?: number): Promise<string>;
  /** Resolves true when the gateway closed the connection within `ms`, false otherwise. */
  closedWithin(ms: number): Promise<boolean>;
}

async function connect(port: number): Promise<Conn> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  let text = '';
  let closed = false;
  const waiters = new Set<() => void>();
  const poke = () => waiters.forEach((w) => w());
  socket.on('data', (c: Buffer) => {
    text += c.toString('latin1');
    poke();
  });
  const onClose = () => {
    closed = true;
    poke();
  };
  socket.on('end', onClose);
  socket.on('close', onClose);
  const until = (done: () => boolean, ms: number): Promise<boolean> =>
    new Promise((resolve) => {
      const check = () => {
        if (!done()) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(true);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        resolve(false);
      }, ms);
      waiters.add(check);
      check();
    });
  return {
    socket,
    text: () => text,
    async waitFor(re, ms = 3000) {
      if (!(await until(() => re.test(text), ms))) throw new Error(`no ${re} within ${ms} ms; got ${JSON.stringify(text)}`);
      return text;
    },
    closedWithin: (ms) => until(() => closed, ms),
  };
}

/** Polls `cond` until it holds; throws after `ms`. */
async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('request body limit', () => {
  const tmp = tempDir();
  const seen: Seen[] = [];
  let upstream: Upstream;
  let gw: RunningGateway;

  beforeAll(async () => {
    upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
      const entry: Seen = {
        url: req.url ?? '',
        bytes: 0,
        ended: new Promise((resolve) => {
          req.on('end', () => resolve('complete'));
          req.on('close', () => resolve(req.complete ? 'complete' : 'aborted'));
        }),
      };
      seen.push(entry);
      // /early answers its head before reading the body, as an app streaming a response would.
      if (req.url === '/early') {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.write('started\n');
      }
      req.on('data', (c: Buffer) => (entry.bytes += c.length));
      req.on('end', () => res.end(`got ${entry.bytes}`));
    });
    gw = await startGateway(['--upstream', upstream.socketPath, '--client-max-body-size', '1k', '--access-log', 'off']);
  });

  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
    tmp.cleanup();
  });

  const urls = () => seen.map((s) => s.url);
  const find = (url: string) => seen.find((s) => s.url === url);

  it('forwards a body within the limit (the control for the refusals below)', async () => {
    const body = 'x'.repeat(LIMIT);
    const r = await rawRequest(gw.port, `POST /small HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    expect(r.status).toBe(200);
    expect(parseHead(r.text).body).toBe(`got ${LIMIT}`);
  });

  it('answers a Content-Length over the limit with 413 and Connection: close, and never parses its body as a request', async () => {
    // The body is a complete request of its own: a gateway that answered early and then went on
    // parsing the connection would forward it.
    const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: example.test\r\n\r\n';
    const body = smuggled + 'y'.repeat(2000 - smuggled.length);
    const r = await rawRequest(gw.port, [`POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: ${body.length}\r\n\r\n`, body]);
    expect(r.status).toBe(413);
    expect(parseHead(r.text).headers.connection).toEqual(['close']);
    expect(r.closed).toBe(true);
    // Exactly one response on the connection.
    expect(r.text.match(/HTTP\/1\.1 \d{3}/g)).toHaveLength(1);
    expect(urls()).not.toContain('/upload');
    expect(urls()).not.toContain('/smuggled');
  });

  it('answers a chunked body that grows past the limit with 413 and aborts the upstream request', async () => {
    const c = await connect(gw.port);
    c.socket.write('POST /chunked HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n');
    const chunk = `258\r\n${'z'.repeat(600)}\r\n`;
    // The first chunk, within the limit, starts the upstream request; once the app holds it, the
    // second chunk passes the limit.
    c.socket.write(chunk);
    await until(() => find('/chunked') !== undefined);
    c.socket.write(chunk);
    await c.waitFor(/\r\n\r\n/);
    expect(parseHead(c.text()).status).toBe(413);
    expect(await c.closedWithin(2000)).toBe(true);
    const entry = find('/chunked');
    expect(entry).toBeDefined();
    expect(await entry?.ended).toBe('aborted');
    expect(entry?.bytes).toBeLessThanOrEqual(LIMIT);
    c.socket.destroy();
  });

  it('cuts the connection when a chunked body passes the limit after the response started', async () => {
    const c = await connect(gw.port);
    // A first chunk within the limit: the upstream request starts and the app answers its head.
    c.socket.write('POST /early HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    await c.waitFor(/started\n/);
    expect(parseHead(c.text()).status).toBe(200);
    const chunk = `258\r\n${'z'.repeat(600)}\r\n`;
    c.socket.write(chunk);
    c.socket.write(chunk);
    expect(await c.closedWithin(2000)).toBe(true);
    // Truncated, never ended cleanly: no final chunk, no app answer.
    expect(c.text()).not.toContain('0\r\n\r\n');
    expect(c.text()).not.toContain('got ');
    const entry = find('/early');
    expect(await entry?.ended).toBe('aborted');
    c.socket.destroy();
  });

  it('answers Expect: 100-continue with a too-large Content-Length with 413 and no 100 Continue', async () => {
    const c = await connect(gw.port);
    c.socket.write(`POST /expect-big HTTP/1.1\r\nHost: example.test\r\nContent-Length: ${LIMIT + 1}\r\nExpect: 100-continue\r\n\r\n`);
    await c.waitFor(/\r\n\r\n/);
    expect(c.text()).not.toMatch(/100 Continue/i);
    expect(parseHead(c.text()).status).toBe(413);
    expect(await c.closedWithin(2000)).toBe(true);
    expect(urls()).not.toContain('/expect-big');
    c.socket.destroy();
  });

  it('answers Expect: 100-continue with a small Content-Length with 100 Continue, then the final answer', async () => {
    const c = await connect(gw.port);
    c.socket.write('POST /expect-small HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    await c.waitFor(/^HTTP\/1\.1 100 Continue\r\n\r\n/);
    // Nothing but the interim response until the body is sent.
    expect(c.text()).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    c.socket.write('hello');
    await c.waitFor(/got 5$/);
    expect(c.text().slice('HTTP/1.1 100 Continue\r\n\r\n'.length)).toMatch(/^HTTP\/1\.1 200 /);
    expect(await find('/expect-small')?.ended).toBe('complete');
    c.socket.destroy();
  });
});
