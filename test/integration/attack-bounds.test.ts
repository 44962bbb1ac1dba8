/**
 * Resource bounds under attack: what a slowloris, a connection flood and a client that never reads
 * cost the gateway, and that a normal client still gets its answers meanwhile.
 *
 * The machine running this is small and shared (2 cores), so nothing here asserts a latency: the
 * outcomes are asserted (every normal request answered, every slow connection closed, refused
 * connections closed at once, memory not growing with the response) and the figures printed.
 *
 * File descriptors: 2,000 slowloris sockets need 2,000 descriptors in this process and as many in
 * the gateway; the test checks the soft limit (`ulimit -n`, 20,000 where this was written) and
 * lowers the count if it is too low, rather than raising anything. The limits are per process (as
 * nginx's worker_connections are per worker); startGateway runs one process (--workers 0), so the
 * counts below are exact.
 */
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Client, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Figures for the record (printed, not asserted). */
const report = (line: string) => process.stdout.write(`${line}\n`);

/** The soft RLIMIT_NOFILE of this process (the gateway child inherits it). */
function fdLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

/** `pid` and its descendants: the gateway's primary and its worker processes, if it has workers. */
function processTree(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // Field 4 of stat, after the command in parentheses (which may hold spaces).
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) for (const [child, ppid] of parent) if (ppid === tree[i]) tree.push(child);
  return tree;
}

/** Resident memory of the gateway: its process and its workers together. */
function rssBytes(pid: number): number {
  let sum = 0;
  for (const p of processTree(pid)) {
    try {
      sum += Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    } catch {
      // gone meanwhile
    }
  }
  return sum;
}


function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function latencyLine(name: string, ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  return `${name}: ${s.length} requests, p50 ${percentile(s, 50).toFixed(1)} ms, p99 ${percentile(s, 99).toFixed(1)} ms, max ${(s.at(-1) ?? NaN).toFixed(1)} ms`;
}

/** A normal client: GETs one after the other until `until()` says stop; every status and latency. */
async function normalClient(url: string, until: () => boolean, opts: { localAddress?: string } = {}): Promise<{ statuses: number[]; ms: number[] }> {
  const from = opts.localAddress;
  // undici's connect options do not pass localAddress on: a connector of our own binds it.
  const connect = from
    ? (o: { hostname: string; port: string }, cb: (...args: [null, net.Socket] | [Error, null]) => void) => {
        const s = net.connect({ host: o.hostname, port: Number(o.port), localAddress: from });
        s.once('connect', () => cb(null, s));
        s.once('error', (err) => cb(err, null));
      }
    : undefined;
  const client = new Client(url, { connect });
  const statuses: number[] = [];
  const ms: number[] = [];
  try {
    while (!until()) {
      const t = performance.now();
      try {
        const res = await client.request({ path: '/normal', method: 'GET' });
        await res.body.text();
        statuses.push(res.statusCode);
      } catch {
        statuses.push(0);
      }
      ms.push(performance.now() - t);
      await sleep(20);
    }
  } finally {
    await client.close();
  }
  return { statuses, ms };
}

interface Held {
  socket: net.Socket;
  opened: number;
  /** When the other side closed it (FIN or reset); undefined while open. */
  closedAt?: number;
  text: string;
}

/** Opens a TCP connection and records what arrives and when the gateway closes it. */
function hold(port: number, localAddress?: string): Promise<Held> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: true });
    const h: Held = { socket, opened: 0, text: '' };
    socket.on('error', () => undefined);
    socket.on('data', (c: Buffer) => (h.text += c.toString('latin1')));
    const closed = () => (h.closedAt ??= performance.now());
    socket.once('end', closed);
    socket.once('close', closed);
    socket.once('connect', () => {
      h.opened = performance.now();
      resolve(h);
    });
    // A connection the backlog never takes still resolves, as closed.
    socket.once('close', () => resolve(h));
  });
}

