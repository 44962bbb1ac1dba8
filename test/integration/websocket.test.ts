/**
 * WebSocket through the gateway (ActionCable's path): undici's WebSocket client on one side, an
 * RFC 6455 echo server on the app socket on the other. Messages flow both ways, a close on either
 * side closes the other, nothing is left open in the gateway afterwards, and an upgrade to a missing
 * app socket is answered 502.
 */
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { WebSocket } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWsEcho, type WsEchoServer, type WsSession } from '../fixtures/ws-echo.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { parseHead, rawRequest } from '../helpers/raw.js';
import { tempDir } from '../helpers/upstream.js';

let tmp: ReturnType<typeof tempDir>;
let app: WsEchoServer;
let gw: RunningGateway;

beforeAll(async () => {
  tmp = tempDir();
  app = await startWsEcho(join(tmp.dir, 'cable.sock'), { greeting: 'welcome' });
  gw = await startGateway(['--upstream', app.socketPath, '--access-log', 'off']);
});

afterAll(async () => {
  await gw?.stop();
  await app?.stop();
  tmp?.cleanup();
});

interface Client {
  ws: WebSocket;
  messages: (string | Buffer)[];
  /** Resolves with the close event's code and whether the closing handshake completed. */
  closed: Promise<{ code: number; reason: string; wasClean: boolean }>;
  /** Resolves when `n` messages have arrived. */
  received(n: number): Promise<(string | Buffer)[]>;
}

let nextId = 0;

/** Resolves with the upstream session whose request target carries `id` (sessions open concurrently). */
function sessionFor(id: string): Promise<WsSession> {
  return new Promise((resolve) => {
    const check = (s: WsSession) => {
      if (!s.head.split('\r\n')[0]?.includes(`id=${id} `)) return;
      app.off('session', check);
      resolve(s);
    };
    app.on('session', check);
  });
}

