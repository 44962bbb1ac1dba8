/**
 * An app server that dies with a request in flight (the request reached it, no response came):
 * the request is sent again once only when that is safe (a replayable method, a body that was
 * kept); a POST is never sent twice and gets 502.
 */
import { join } from 'node:path';
import { Pool, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

describe('replay after the app server died mid-request', () => {
  const tmp = tempDir();
  let app: Upstream;
  let gw: RunningGateway;
  /** Every request the app received: "METHOD path body". */
  const seen: string[] = [];

  beforeAll(async () => {
    app = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        const key = `${req.method} ${req.url}`;
        const times = seen.filter((s) => s.startsWith(`${key} `)).length;
        seen.push(`${key} ${body}`);
        // /head-die-once, /head-die-always: the head goes out, then the connection dies before the body
        // (Unicorn writes the head and the body apart; a SIGKILL can fall between).
        if (req.url?.startsWith('/head-die-always') || (req.url?.startsWith('/head-die-once') && times === 0)) {
          res.writeHead(200, { 'Content-Length': '100' });
          res.flushHeaders();
          setTimeout(() => req.socket.destroy(), 20);
          return;
        }
        // /die-once: the first attempt kills the connection without a response.
        if (req.url?.startsWith('/die-always') || (req.url?.startsWith('/die-once') && times === 0)) {
          req.socket.destroy();
          return;
        }
        res.end(`answered ${body}`);
      });
    });
    gw = await startGateway(['--upstream', app.socketPath, '--access-log', 'off', '--replay-buffer-size', '1k']);
  });

  afterAll(async () => {
    await gw?.stop();
    await app?.close();
    tmp.cleanup();
  });

  const count = (prefix: string) => seen.filter((s) => s.startsWith(prefix)).length;

  it('replays a GET once', async () => {
    const r = await request(`${gw.url}/die-once/get`);
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('answered ');
    expect(count('GET /die-once/get ')).toBe(2);
  });

  it('replays a PUT with its kept body, byte for byte', async () => {
    const r = await request(`${gw.url}/die-once/put`, { method: 'PUT', body: 'the-body' });
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('answered the-body');
    expect(seen.filter((s) => s.startsWith('PUT /die-once/put '))).toEqual(['PUT /die-once/put the-body', 'PUT /die-once/put the-body']);
  });

  it('never sends a POST twice: 502', async () => {
    const r = await request(`${gw.url}/die-once/post`, { method: 'POST', body: 'order-42' });
    expect(r.statusCode).toBe(502);
    await r.body.dump();
    expect(count('POST /die-once/post ')).toBe(1);
  });

  it('does not replay a body larger than the replay buffer: 502', async () => {
    const r = await request(`${gw.url}/die-once/big`, { method: 'PUT', body: 'x'.repeat(4096) });
    expect(r.statusCode).toBe(502);
    await r.body.dump();
    expect(count('PUT /die-once/big ')).toBe(1);
  });

  it('replays at most once: 502 when the second attempt dies too', async () => {
    const r = await request(`${gw.url}/die-always/get`);
    expect(r.statusCode).toBe(502);
    await r.body.dump();
    expect(count('GET /die-always/get ')).toBe(2);
  });

  it('an app that dies between its head and its body: a GET is replayed (200), the client saw nothing of the first answer', async () => {
    const r = await request(`${gw.url}/head-die-once/get`);
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('answered ');
    expect(count('GET /head-die-once/get ')).toBe(2);
  });

  it('an app that dies between its head and its body: a POST gets a clean 502 on a connection that stays usable', async () => {
    const pool = new Pool(gw.url, { connections: 1 });
    try {
      const r = await pool.request({ path: '/head-die-always/post', method: 'POST', body: 'order-43' });
      expect(r.statusCode).toBe(502);
      expect(r.headers.connection).not.toBe('close');
      expect(await r.body.text()).toContain('502 Bad Gateway');
      expect(count('POST /head-die-always/post ')).toBe(1);
      // The same connection carries the next request.
      const next = await pool.request({ path: '/ok', method: 'GET' });
      expect(next.statusCode).toBe(200);
      await next.body.dump();
    } finally {
      await pool.close();
    }
  });
});
