/**
 * Client deadlines, as nginx has them: client_header_timeout and client_body_timeout answer 408 and
 * close, so a slowloris client does not hold a connection (or an upstream request) forever;
 * keepalive_timeout closes an idle keep-alive connection.
 */
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { parseHead, rawRequest } from '../helpers/raw.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

interface Seen {
  url: string;
  ended: Promise<'complete' | 'aborted'>;
}

/** A client socket that records what arrives and when the gateway closes it. */
async function connect(port: number): Promise<{ socket: net.Socket; text: () => string; closed: Promise<number> }> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  let text = '';
  socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
  // Resolves with the time of the gateway's FIN (or reset).
  const closed = new Promise<number>((resolve) => {
    socket.once('end', () => resolve(performance.now()));
    socket.once('close', () => resolve(performance.now()));
  });
  return { socket, text: () => text, closed };
}

/** Resolves with `p`'s value, or with `undefined` after `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([p, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms))]);
}

describe('client deadlines', () => {
  const tmp = tempDir();
  const seen: Seen[] = [];
  let upstream: Upstream;
  let gw: RunningGateway;

  beforeAll(async () => {
    upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
      seen.push({
        url: req.url ?? '',
        ended: new Promise((resolve) => {
          req.on('end', () => resolve('complete'));
          req.on('close', () => resolve(req.complete ? 'complete' : 'aborted'));
        }),
      });
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    gw = await startGateway(['--upstream', upstream.socketPath, '--client-header-timeout', '1s', '--client-body-timeout', '1s', '--keepalive-timeout', '1s', '--access-log', 'off']);
  });

  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
    tmp.cleanup();
  });

  it('answers 408 and closes when the request head does not arrive within --client-header-timeout', async () => {
    const c = await connect(gw.port);
    const sent = performance.now();
    c.socket.write('GET /slow-head HTTP/1.1\r\nHost: example.test\r\n');
    const closedAt = await within(c.closed, 5000);
    expect(closedAt).toBeDefined();
    // Not refused at once: the deadline is what closed it.
    expect((closedAt as number) - sent).toBeGreaterThan(500);
    expect(parseHead(c.text()).status).toBe(408);
    expect(seen.map((s) => s.url)).not.toContain('/slow-head');
    c.socket.destroy();
  });

  it('answers 408 to a client that trickles its head: the deadline is for the whole head, not between reads', async () => {
    const c = await connect(gw.port);
    c.socket.write('GET /trickle HTTP/1.1\r\nHost: example.test\r\n');
    let n = 0;
    const drip = setInterval(() => {
      if (!c.socket.destroyed) c.socket.write(`X-Drip-${n++}: 1\r\n`);
    }, 200);
    const closedAt = await within(c.closed, 4000);
    clearInterval(drip);
    expect(closedAt).toBeDefined();
    expect(parseHead(c.text()).status).toBe(408);
    expect(seen.map((s) => s.url)).not.toContain('/trickle');
    c.socket.destroy();
  });

  it('answers 408 and aborts the upstream request when the body stops for --client-body-timeout', async () => {
    const c = await connect(gw.port);
    c.socket.write('POST /slow-body HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100\r\n\r\n0123456789');
    const closedAt = await within(c.closed, 5000);
    expect(closedAt).toBeDefined();
    expect(parseHead(c.text()).status).toBe(408);
    // The app had the request in hand; it must be told the request is gone, not left waiting.
    const entry = seen.find((s) => s.url === '/slow-body');
    expect(entry).toBeDefined();
    expect(await within(entry?.ended as Promise<string>, 2000)).toBe('aborted');
    c.socket.destroy();
  });

  it('closes an idle keep-alive connection after --keepalive-timeout', async () => {
    const c = await connect(gw.port);
    c.socket.write('GET /first HTTP/1.1\r\nHost: example.test\r\n\r\n');
    // The connection is kept for a second request...
    await new Promise((resolve) => setTimeout(resolve, 200));
    c.socket.write('GET /second HTTP/1.1\r\nHost: example.test\r\n\r\n');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(c.text().match(/HTTP\/1\.1 200 /g)).toHaveLength(2);
    // ...then closed once idle, silently: an idle connection has no request to answer 408 to.
    expect(await within(c.closed, 4000)).toBeDefined();
    expect(c.text().match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
    c.socket.destroy();
  });

  it('keeps serving new connections after closing the slow ones', async () => {
    const r = await rawRequest(gw.port, 'GET /after HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n');
    expect(r.status).toBe(200);
  });
});
