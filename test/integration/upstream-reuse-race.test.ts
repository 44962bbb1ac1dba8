/**
 * The app server closes a pooled connection just as the gateway reuses it for a POST whose body
 * streams from the client (Puma's USR2 closes all its keep-alive connections; a POST got 502 in
 * hold-app-servers.test.ts about 1 run in 8). Nothing of the POST reached the app, so it must go
 * again on a fresh connection, whole and once.
 *
 * The race is made exact: the gateway runs in this process, and the app's side of the pooled
 * connection is destroyed in the gateway's own 'request' event, the tick before the gateway
 * dispatches the request onto that connection, whose close it has not seen yet.
 */
import type http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configFrom } from '../../src/config/resolve.js';
import { createLogger } from '../../src/log/logger.js';
import { AccessLog } from '../../src/proxy/access-log.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { rawUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

interface Seen {
  method: string;
  body: string;
}

let tmp: ReturnType<typeof tempDir>;
let app: Upstream<net.Server>;
let proxy: ProxyServer;
let port: number;
/** Requests the app read whole, in order. */
let seen: Seen[];
/** The app's side of each connection, in order of accept. */
let appSockets: net.Socket[];

beforeEach(async () => {
  tmp = tempDir('gw-reuse-race-');
  seen = [];
  appSockets = [];
  // A keep-alive app that reads Content-Length bodies and answers each request with what it read.
  app = await rawUpstream(join(tmp.dir, 'app.sock'), (socket) => {
    appSockets.push(socket);
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        const body = buf.subarray(end + 4, end + 4 + length).toString('latin1');
        buf = buf.subarray(end + 4 + length);
        seen.push({ method: head.split(' ')[0] as string, body });
        const answer = `${head.split(' ')[0]} ${body}`;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${answer.length}\r\n\r\n${answer}`);
      }
    });
  });
  const { config, problems } = configFrom(['--upstream', app.socketPath, '--listen', '127.0.0.1:0', '--access-log', 'off', '--workers', '0'], () => undefined);
  if (!config) throw new Error(JSON.stringify(problems));
  proxy = new ProxyServer(config, createLogger('silent'), new AccessLog('off', 'combined'));
  port = (await proxy.listen())[0]!.port;
});

afterEach(async () => {
  await proxy.stop(false);
  await app.close();
  tmp.cleanup();
});

/** One client connection: `next` resolves with the next whole answer; `send` writes and waits for it. */
function client(): { write: (text: string) => void; next: () => Promise<string>; send: (text: string) => Promise<string>; close: () => void } {
  const socket = net.connect(port, '127.0.0.1');
  let pending: ((answer: string) => void) | undefined;
  let buf = '';
  socket.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    const end = buf.indexOf('\r\n\r\n');
    if (end === -1) return;
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
    if (buf.length < end + 4 + length) return;
    const answer = buf.slice(0, end + 4 + length);
    buf = buf.slice(end + 4 + length);
    pending?.(answer);
  });
  const next = () => new Promise<string>((resolve) => (pending = resolve));
  return {
    write: (text) => void socket.write(text),
    next,
    send: (text) => {
      const answer = next();
      socket.write(text);
      return answer;
    },
    close: () => socket.destroy(),
  };
}

/** Destroys the app's side of the pooled connection when the gateway has the next request's head. */
function closeAppSideOnNextRequest(): void {
  const server = (proxy as unknown as { servers: http.Server[] }).servers[0] as http.Server;
  const listener = () => {
    server.off('request', listener);
    appSockets[0]!.destroy();
  };
  server.prependListener('request', listener);
}

const POST = (body: string) => `POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

describe('a pooled connection the app closes as it is reused', () => {
  it('a POST whose head and first body chunk failed to go (EPIPE) is sent again, whole, once', async () => {
    const c = client();
    expect(await c.send('GET /first HTTP/1.1\r\nHost: a\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 [\s\S]*GET $/);
    closeAppSideOnNextRequest();
    // Head and body in one packet: the body's first chunk is read with the head.
    expect(await c.send(POST('hello world'))).toMatch(/^HTTP\/1\.1 200 [\s\S]*POST hello world$/);
    expect(seen).toEqual([
      { method: 'GET', body: '' },
      { method: 'POST', body: 'hello world' },
    ]);
    c.close();
  });

  it('a POST whose body had not begun when the connection closed is sent again, whole, once', async () => {
    const c = client();
    await c.send('GET /first HTTP/1.1\r\nHost: a\r\n\r\n');
    closeAppSideOnNextRequest();
    // The head alone; the body comes once the gateway has seen the pooled connection close.
    const answer = c.next();
    c.write('POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n');
    await new Promise((r) => setTimeout(r, 100));
    c.write('hello');
    expect(await answer).toMatch(/^HTTP\/1\.1 200 [\s\S]*POST hello$/);
    expect(seen).toEqual([
      { method: 'GET', body: '' },
      { method: 'POST', body: 'hello' },
    ]);
    c.close();
  });
});
