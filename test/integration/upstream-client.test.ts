// The native upstream client (src/proxy/upstream.ts) against raw app servers on real Unix sockets:
// what each test's server writes is exactly what the client must cope with.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NativePool, type UpstreamRequest } from '../../src/proxy/upstream.js';

let dir: string;
const servers: net.Server[] = [];
const pools: NativePool[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gw-upstream-client-'));
});
afterEach(async () => {
  for (const p of pools.splice(0)) await p.destroy();
  for (const s of servers.splice(0)) s.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Conn {
  socket: net.Socket;
  /** Everything received so far. */
  text: () => string;
  /** The chunks as read (one 'data' event each). */
  chunks: Buffer[];
}

/** A raw app server: `onRequest` runs each time a full head (and `bodyBytes` of body) arrived. */
async function app(onConn: (c: Conn, conns: Conn[]) => void): Promise<{ path: string; conns: Conn[] }> {
  const path = join(dir, `app-${servers.length}.sock`);
  const conns: Conn[] = [];
  const server = net.createServer((socket) => {
    const chunks: Buffer[] = [];
    const c: Conn = { socket, chunks, text: () => Buffer.concat(chunks).toString('latin1') };
    conns.push(c);
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', () => undefined);
    onConn(c, conns);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { path, conns };
}

/** Calls `then` each time the connection's received text holds one more complete head. */
function onHeads(c: Conn, then: (n: number) => void): void {
  let seen = 0;
  c.socket.on('data', () => {
    const heads = c.text().split('\r\n\r\n').length - 1;
    while (seen < heads) then(seen++);
  });
}

function pool(path: string, o: Partial<ConstructorParameters<typeof NativePool>[0]> = {}): NativePool {
  const p = new NativePool({ socketPath: path, connections: 4, keepAliveTimeout: 4000, connectTimeout: 1000, readTimeout: 2000, socketCheck: { allowedUids: [] }, ...o });
  pools.push(p);
  return p;
}

interface Answer {
  status: number;
  headers: string[];
  body: string;
  trailers: string[] | null;
  interim: number[];
}

/** One request through the pool; `slow` pauses after every body chunk, resuming 5 ms later. */
function send(p: NativePool, req: Partial<UpstreamRequest> = {}, slow = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body: Buffer[] = [];
    const interim: number[] = [];
    let head: { status: number; headers: string[] } | undefined;
    let resume: () => void = () => undefined;
    p.dispatch(
      { method: 'GET', path: '/', headers: ['Host', 'app'], ...req },
      {
        onConnect: () => undefined,
        onHeaders(status, raw, r) {
          resume = r;
          if (status < 200) interim.push(status);
          else head = { status, headers: raw.map(String) };
          return true;
        },
        onData(chunk) {
          body.push(chunk);
          if (!slow) return true;
          setTimeout(resume, 5);
          return false;
        },
        onComplete(trailers) {
          const h = head as { status: number; headers: string[] };
          resolve({ ...h, body: Buffer.concat(body).toString('latin1'), trailers: trailers?.map(String) ?? null, interim });
        },
        onError: reject,
      },
    );
  });
}

const ok = (body: string, extra = '') => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`;

describe('native upstream client', () => {
  it('reuses one keep-alive connection for requests one after another', async () => {
    const a = await app((c) => onHeads(c, () => c.socket.write(ok('hi'))));
    const p = pool(a.path);
    for (let i = 0; i < 3; i++) expect((await send(p)).body).toBe('hi');
    expect(a.conns.length).toBe(1);
    expect(a.conns[0]!.text()).toBe('GET / HTTP/1.1\r\nHost: app\r\nconnection: keep-alive\r\n\r\n'.repeat(3));
  });

  it('drops a connection on which the app sent more than its Content-Length; the next request is answered right', async () => {
    const a = await app((c, all) => onHeads(c, () => c.socket.write(all.length === 1 ? `${ok('one')}HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray` : ok('two'))));
    const p = pool(a.path);
    expect((await send(p)).body).toBe('one');
    expect((await send(p)).body).toBe('two');
    expect(a.conns.length).toBe(2);
  });

  it('drops a connection on which bytes arrive while it is idle', async () => {
    const a = await app((c, all) =>
      onHeads(c, () => {
        c.socket.write(ok('one'));
        if (all.length === 1) setTimeout(() => c.socket.write('HTTP/1.1 200 '), 20);
      }),
    );
    const p = pool(a.path);
    expect((await send(p)).body).toBe('one');
    await new Promise((r) => setTimeout(r, 60));
    expect((await send(p)).body).toBe('one');
    expect(a.conns.length).toBe(2);
  });

  it('forgets an idle connection the app closed: the next request goes on a new one, no error', async () => {
    const a = await app((c) =>
      onHeads(c, () => {
        c.socket.write(ok('x'));
        setTimeout(() => c.socket.end(), 10);
      }),
    );
    const p = pool(a.path);
    expect((await send(p)).body).toBe('x');
    await new Promise((r) => setTimeout(r, 50));
    expect((await send(p)).body).toBe('x');
    expect(a.conns.length).toBe(2);
  });

  it('sends the head with the first body bytes in one write; a body of unknown length is chunked', async () => {
    const a = await app((c) => c.socket.on('data', () => c.text().endsWith('0\r\n\r\n') && c.socket.write(ok('got'))));
    const p = pool(a.path);
    const body = Readable.from([Buffer.from('hello '), Buffer.from('world')]);
    expect((await send(p, { method: 'POST', body })).body).toBe('got');
    const first = a.conns[0]!.chunks[0]!.toString('latin1');
    expect(first.startsWith('POST / HTTP/1.1\r\n')).toBe(true);
    expect(first).toContain('transfer-encoding: chunked\r\n\r\n6\r\nhello \r\n');
    expect(a.conns[0]!.text()).toMatch(/\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n$/);
  });

  it('sends a Buffer body with its length, and a bodiless POST with Content-Length: 0', async () => {
    const a = await app((c) => onHeads(c, () => c.socket.write(ok('k'))));
    const p = pool(a.path);
    await send(p, { method: 'PUT', body: Buffer.from('abc') });
    await send(p, { method: 'POST' });
    expect(a.conns[0]!.text()).toBe('PUT / HTTP/1.1\r\nHost: app\r\nconnection: keep-alive\r\ncontent-length: 3\r\n\r\nabcPOST / HTTP/1.1\r\nHost: app\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n');
  });

  it('refuses a header value with CR or LF and sends nothing', async () => {
    const a = await app(() => undefined);
    const p = pool(a.path);
    await expect(send(p, { headers: ['Host', 'app', 'X-Evil', 'a\r\nInjected: 1'] })).rejects.toMatchObject({ code: 'UND_ERR_INVALID_ARG' });
    await new Promise((r) => setTimeout(r, 20));
    expect(a.conns.map((c) => c.text()).join('')).toBe('');
  });

  it('passes interim responses, then the final one; more than 10 is a bad response', async () => {
    const a = await app((c) => onHeads(c, (n) => c.socket.write('HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n'.repeat(n === 0 ? 2 : 11) + ok('final'))));
    const p = pool(a.path);
    const r = await send(p);
    expect(r.interim).toEqual([103, 103]);
    expect(r.body).toBe('final');
    await expect(send(p)).rejects.toMatchObject({ code: 'UND_ERR_INFO' });
  });

  it('reads more than 32 header fields, a chunked body and its trailers', async () => {
    const fields = Array.from({ length: 40 }, (_, i) => `X-H${i}: v${i}\r\n`).join('');
    const a = await app((c) => onHeads(c, () => c.socket.write(`HTTP/1.1 200 OK\r\n${fields}Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n`)));
    const r = await send(pool(a.path));
    expect(r.headers.filter((h) => h.startsWith('X-H')).length).toBe(40);
    expect(r.body).toBe('abc');
    expect(r.trailers).toEqual(['X-Sum', '42']);
  });

  it('a response whose last chunk arrives while paused for a slow client leaves the connection usable', async () => {
    const big = 'z'.repeat(300_000);
    const a = await app((c) => onHeads(c, () => c.socket.write(ok(big))));
    const p = pool(a.path, { connections: 1 });
    expect((await send(p, {}, true)).body.length).toBe(big.length);
    expect((await send(p, {}, true)).body.length).toBe(big.length);
    expect(a.conns.length).toBe(1);
  });

  it('body chunks handed on stay intact while later reads come in (the read buffer is reused)', async () => {
    // Every connection reads into one shared buffer (upstream.ts READ_BUFFER), safe only while the
    // parser hands on copies: small and large chunks, each in a read of its own and each different,
    // kept by the handler until the end as a slow client's queued writes keep them.
    const pieces = [...Array.from({ length: 30 }, (_, i) => String.fromCharCode(97 + (i % 26)).repeat(100 + i)), ...Array.from({ length: 4 }, (_, i) => String.fromCharCode(65 + i).repeat(10_000))];
    const a = await app((c) =>
      onHeads(c, async () => {
        c.socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
        for (const piece of pieces) {
          await new Promise((r) => setTimeout(r, 3));
          c.socket.write(`${piece.length.toString(16)}\r\n${piece}\r\n`);
        }
        c.socket.write('0\r\n\r\n');
      }),
    );
    const p = pool(a.path, { connections: 1 });
    expect((await send(p)).body).toBe(pieces.join(''));
    expect((await send(p)).body).toBe(pieces.join(''));
  });

  it('reads a response delimited by the close of the connection', async () => {
    const a = await app((c) => onHeads(c, () => c.socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end')));
    const p = pool(a.path);
    expect((await send(p)).body).toBe('until the end');
    expect((await send(p)).body).toBe('until the end');
    expect(a.conns.length).toBe(2);
  });

  it('a HEAD response has no body whatever its Content-Length, and the connection is reused', async () => {
    const a = await app((c) => onHeads(c, (n) => c.socket.write(n === 0 ? 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n' : ok('after'))));
    const p = pool(a.path);
    expect((await send(p, { method: 'HEAD' })).body).toBe('');
    expect((await send(p)).body).toBe('after');
    expect(a.conns.length).toBe(1);
  });

  it('times out waiting for a head (UND_ERR_HEADERS_TIMEOUT) and between body chunks (UND_ERR_BODY_TIMEOUT)', async () => {
    const a = await app((c, all) => onHeads(c, () => all.length === 2 && c.socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc')));
    const p = pool(a.path, { readTimeout: 150 });
    const t0 = performance.now();
    await expect(send(p)).rejects.toMatchObject({ code: 'UND_ERR_HEADERS_TIMEOUT' });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    await expect(send(p)).rejects.toMatchObject({ code: 'UND_ERR_BODY_TIMEOUT' });
  });

  it('queues requests past its connection limit and serves them in order', async () => {
    const a = await app((c) => onHeads(c, () => setTimeout(() => c.socket.write(ok('q')), 20)));
    const p = pool(a.path, { connections: 1 });
    const all = [send(p, { path: '/1' }), send(p, { path: '/2' }), send(p, { path: '/3' })];
    expect(p.stats.pending).toBe(2);
    await Promise.all(all);
    expect(a.conns.length).toBe(1);
    expect(a.conns[0]!.text().match(/GET \/\d/g)).toEqual(['GET /1', 'GET /2', 'GET /3']);
    expect(p.stats).toMatchObject({ free: 1, pending: 0, running: 0 });
  });

  it('opens one new connection at a time to an app that keeps connections alive: one the app leaves waiting holds one request, not all', async () => {
    // Puma's way under load: it serves the connections it has and leaves a new one in its listen
    // queue. Here the app answers on its first connection only, until told otherwise.
    let serveAll = false;
    const waiting: (() => void)[] = [];
    const a = await app((c, all) => {
      const first = all.length === 1;
      onHeads(c, () => {
        const answer = () => setTimeout(() => c.socket.write(ok('k')), 5);
        if (first || serveAll) answer();
        else waiting.push(answer);
      });
    });
    const p = pool(a.path, { connections: 8 });
    await send(p);
    const done: string[] = [];
    const all = Array.from({ length: 10 }, (_, i) => send(p, { path: `/${i}` }).then(() => void done.push(`/${i}`)));
    // Nine answered on the first connection, in order; one sent on a second, new connection.
    await new Promise((r) => setTimeout(r, 200));
    expect(done).toHaveLength(9);
    expect(a.conns).toHaveLength(2);
    expect(a.conns[0]!.text().match(/GET \/\d*/g)).toEqual(['GET /', 'GET /0', 'GET /2', 'GET /3', 'GET /4', 'GET /5', 'GET /6', 'GET /7', 'GET /8', 'GET /9']);
    expect(a.conns[1]!.text().match(/GET \/\d*/g)).toEqual(['GET /1']);
    // The app gets to it: the last one is answered there.
    serveAll = true;
    for (const w of waiting.splice(0)) w();
    await Promise.all(all);
    expect(done).toHaveLength(10);
  });

  it('opens new connections at once to an app that closes each one after its answer (Unicorn)', async () => {
    const events: string[] = [];
    const a = await app((c) => {
      events.push('accept');
      onHeads(c, () =>
        setTimeout(() => {
          events.push('answer');
          c.socket.end(ok('u', 'Connection: close\r\n'));
        }, 50),
      );
    });
    const p = pool(a.path, { connections: 8 });
    // Before the app's answers say it closes its connections: one new connection at a time.
    await Promise.all(Array.from({ length: 2 }, () => send(p)));
    expect(events.splice(0)).toEqual(['accept', 'answer', 'accept', 'answer']);
    // Three answers in a row that closed (a busy Puma closes some): from then on no probing.
    await send(p);
    events.length = 0;
    await Promise.all(Array.from({ length: 4 }, () => send(p)));
    expect(events).toEqual(['accept', 'accept', 'accept', 'accept', 'answer', 'answer', 'answer', 'answer']);
    expect(a.conns).toHaveLength(7);
  });

  /**
   * A POST with a streamed body (some bytes already in it, or none yet) sent on a pooled connection
   * whose app side was just destroyed, before the pool could see it close; resolves with its error.
   */
  async function postOnClosedConnection(body: PassThrough): Promise<unknown> {
    const a = await app((c) => onHeads(c, () => c.socket.write(ok('hi'))));
    const p = pool(a.path);
    await send(p);
    a.conns[0]!.socket.destroy();
    return send(p, { method: 'POST', headers: ['Host', 'app', 'Content-Length', '5'], body }).catch((e: unknown) => e);
  }

  it('says a streamed request unsent when the app closed the pooled connection before its first write, its body unread', async () => {
    // The body has no byte yet when the request takes the connection.
    const body = new PassThrough();
    expect(await postOnClosedConnection(body)).toMatchObject({ requestNotSent: true });
    body.end('hello');
    expect(Buffer.concat(await body.toArray()).toString()).toBe('hello');
  });

  it('says a streamed request unsent when its first write (head and first chunk) failed with EPIPE, and hands that chunk back', async () => {
    const body = new PassThrough();
    body.write('hel');
    expect(await postOnClosedConnection(body)).toMatchObject({ code: 'EPIPE', requestNotSent: true, unsentFirst: Buffer.from('hel') });
    body.end('lo');
    expect(Buffer.concat(await body.toArray()).toString()).toBe('lo');
  });

  it('reports a missing socket with its system code, for the gate', async () => {
    await expect(send(pool(join(dir, 'none.sock')))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
