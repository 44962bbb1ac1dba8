/**
 * --access-log FILE: nginx's `combined` line (what log tooling on these hosts parses), the JSON
 * variant with timings, refusals logged with their status, secrets never written, and SIGUSR1
 * reopening the file after logrotate renamed it.
 */
import { existsSync, readFileSync, renameSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { parseHead, rawRequest } from '../helpers/raw.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

const SECRET_AUTH = 'Bearer sekr1t-t0ken-do-not-log';
const SECRET_COOKIE = 'session=c00kie-do-not-log';

let tmp: ReturnType<typeof tempDir>;
let upstream: Upstream;

beforeAll(async () => {
  tmp = tempDir();
  upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url?.startsWith('/slow')) {
        setTimeout(() => res.end('slow'), 150);
      } else {
        res.setHeader('Set-Cookie', 'session=set-by-app');
        res.end('hello, world');
      }
    });
  });
});

afterAll(async () => {
  await upstream?.close();
  tmp?.cleanup();
});

function get(gw: RunningGateway, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(`${gw.url}${path}`, { headers, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** The log is written asynchronously: wait until the file holds `n` lines. */
async function lines(file: string, n: number, timeoutMs = 3000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const ls = text.split('\n').filter((l) => l !== '');
    if (ls.length >= n || Date.now() > deadline) return ls;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const MON = '(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
const TIME = `\\[\\d{2}/${MON}/\\d{4}:\\d{2}:\\d{2}:\\d{2} [+-]\\d{4}\\]`;

function combined(request: string, status: number, bytes: number, referer: string, agent: string): RegExp {
  const q = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  return new RegExp(`^127\\.0\\.0\\.1 - - ${TIME} "${q(request)}" ${status} ${bytes} "${q(referer)}" "${q(agent)}"$`);
}

describe('access log, combined format', () => {
  let gw: RunningGateway;
  let file: string;

  beforeAll(async () => {
    file = join(tmp.dir, 'access.log');
    gw = await startGateway(['--upstream', upstream.socketPath, '--access-log', file, '--client-max-body-size', '1k']);
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('writes one nginx combined line per request, with the body bytes sent', async () => {
    const r = await get(gw, '/path?q=1&x', { Referer: 'https://ref.example/page', 'User-Agent': 'test-agent/1.0' });
    expect(r).toEqual({ status: 200, body: 'hello, world' });
    const [line] = await lines(file, 1);
    expect(line).toMatch(combined('GET /path?q=1&x HTTP/1.1', 200, Buffer.byteLength(r.body), 'https://ref.example/page', 'test-agent/1.0'));
    // The time is the gateway's local time, close to now.
    const stamp = /\[(\d{2})\/(\w{3})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\]/.exec(line ?? '');
    expect(stamp).not.toBeNull();
    const [, dd, mon, yyyy, hh, mm, ss, zone] = stamp as unknown as string[];
    const at = Date.parse(`${dd} ${mon} ${yyyy} ${hh}:${mm}:${ss} ${zone}`);
    expect(Math.abs(Date.now() - at)).toBeLessThan(10_000);
  });

  it('logs a missing referer and agent as "-"', async () => {
    const before = (await lines(file, 0)).length;
    const r = await rawRequest(gw.port, 'GET /bare HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    expect(r.status).toBe(200);
    const all = await lines(file, before + 1);
    expect(all[before]).toMatch(combined('GET /bare HTTP/1.1', 200, 12, '-', '-'));
  });

  // Regression: once a response whose request body was fully read ends, Node detaches the socket
  // (req.socket is null); reading the address then threw inside undici's callback, which swallowed
  // it, and every forwarded request with a body went unlogged.
  it('logs a forwarded request with a body', async () => {
    const before = (await lines(file, 0)).length;
    const r = await rawRequest(gw.port, 'POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello');
    expect(r.status).toBe(200);
    const all = await lines(file, before + 1);
    expect(all[before]).toMatch(combined('POST /form HTTP/1.1', 200, 12, '-', '-'));
  });

  it('logs a 413 refusal with its status and the error page bytes', async () => {
    const before = (await lines(file, 0)).length;
    const r = await rawRequest(gw.port, `POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nUser-Agent: big\r\n\r\n${'x'.repeat(5000)}`);
    expect(r.status).toBe(413);
    const page = parseHead(r.text).body;
    expect(page.length).toBeGreaterThan(0);
    const all = await lines(file, before + 1);
    // $body_bytes_sent counts the error page, as nginx's does.
    expect(all[before]).toMatch(combined('POST /upload HTTP/1.1', 413, page.length, '-', 'big'));
  });

  it('logs a 413 for a chunked body cut at the limit while streaming', async () => {
    const before = (await lines(file, 0)).length;
    const chunk = 'x'.repeat(600);
    const body = `258\r\n${chunk}\r\n258\r\n${chunk}\r\n0\r\n\r\n`;
    const r = await rawRequest(gw.port, `POST /chunked-upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n${body}`);
    expect(r.status).toBe(413);
    const all = await lines(file, before + 1);
    expect(all[before]).toMatch(combined('POST /chunked-upload HTTP/1.1', 413, parseHead(r.text).body.length, '-', '-'));
  });

  it('logs a 400 refusal with its status', async () => {
    const before = (await lines(file, 0)).length;
    // Two Host fields: Node accepts them, a front door must not.
    const r = await rawRequest(gw.port, 'GET /dup HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
    expect(r.status).toBe(400);
    const all = await lines(file, before + 1);
    expect(all[before]).toMatch(/^127\.0\.0\.1 - - \[[^\]]+\] "GET \/dup HTTP\/1\.1" 400 \d+ "-" "-"$/);
  });

  it('logs a parser-level 400 (no request object) with its status', async () => {
    const before = (await lines(file, 0)).length;
    const r = await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n');
    expect(r.status).toBe(400);
    const all = await lines(file, before + 1);
    expect(all[before]).toMatch(new RegExp(`^127\\.0\\.0\\.1 - - ${TIME} "[^"]*" 400 \\d+ "-" "-"$`));
  });

  it('never writes Authorization or Cookie values', async () => {
    const before = (await lines(file, 0)).length;
    const r = await get(gw, '/private', { Authorization: SECRET_AUTH, Cookie: SECRET_COOKIE, 'Proxy-Authorization': SECRET_AUTH });
    expect(r.status).toBe(200);
    const all = await lines(file, before + 1);
    expect(all[before]).toContain('"GET /private HTTP/1.1" 200');
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain('sekr1t');
    expect(text).not.toContain('c00kie');
    expect(text).not.toContain('set-by-app');
  });
});

describe('access log, upstream failure', () => {
  it('logs a 502 (upstream socket missing) with its status and the error page bytes', async () => {
    const file = join(tmp.dir, 'missing.log');
    const gw = await startGateway(['--upstream', join(tmp.dir, 'no-such.sock'), '--access-log', file, '--hold-timeout', '0']);
    try {
      const r = await rawRequest(gw.port, 'GET /down HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
      expect(r.status).toBe(502);
      const all = await lines(file, 1);
      expect(all).toHaveLength(1);
      expect(all[0]).toMatch(combined('GET /down HTTP/1.1', 502, parseHead(r.text).body.length, '-', '-'));
    } finally {
      await gw.stop();
    }
  });
});

describe('access log, json format', () => {
  let gw: RunningGateway;
  let file: string;

  beforeAll(async () => {
    file = join(tmp.dir, 'access.json.log');
    gw = await startGateway(['--upstream', upstream.socketPath, '--access-log', file, '--access-log-format', 'json', '--client-max-body-size', '1k']);
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('writes one JSON object per line with status, request_time and upstream_response_time', async () => {
    const r = await get(gw, '/slow?a=b', { 'User-Agent': 'json-agent', Authorization: SECRET_AUTH, Cookie: SECRET_COOKIE });
    expect(r).toEqual({ status: 200, body: 'slow' });
    const [line] = await lines(file, 1);
    const e = JSON.parse(line ?? '') as Record<string, unknown>;
    expect(e).toMatchObject({ remote_addr: '127.0.0.1', method: 'GET', uri: '/slow?a=b', protocol: 'HTTP/1.1', status: 200, body_bytes_sent: 4, user_agent: 'json-agent', referer: null, error: null });
    // Seconds, as nginx's $request_time: the upstream took 150 ms to answer.
    expect(typeof e.request_time).toBe('number');
    expect(typeof e.upstream_response_time).toBe('number');
    expect(e.upstream_response_time as number).toBeGreaterThanOrEqual(0.14);
    expect(e.upstream_response_time as number).toBeLessThan(5);
    expect(e.request_time as number).toBeGreaterThanOrEqual(e.upstream_response_time as number);
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain('sekr1t');
    expect(text).not.toContain('c00kie');
  });

  it('a refusal has its status and no upstream_response_time', async () => {
    const before = (await lines(file, 0)).length;
    const r = await rawRequest(gw.port, 'POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n');
    expect(r.status).toBe(413);
    const all = await lines(file, before + 1);
    const e = JSON.parse(all[before] ?? '') as Record<string, unknown>;
    expect(e).toMatchObject({ status: 413, method: 'POST', uri: '/big', upstream_response_time: null, error: 'GW_ERR_BODY_TOO_LARGE' });
    expect(typeof e.request_time).toBe('number');
  });
});

describe('access log reopen', () => {
  it('after the file is renamed, SIGUSR1 makes new lines go to a fresh file at the original path', async () => {
    const file = join(tmp.dir, 'rotate.log');
    const rotated = `${file}.1`;
    const gw = await startGateway(['--upstream', upstream.socketPath, '--access-log', file]);
    try {
      expect((await get(gw, '/before-rotate')).status).toBe(200);
      expect(await lines(file, 1)).toHaveLength(1);
      renameSync(file, rotated);
      // Still open on the renamed file: a line written now lands there (as with nginx before USR1).
      expect((await get(gw, '/after-rename')).status).toBe(200);
      expect(await lines(rotated, 2)).toHaveLength(2);
      expect(existsSync(file)).toBe(false);

      const outBefore = gw.output().length;
      gw.proc.kill('SIGUSR1');
      const deadline = Date.now() + 3000;
      while (!gw.output().slice(outBefore).includes('logs reopened') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(gw.output().slice(outBefore)).toContain('logs reopened');

      expect((await get(gw, '/after-reopen')).status).toBe(200);
      const fresh = await lines(file, 1);
      expect(fresh).toHaveLength(1);
      expect(fresh[0]).toContain('"GET /after-reopen HTTP/1.1" 200');
      const old = await lines(rotated, 2);
      expect(old).toHaveLength(2);
      expect(old[0]).toContain('/before-rotate');
      expect(old[1]).toContain('/after-rename');
    } finally {
      await gw.stop();
    }
  });
});