describe('slowloris: 2,000 connections sending their request head a byte at a time', () => {
  const tmp = tempDir();
  let upstream: Upstream;
  let gw: RunningGateway;
  // One descriptor per connection in this process and one in the gateway (same limit), plus headroom.
  const COUNT = Math.min(2000, fdLimit() - 200);

  beforeAll(async () => {
    upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (_req, res) => res.end('ok'));
    // The per-client limit would refuse all but 256 of these at accept: this models a slowloris
    // from many addresses, which only the header deadline stops.
    gw = await startGateway(['--upstream', upstream.socketPath, '--client-header-timeout', '2s', '--max-connections-per-client', 'null', '--access-log', 'off']);
  });

  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
    tmp.cleanup();
  });

  it('closes every slow connection at the deadline while a normal client gets every answer', async () => {
    if (COUNT < 2000) report(`slowloris: open-file limit ${fdLimit()}: ${COUNT} connections instead of 2,000`);
    let attackOver = false;
    const normal = normalClient(gw.url, () => attackOver);
    const rssBefore = rssBytes(gw.proc.pid as number);

    const slow: Held[] = [];
    const drips = new Set<NodeJS.Timeout>();
    // Opened in batches, as a real attack ramps up; each sends a partial head, then a byte every 1.5 s.
    for (let i = 0; i < COUNT; i += 100) {
      const batch = await Promise.all(Array.from({ length: Math.min(100, COUNT - i) }, () => hold(gw.port)));
      for (const h of batch) {
        slow.push(h);
        if (h.closedAt !== undefined) continue;
        h.socket.write('GET /slow HTTP/1.1\r\nHost: example.test\r\nX-Slow: ');
        const t = setInterval(() => {
          if (h.closedAt !== undefined || h.socket.destroyed) {
            clearInterval(t);
            drips.delete(t);
            return;
          }
          h.socket.write('a');
        }, 1500);
        drips.add(t);
      }
    }
    const peakOpen = slow.filter((h) => h.closedAt === undefined).length;
    const rssPeak = rssBytes(gw.proc.pid as number);

    // Every slow connection must be closed by the gateway: 2 s plus the check interval, plus a
    // loaded machine. 30 s is far above that and far below "forever".
    const end = Date.now() + 30_000;
    while (slow.some((h) => h.closedAt === undefined) && Date.now() < end) await sleep(200);
    attackOver = true;
    const { statuses, ms } = await normal;
    for (const t of drips) clearInterval(t);
    for (const h of slow) h.socket.destroy();

    const lifetimes = slow.filter((h) => h.closedAt !== undefined && h.opened > 0).map((h) => (h.closedAt as number) - h.opened).sort((a, b) => a - b);
    const answered408 = slow.filter((h) => h.text.startsWith('HTTP/1.1 408')).length;
    report(`slowloris: ${COUNT} connections, ${peakOpen} open at once after the ramp, ${lifetimes.length} closed by the gateway (${answered408} with a 408); lifetime p50 ${percentile(lifetimes, 50).toFixed(0)} ms, max ${(lifetimes.at(-1) ?? NaN).toFixed(0)} ms; gateway RSS ${(rssBefore / 2 ** 20).toFixed(0)} MB before, ${(rssPeak / 2 ** 20).toFixed(0)} MB at the peak`);
    report(latencyLine('slowloris: normal client', ms));

    expect(slow.every((h) => h.closedAt !== undefined)).toBe(true);
    // Closed by the deadline, not refused: they lived about the deadline, not zero.
    expect(percentile(lifetimes, 50)).toBeGreaterThan(1000);
    expect(statuses.length).toBeGreaterThan(10);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  }, 60_000);
});

describe('connection flood at the limits (--max-connections 200 --max-connections-per-client 100)', () => {
  const tmp = tempDir();
  let upstream: Upstream;
  let gw: RunningGateway;

  beforeAll(async () => {
    upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (_req, res) => res.end('ok'));
    gw = await startGateway(['--upstream', upstream.socketPath, '--max-connections', '200', '--max-connections-per-client', '100', '--access-log', 'off']);
  });

  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
    tmp.cleanup();
  });

  /** Opens `n` idle connections from `from`; after a settle, which the gateway closed and which it kept. */
  async function flood(n: number, from: string): Promise<{ held: Held[]; refused: Held[]; kept: Held[] }> {
    const held: Held[] = [];
    for (let i = 0; i < n; i += 50) held.push(...(await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => hold(gw.port, from)))));
    await sleep(1000);
    return { held, refused: held.filter((h) => h.closedAt !== undefined), kept: held.filter((h) => h.closedAt === undefined) };
  }

  it('closes the connections over a limit at accept; a client from another address still gets its answers', async () => {
    // One address opens 300: the per-client limit keeps it at 100, so it cannot take the global 200.
    const a = await flood(300, '127.0.0.1');
    const refusedAfter = a.refused.map((h) => (h.closedAt as number) - h.opened).sort((x, y) => x - y);
    report(`flood from 127.0.0.1: 300 opened, ${a.kept.length} kept, ${a.refused.length} closed at accept (within p50 ${percentile(refusedAfter, 50).toFixed(1)} ms, max ${(refusedAfter.at(-1) ?? NaN).toFixed(1)} ms of connecting), none with a byte of answer: ${a.refused.every((h) => h.text === '')}`);
    expect(a.kept.length).toBe(100);
    expect(a.refused.length).toBe(200);
    expect(a.refused.every((h) => h.text === '')).toBe(true);

    // A normal client from 127.0.0.2, with the flood in place: answered.
    const t0 = Date.now();
    const first = await normalClient(gw.url, () => Date.now() - t0 > 3000, { localAddress: '127.0.0.2' });
    report(latencyLine('flood: normal client from 127.0.0.2 beside a per-client-limited flood', first.ms));
    expect(first.statuses.length).toBeGreaterThan(10);
    expect(first.statuses.filter((s) => s !== 200)).toEqual([]);

    // A second address fills the global limit: what passes 200 is closed at accept.
    const b = await flood(150, '127.0.0.3');
    report(`flood from 127.0.0.3: 150 opened, ${b.kept.length} kept, ${b.refused.length} closed at accept (global limit)`);
    expect(b.kept.length).toBe(100);
    expect(b.refused.length).toBe(50);
    // At the global limit a new connection from anyone is refused: that is what the limit is.
    const late = await hold(gw.port, '127.0.0.4');
    await sleep(500);
    expect(late.closedAt).toBeDefined();

    // The refusals were logged, at most one line a second, with the counts.
    const lines = gw.output().split('\n').filter((l) => l.includes('connection refused at accept'));
    report(`flood: ${lines.length} refusal log lines for ${a.refused.length + b.refused.length + 1} refused connections`);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThanOrEqual(10);
    expect(lines.some((l) => l.includes('"reason":"max_connections_per_client"'))).toBe(true);
    expect(lines.some((l) => l.includes('"reason":"max_connections"'))).toBe(true);

    // Once the flood leaves, its places are free again.
    for (const h of [...a.held, ...b.held, late]) h.socket.destroy();
    await sleep(500);
    const res = await request(gw.url);
    await res.body.text();
    expect(res.statusCode).toBe(200);
  }, 60_000);
});

