/**
 * 1 GB each way through the gateway, generated on the fly and never held in memory: the bytes and
 * their CRC-32 must match end to end, and the gateway's peak RSS (VmHWM) must stay under 150 MB,
 * which only holds if backpressure works both ways (a proxy that buffered would reach 1 GB).
 *
 * Everything but the gateway runs in this test process, so the timings below include the client
 * and the upstream sharing one thread; they are printed for the record, not asserted.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

const TOTAL = 1024 * 1024 * 1024;
const CHUNK = 64 * 1024;
const RSS_LIMIT = 150 * 1024 * 1024;

/** A 64 KiB pattern; each chunk is a copy with its index stamped in, so no two chunks are equal. */
const PATTERN = Buffer.alloc(CHUNK);
for (let i = 0; i < CHUNK; i++) PATTERN[i] = (i * 131 + 7) & 0xff;

function makeChunk(index: number): Buffer {
  const b = Buffer.allocUnsafe(CHUNK);
  PATTERN.copy(b);
  b.writeUInt32BE(index, (index * 4) % (CHUNK - 4));
  return b;
}

/** The CRC-32 of the whole generated stream, computed the same way the generator builds it. */
function expectedCrc(): number {
  let crc = 0;
  for (let i = 0; i < TOTAL / CHUNK; i++) crc = crc32(makeChunk(i), crc);
  return crc;
}

/** Bytes made so far by the current generator: what the producing side has handed over. */
let produced = 0;

/** A pull-based source: a chunk is made only when the consumer asks (backpressure from the socket). */
function generated(): Readable {
  let index = 0;
  produced = 0;
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (index === TOTAL / CHUNK) {
        this.push(null);
      } else {
        produced += CHUNK;
        this.push(makeChunk(index++));
      }
    },
  });
}

/** Where the consumer stops reading for a while, to see that the producer stops too. */
const PAUSE_AT = 256 * 1024 * 1024;
const PAUSE_MS = 1000;
/** The largest buffer (bytes) the kernel may give a TCP socket: the third field of tcp_rmem/tcp_wmem. */
function tcpMax(which: 'tcp_rmem' | 'tcp_wmem'): number {
  return Number(readFileSync(`/proc/sys/net/ipv4/${which}`, 'utf8').trim().split(/\s+/)[2]);
}
/**
 * What may be in flight while the consumer pauses: the loopback TCP hop's kernel buffers (receive
 * autotuning reaches tcp_rmem's maximum, 32 MB on this machine), the Unix socket hop's (~200 KB
 * each way), and a few MB of stream buffers in the gateway and here. A proxy without backpressure
 * would keep pulling from the producer for the whole pause: hundreds of MB on loopback.
 */
const IN_FLIGHT_LIMIT = tcpMax('tcp_rmem') + tcpMax('tcp_wmem') + 8 * 1024 * 1024;

/** Peak resident set (VmHWM) of a process, in bytes. */
function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error('no VmHWM in /proc/<pid>/status');
  return Number(m[1]) * 1024;
}

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;

let tmp: ReturnType<typeof tempDir>;
let upstream: Upstream;
let gw: RunningGateway;
let want: number;

beforeAll(async () => {
  tmp = tempDir();
  want = expectedCrc();
  upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
    if (req.url === '/upload') {
      let bytes = 0;
      let crc = 0;
      let paused = false;
      let ahead = -1;
      req.on('data', (c: Buffer) => {
        bytes += c.length;
        crc = crc32(c, crc);
        if (!paused && bytes >= PAUSE_AT) {
          // The app stops reading (a slow disk): the client must be held back, through the gateway.
          paused = true;
          req.pause();
          setTimeout(() => {
            ahead = produced - bytes;
            req.resume();
          }, PAUSE_MS);
        }
      });
      req.on('end', () => {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ bytes, crc, ahead }));
      });
    } else if (req.url === '/download') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(TOTAL) });
      // pipeline honours res.write()'s false: the upstream only produces what the gateway takes.
      pipeline(generated(), res).catch(() => undefined);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  // No body limit for this test (the default is nginx's 50m).
  gw = await startGateway(['--upstream', upstream.socketPath, '--access-log', 'off', '--client-max-body-size', '0']);
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
  tmp?.cleanup();
});

describe('1 GB bodies streamed through the gateway', () => {
  it('upload: every byte arrives, with the same CRC-32, in bounded gateway memory', async () => {
    const pid = gw.proc.pid as number;
    const started = performance.now();
    const reply = await new Promise<string>((resolve, reject) => {
      const req = http.request(`${gw.url}/upload`, { method: 'POST', agent: false, headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(TOTAL) } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`status ${res.statusCode}: ${body}`))));
      });
      req.on('error', reject);
      pipeline(generated(), req).catch(reject);
    });
    const seconds = (performance.now() - started) / 1000;
    const rss = peakRss(pid);
    process.stderr.write(`upload 1 GB: ${seconds.toFixed(1)} s (${(1024 / seconds).toFixed(0)} MB/s), gateway peak RSS ${mb(rss)}\n`);
    const r = JSON.parse(reply) as { bytes: number; crc: number; ahead: number };
    process.stderr.write(`upload: client ahead of the paused app by ${mb(r.ahead)}\n`);
    expect({ bytes: r.bytes, crc: r.crc }).toEqual({ bytes: TOTAL, crc: want });
    expect(r.ahead).toBeGreaterThanOrEqual(0);
    expect(r.ahead).toBeLessThan(IN_FLIGHT_LIMIT);
    expect(rss).toBeLessThan(RSS_LIMIT);
  }, 180_000);

  it('download: every byte arrives, with the same CRC-32, in bounded gateway memory', async () => {
    const pid = gw.proc.pid as number;
    const started = performance.now();
    let ahead = -1;
    const got = await new Promise<{ bytes: number; crc: number; length: string | undefined }>((resolve, reject) => {
      http
        .get(`${gw.url}/download`, { agent: false }, (res) => {
          expect(res.statusCode).toBe(200);
          let bytes = 0;
          let crc = 0;
          let paused = false;
          res.on('data', (c: Buffer) => {
            bytes += c.length;
            crc = crc32(c, crc);
            if (!paused && bytes >= PAUSE_AT) {
              // A slow reader (a phone on a bad network): the app must be held back, through the gateway.
              paused = true;
              res.pause();
              setTimeout(() => {
                ahead = produced - bytes;
                res.resume();
              }, PAUSE_MS);
            }
          });
          res.on('end', () => resolve({ bytes, crc, length: res.headers['content-length'] }));
          res.on('error', reject);
        })
        .on('error', reject);
    });
    const seconds = (performance.now() - started) / 1000;
    const rss = peakRss(pid);
    process.stderr.write(`download 1 GB: ${seconds.toFixed(1)} s (${(1024 / seconds).toFixed(0)} MB/s), gateway peak RSS ${mb(rss)}\n`);
    process.stderr.write(`download: app ahead of the paused client by ${mb(ahead)}\n`);
    expect(got).toEqual({ bytes: TOTAL, crc: want, length: String(TOTAL) });
    expect(ahead).toBeGreaterThanOrEqual(0);
    expect(ahead).toBeLessThan(IN_FLIGHT_LIMIT);
    expect(rss).toBeLessThan(RSS_LIMIT);
  }, 180_000);
});
