/**
 * Stopping with requests in flight (docs/proxy.md, "Graceful stop"): QUIT closes the listeners at
 * once, lets in-flight requests finish for up to --shutdown-timeout, then exits 0; TERM and INT cut
 * everything at once (nginx's fast stop). Each test starts its own gateway, since each one stops it.
 */
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

let tmp: ReturnType<typeof tempDir>;
let upstream: Upstream;
/** Resolvers waiting for the upstream to receive a request. */
const arrivals: (() => void)[] = [];

beforeAll(async () => {
  tmp = tempDir();
  // `/slow?ms=N` answers after N ms; a client that goes away cancels the answer.
  upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
    const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
    for (const arrived of arrivals.splice(0)) arrived();
    const timer = setTimeout(() => res.end('done'), ms);
    res.on('close', () => clearTimeout(timer));
  });
});

afterAll(async () => {
  await upstream?.close();
  tmp?.cleanup();
});

function arrival(): Promise<void> {
  return new Promise((resolve) => arrivals.push(resolve));
}

interface Outcome {
  status?: number;
  body?: string;
  connection?: string;
  error?: string;
  /** performance.now() when the response ended or failed. */
  at: number;
}

/** A GET on a keep-alive connection (as browsers and load balancers hold them). */
function get(gw: RunningGateway, path: string, agent: http.Agent): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = http.get(`${gw.url}${path}`, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body, connection: res.headers.connection, at: performance.now() }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message, at: performance.now() }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message, at: performance.now() }));
  });
}

/** Resolves with the error code of a bare TCP connect ('connected' when it was accepted). */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** Connect attempts every 10 ms until one is refused; returns ms after `since`, or -1. */
async function refusedWithin(port: number, since: number, limitMs: number): Promise<number> {
  while (performance.now() - since < limitMs) {
    if ((await tryConnect(port)) === 'ECONNREFUSED') return performance.now() - since;
    await new Promise((r) => setTimeout(r, 10));
  }
  return -1;
}

async function exitedAt(gw: RunningGateway): Promise<{ code: number | string; at: number }> {
  const code = await gw.exited;
  return { code, at: performance.now() };
}

describe.each(['SIGQUIT'] as const)('%s with a slow request in flight', (signal) => {
  it('refuses new connections at once, finishes the request with 200, exits 0', async () => {
    const gw = await startGateway(['--upstream', upstream.socketPath, '--access-log', 'off']);
    const agent = new http.Agent({ keepAlive: true });
    try {
      const arrived = arrival();
      const inflight = get(gw, '/slow?ms=1000', agent);
      await arrived;
      const exit = exitedAt(gw);
      const signalled = performance.now();
      gw.proc.kill(signal);

      const refusedAfter = await refusedWithin(gw.port, signalled, 500);
      expect(refusedAfter).toBeGreaterThanOrEqual(0);
      let settled = false;
      void inflight.then(() => (settled = true));
      // Refused while the request was still being served, not because the process was gone.
      expect(settled).toBe(false);
      expect(gw.proc.exitCode).toBeNull();

      const r = await inflight;
      expect(r).toMatchObject({ status: 200, body: 'done' });
      // docs/proxy.md: a response finishing during the stop tells the client not to reuse it.
      expect(r.connection).toBe('close');
      expect(r.at - signalled).toBeGreaterThan(700);

      const { code, at } = await exit;
      expect(code).toBe(0);
      // The held keep-alive connection does not keep the process alive past the request (not for
      // keepaliveTimeout, 65 s); the bound leaves room for a loaded CI machine's exit.
      expect(at - r.at).toBeLessThan(3000);
      expect(gw.output()).toContain('graceful stop');
    } finally {
      agent.destroy();
      await gw.stop('SIGKILL');
    }
  });
});

describe('graceful stop, bounded', () => {
  it('with --shutdown-timeout 1s, a request that takes 5 s is cut and the process exits 0', async () => {
    const gw = await startGateway(['--upstream', upstream.socketPath, '--access-log', 'off', '--shutdown-timeout', '1s']);
    const agent = new http.Agent({ keepAlive: true });
    try {
      const arrived = arrival();
      const inflight = get(gw, '/slow?ms=5000', agent);
      await arrived;
      const exit = exitedAt(gw);
      const signalled = performance.now();
      gw.proc.kill('SIGQUIT');

      const r = await inflight;
      expect(r.status).toBeUndefined();
      expect(r.error).toMatch(/ECONNRESET|socket hang up/);
      expect(r.at - signalled).toBeGreaterThan(900);
      expect(r.at - signalled).toBeLessThan(3000);

      const { code, at } = await exit;
      expect(code).toBe(0);
      expect(at - signalled).toBeLessThan(3000);
    } finally {
      agent.destroy();
      await gw.stop('SIGKILL');
    }
  });

  it('SIGQUIT right after a 502 exits at once (a failed request does not count as in flight)', async () => {
    // Regression: an error answered before any upstream byte never released its slot, so a stop
    // after any 502 waited the whole shutdownTimeout (30 s by default).
    const gw = await startGateway(['--upstream', join(tmp.dir, 'missing.sock'), '--access-log', 'off', '--hold-timeout', '0']);
    try {
      const r = await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
      expect(r.status).toBe(502);
      const exit = exitedAt(gw);
      const signalled = performance.now();
      gw.proc.kill('SIGQUIT');
      const { code, at } = await exit;
      expect(code).toBe(0);
      expect(at - signalled).toBeLessThan(2000);
    } finally {
      await gw.stop('SIGKILL');
    }
  });
});

describe.each(['SIGINT', 'SIGTERM'] as const)('fast stop (%s, as nginx)', (signal) => {
  it('cuts an in-flight request at once and exits 0', async () => {
    const gw = await startGateway(['--upstream', upstream.socketPath, '--access-log', 'off']);
    const agent = new http.Agent({ keepAlive: true });
    try {
      const arrived = arrival();
      const inflight = get(gw, '/slow?ms=5000', agent);
      await arrived;
      const exit = exitedAt(gw);
      const signalled = performance.now();
      gw.proc.kill(signal);

      const r = await inflight;
      expect(r.status).toBeUndefined();
      expect(r.error).toMatch(/ECONNRESET|socket hang up/);
      expect(r.at - signalled).toBeLessThan(500);
      const { code, at } = await exit;
      expect(code).toBe(0);
      expect(at - signalled).toBeLessThan(1000);
      expect(gw.output()).toContain('fast stop');
    } finally {
      agent.destroy();
      await gw.stop('SIGKILL');
    }
  });
});