/** Opens a client through the gateway; resolves once open, with the upstream's session for it. */
async function connect(path = '/cable'): Promise<{ client: Client; session: WsSession }> {
  const id = String(++nextId);
  const target = `${path}${path.includes('?') ? '&' : '?'}id=${id}`;
  const sessionP = sessionFor(id);
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}${target}`);
  ws.binaryType = 'arraybuffer';
  const messages: (string | Buffer)[] = [];
  const waiters: (() => void)[] = [];
  ws.addEventListener('message', (ev) => {
    const data = ev.data as string | ArrayBuffer;
    messages.push(typeof data === 'string' ? data : Buffer.from(data));
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<{ code: number; reason: string; wasClean: boolean }>((resolve) => ws.addEventListener('close', (ev) => resolve({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean })));
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('error', () => reject(new Error('websocket failed to open')));
  });
  const received = async (n: number) => {
    const deadline = Date.now() + 3000;
    while (messages.length < n) {
      if (Date.now() > deadline) throw new Error(`only ${messages.length} of ${n} messages arrived`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return messages;
  };
  return { client: { ws, messages, closed, received }, session: await sessionP };
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Waits for the gateway's fd count to come back to at most `limit`; returns the last count. */
async function settleFds(pid: number, limit: number, timeoutMs = 3000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let n = fdCount(pid);
  while (n > limit && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    n = fdCount(pid);
  }
  return n;
}

const withTimeout = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms))]);

describe('websocket', () => {
  it('carries messages both ways: text, binary, large, and a server push', async () => {
    const { client, session } = await connect('/cable?token=1');
    // The upgrade reached the app with the path, the upgrade fields and our forwarded headers.
    expect(session.head.split('\r\n')[0]).toMatch(/^GET \/cable\?token=1&id=\d+ HTTP\/1\.1$/);
    expect(session.headers.upgrade?.toLowerCase()).toBe('websocket');
    expect(session.headers.connection?.toLowerCase()).toContain('upgrade');
    expect(session.headers['x-forwarded-for']).toBe('127.0.0.1');

    // Server → client without any prompt (the greeting), then echoes of what the client sends.
    await client.received(1);
    expect(client.messages[0]).toBe('welcome');
    const big = Buffer.alloc(200_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    client.ws.send('hello');
    client.ws.send(new Uint8Array([0, 1, 2, 255]));
    client.ws.send(big);
    client.ws.send('ünïcödé ✓');
    const got = await client.received(5);
    expect(got[1]).toBe('hello');
    expect(Buffer.compare(got[2] as Buffer, Buffer.from([0, 1, 2, 255]))).toBe(0);
    expect((got[3] as Buffer).length).toBe(big.length);
    expect(Buffer.compare(got[3] as Buffer, big)).toBe(0);
    expect(got[4]).toBe('ünïcödé ✓');

    session.send('pushed by the app');
    await client.received(6);
    expect(client.messages[5]).toBe('pushed by the app');

    client.ws.close(1000, 'bye');
    expect((await withTimeout(client.closed, 2000, 'client close event')).code).toBe(1000);
    await withTimeout(session.closed, 2000, 'upstream socket close');
  });

  it('when the client closes, the upstream socket closes', async () => {
    const { client, session } = await connect();
    await client.received(1);
    const clientCode = new Promise<number>((resolve) => app.once('client-close', resolve));
    client.ws.close(4000, 'leaving');
    expect(await withTimeout(clientCode, 2000, 'close frame at the upstream')).toBe(4000);
    await withTimeout(session.closed, 2000, 'upstream socket close');
    expect(session.socket.destroyed).toBe(true);
    const ev = await withTimeout(client.closed, 2000, 'client close event');
    expect(ev.code).toBe(4000);
    expect(ev.wasClean).toBe(true);
  });

  it('when the client vanishes without a close frame, the upstream socket closes', async () => {
    // A raw client: handshake, then the TCP connection just goes (a laptop lid, a killed tab).
    const id = String(++nextId);
    const sessionP = sessionFor(id);
    const socket = net.connect({ port: gw.port, host: '127.0.0.1' });
    socket.on('error', () => undefined);
    let text = '';
    const switched = new Promise<void>((resolve) =>
      socket.on('data', (c: Buffer) => {
        text += c.toString('latin1');
        if (text.includes('\r\n\r\n')) resolve();
      }),
    );
    socket.write(`GET /cable?id=${id} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    await withTimeout(switched, 2000, '101 response');
    expect(text).toMatch(/^HTTP\/1\.1 101 /);
    // RFC 6455 4.2.2: the accept value for the RFC's own sample key.
    expect(text).toMatch(/\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/i);
    const session = await sessionP;
    socket.destroy();
    await withTimeout(session.closed, 2000, 'upstream socket close after the client vanished');
    expect(session.socket.destroyed).toBe(true);
  });

  it('when the upstream closes, the client sees the close', async () => {
    const { client, session } = await connect();
    await client.received(1);
    session.close(1001, 'server restarting');
    const ev = await withTimeout(client.closed, 2000, 'client close event');
    expect(ev.code).toBe(1001);
    expect(ev.reason).toBe('server restarting');
  });

  it('when the upstream dies without a close frame, the client sees an abnormal close', async () => {
    const { client, session } = await connect();
    await client.received(1);
    session.socket.destroy();
    const ev = await withTimeout(client.closed, 2000, 'client close event');
    // RFC 6455 7.1.5: no close frame received → 1006.
    expect(ev.code).toBe(1006);
    expect(ev.wasClean).toBe(false);
  });

  it('leaves no file descriptors behind once sessions are closed from either side', async () => {
    const pid = gw.proc.pid as number;
    // Warm up (lazily opened fds: the upstream connection path, timers), then take the baseline.
    const warm = await connect();
    warm.client.ws.close();
    await warm.client.closed;
    await warm.session.closed;
    const baseline = await settleFds(pid, 0, 500);

    const opened = await Promise.all(Array.from({ length: 20 }, () => connect()));
    for (const { client } of opened) await client.received(1);
    // Each session holds two fds in the gateway: the client socket and the upstream socket.
    expect(fdCount(pid)).toBeGreaterThanOrEqual(baseline + 40);

    for (const [i, { client, session }] of opened.entries()) {
      if (i % 3 === 0) client.ws.close(1000);
      else if (i % 3 === 1) session.close(1001);
      else session.socket.destroy();
    }
    await Promise.all(opened.map(({ client }) => withTimeout(client.closed, 3000, 'client close')));
    await Promise.all(opened.map(({ session }) => withTimeout(session.closed, 3000, 'upstream close')));
    expect(app.sessions.size, [...app.sessions].map((s) => s.head.split('\r\n')[0]).join('; ')).toBe(0);

    const after = await settleFds(pid, baseline + 2);
    expect(after).toBeLessThanOrEqual(baseline + 2);
  });

  it('an upgrade to a missing upstream socket gets 502', async () => {
    const missing = await startGateway(['--upstream', join(tmp.dir, 'no-such.sock'), '--access-log', 'off', '--hold-timeout', '0']);
    try {
      const r = await rawRequest(missing.port, 'GET /cable HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
      expect(r.status).toBe(502);
      expect(parseHead(r.text).headers.connection).toEqual(['close']);
      expect(r.closed).toBe(true);

      // The same through a real client: the handshake fails, no open event.
      const ws = new WebSocket(`ws://127.0.0.1:${missing.port}/cable`);
      const outcome = await new Promise<string>((resolve) => {
        ws.addEventListener('open', () => resolve('open'));
        ws.addEventListener('error', () => resolve('error'));
      });
      expect(outcome).toBe('error');
    } finally {
      await missing.stop();
    }
  });
});
