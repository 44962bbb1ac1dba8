/**
 * Upstream failures and what the client gets (REFERENCE.md, "Faults a proxy must survive"): a
 * missing or refusing socket is a 502 with a small nginx-like page and no internals; a silent
 * upstream is a 504 at --proxy-read-timeout; garbage is a 502; an upstream that dies mid-body makes
 * the gateway cut the client connection instead of ending the response cleanly. The gateway keeps
 * serving through all of it.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { parseHead, rawRequest } from '../helpers/raw.js';
import { rawUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

const GET = (path: string) => `GET ${path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n`;

/** Everything an error page must not show: paths, errno names and texts, our codes, stack frames. */
function expectNoInternals(body: string, dir: string): void {
  expect(body).not.toContain(dir);
  expect(body).not.toMatch(/\.sock|ENOENT|ECONNREFUSED|errno|No such file|refused|connect\(|GW_ERR|UND_ERR|\bat \S+:\d+/i);
}

/**
 * A socket file with nobody behind it, as a crashed Unicorn leaves it: a child process binds it and is
 * SIGKILLed, so nothing unlinks the file and connecting gets ECONNREFUSED.
 */
async function deadSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`], { stdio: 'ignore' });
  await once(child, 'exit');
  const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(undefined);
    });
    s.once('error', resolve);
  });
  // The precondition of the test, checked rather than assumed.
  if (err?.code !== 'ECONNREFUSED') throw new Error(`expected ECONNREFUSED on ${path}, got ${err?.code ?? 'a connection'}`);
}

describe('upstream socket missing or refusing', () => {
  const tmp = tempDir();
  let missing: RunningGateway;
  let refused: RunningGateway;

  beforeAll(async () => {
    const dead = join(tmp.dir, 'dead.sock');
    await deadSocket(dead);
    // Holding off (--hold-timeout 0): the gateway answers as nginx does, 502 at once.
    [missing, refused] = await Promise.all([
      startGateway(['--upstream', join(tmp.dir, 'missing.sock'), '--access-log', 'off', '--hold-timeout', '0']),
      startGateway(['--upstream', dead, '--access-log', 'off', '--hold-timeout', '0']),
    ]);
  });

  afterAll(async () => {
    await Promise.all([missing?.stop(), refused?.stop()]);
    tmp.cleanup();
  });

  it('answers 502 with a small HTML page and no internals when the socket does not exist', async () => {
    expect(existsSync(join(tmp.dir, 'missing.sock'))).toBe(false);
    const r = await rawRequest(missing.port, GET('/'));
    const { status, headers, body } = parseHead(r.text);
    expect(status).toBe(502);
    expect(headers['content-type']?.[0]).toMatch(/^text\/html/);
    expect(body).toMatch(/<h1>502 Bad Gateway<\/h1>/);
    expect(body.length).toBeLessThan(512);
    expect(body.length).toBe(Number(headers['content-length']?.[0]));
    expectNoInternals(body, tmp.dir);
    // The detail goes to the log, not the client.
    expect(await missing.waitForOutput('GW_ERR_UPSTREAM_MISSING')).toContain('GW_ERR_UPSTREAM_MISSING');
  });

  it('answers 502 with no internals when the socket file exists but nothing listens (ECONNREFUSED)', async () => {
    const r = await rawRequest(refused.port, GET('/'));
    const { status, body } = parseHead(r.text);
    expect(status).toBe(502);
    expect(body).toMatch(/<h1>502 Bad Gateway<\/h1>/);
    expectNoInternals(body, tmp.dir);
    expect(await refused.waitForOutput('GW_ERR_UPSTREAM_REFUSED')).toContain('GW_ERR_UPSTREAM_REFUSED');
  });
});

describe('upstream misbehaving', () => {
  const tmp = tempDir();
  let upstream: Upstream<net.Server>;
  let gw: RunningGateway;

  beforeAll(async () => {
    // One scripted upstream: what it does depends on the request path.
    upstream = await rawUpstream(join(tmp.dir, 'app.sock'), (socket) => {
      let buf = '';
      socket.on('data', (c: Buffer) => {
        buf += c.toString('latin1');
        let end: number;
        while ((end = buf.indexOf('\r\n\r\n')) !== -1) {
          const path = buf.slice(0, end).split(' ')[1] ?? '';
          buf = buf.slice(end + 4);
          act(path, socket);
        }
      });
    });
    gw = await startGateway(['--upstream', upstream.socketPath, '--proxy-read-timeout', '1s', '--access-log', 'off']);
  });

  function act(path: string, socket: net.Socket): void {
    switch (path) {
      case '/ok':
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        break;
      case '/silent':
        break;
      case '/garbage':
        socket.write('this is not HTTP at all\r\n\r\n');
        break;
      case '/short-length':
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789');
        setTimeout(() => socket.destroy(), 50);
        break;
      case '/chunked-dies':
        socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
        setTimeout(() => socket.destroy(), 50);
        break;
      default:
        socket.write('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    }
  }

  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
    tmp.cleanup();
  });

  it('serves a well-behaved response (the control for the faults below)', async () => {
    const r = await rawRequest(gw.port, GET('/ok'));
    expect(r.status).toBe(200);
    expect(parseHead(r.text).body).toBe('ok');
  });

  it('answers 504 when the upstream sends nothing within --proxy-read-timeout', async () => {
    const started = performance.now();
    const r = await rawRequest(gw.port, GET('/silent'), { waitMs: 5000 });
    expect(r.status).toBe(504);
    expect(performance.now() - started).toBeGreaterThan(800);
    expectNoInternals(parseHead(r.text).body, tmp.dir);
  });

  it('answers 502 when the upstream answers bytes that are not HTTP', async () => {
    const r = await rawRequest(gw.port, GET('/garbage'));
    expect(r.status).toBe(502);
    expectNoInternals(parseHead(r.text).body, tmp.dir);
  });

  it('cuts the client connection when the upstream dies before its Content-Length is sent', async () => {
    const r = await rawRequest(gw.port, `GET /short-length HTTP/1.1\r\nHost: example.test\r\n\r\n`, { waitMs: 3000 });
    const { status, headers, body } = parseHead(r.text);
    expect(status).toBe(200);
    expect(headers['content-length']).toEqual(['1000']);
    // Closed by the gateway with the body short: the client knows the response is truncated.
    expect(r.closed).toBe(true);
    expect(body).toBe('0123456789');
  });

  it('cuts the client connection without the final chunk when a chunked upstream dies mid-body', async () => {
    const r = await rawRequest(gw.port, `GET /chunked-dies HTTP/1.1\r\nHost: example.test\r\n\r\n`, { waitMs: 3000 });
    const { status, headers, body } = parseHead(r.text);
    expect(status).toBe(200);
    expect(headers['transfer-encoding']).toEqual(['chunked']);
    expect(body).toContain('hello');
    expect(r.closed).toBe(true);
    expect(body).not.toMatch(/(^|\r\n)0\r\n\r\n$/);
  });

  it('keeps serving after all of the above', async () => {
    const r = await rawRequest(gw.port, GET('/ok'));
    expect(r.status).toBe(200);
    expect(parseHead(r.text).body).toBe('ok');
    expect(gw.proc.exitCode).toBeNull();
  });
});