describe('slow reader: a client that never reads a large response', () => {
  const tmp = tempDir();
  let upstream: Upstream;
  let gw: RunningGateway;
  const SIZE = 512 * 2 ** 20;
  const CHUNK = 64 * 1024;
  let produced = 0;
  /** When the gateway closed the app's response before its end. */
  let upstreamCut: number | undefined;

  beforeAll(async () => {
    upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (_req, res) => {
      res.writeHead(200, { 'content-length': String(SIZE), 'content-type': 'application/octet-stream' });
      produced = 0;
      // Made only when the socket asks for more: what the app produced is what the gateway took.
      const body = new Readable({
        highWaterMark: CHUNK,
        read() {
          if (produced >= SIZE) return this.push(null);
          produced += CHUNK;
          this.push(Buffer.alloc(CHUNK, 0x61));
        },
      });
      body.pipe(res);
      res.on('close', () => {
        body.destroy();
        if (!res.writableFinished) upstreamCut = performance.now();
      });
    });
    gw = await startGateway(['--upstream', upstream.socketPath, '--send-timeout', '6s', '--access-log', 'off']);
  });

  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
    tmp.cleanup();
  });

  it('pauses the app instead of buffering: gateway RSS does not grow by the response size; sendTimeout closes it', async () => {
    const pid = gw.proc.pid as number;
    // Warm the path first so the figure below is the slow reader's cost, not first-use JIT and pools.
    for (let i = 0; i < 3; i++) await (await request(gw.url, { method: 'HEAD' })).body.text();
    const before = rssBytes(pid);
    const c = await hold(gw.port);
    c.socket.write('GET /large HTTP/1.1\r\nHost: example.test\r\n\r\n');
    // Read the head only, then stop reading for good.
    await new Promise<void>((resolve) => c.socket.once('data', () => resolve()));
    c.socket.pause();
    await sleep(3000);
    const during = rssBytes(pid);
    const producedThen = produced;
    // sendTimeout (6 s without the client reading) cuts the connection and the app's response.
    // The client, not reading, cannot see the FIN yet: the app's side shows it.
    const end = Date.now() + 20_000;
    while (upstreamCut === undefined && Date.now() < end) await sleep(100);
    const cutAfter = upstreamCut === undefined ? NaN : (upstreamCut - c.opened) / 1000;
    // Reading now gets what was in flight, then the end: the response was cut short.
    let received = 0;
    c.socket.on('data', (chunk: Buffer) => (received += chunk.length));
    c.socket.resume();
    while (c.closedAt === undefined && Date.now() < end) await sleep(100);
    c.socket.destroy();
    report(`slow reader: ${SIZE / 2 ** 20} MB response; the app produced ${(producedThen / 2 ** 20).toFixed(1)} MB while the client read none; gateway RSS ${(before / 2 ** 20).toFixed(0)} MB before, ${(during / 2 ** 20).toFixed(0)} MB while stalled (+${((during - before) / 2 ** 20).toFixed(1)} MB); cut after ${cutAfter.toFixed(1)} s (sendTimeout 6 s), the client then read ${(received / 2 ** 20).toFixed(1)} MB and the end`);
    // What sits in kernel buffers (loopback TCP autotuning, the Unix socket) plus stream high-water
    // marks: megabytes, never the response.
    expect(producedThen).toBeLessThan(64 * 2 ** 20);
    expect(during - before).toBeLessThan(64 * 2 ** 20);
    expect(upstreamCut).toBeDefined();
    expect(c.closedAt).toBeDefined();
    expect(received).toBeLessThan(SIZE);
  }, 60_000);
});
