/**
 * The gateway in front of the real Ruby app servers the host runs (Debian's puma, unicorn, thin),
 * each started as the host's Procfile line starts it, bound to a Unix socket in a mkdtemp dir:
 * concurrent mixed traffic answered in full, forwarding headers as the app sees them, and large
 * streamed downloads (with a Content-Length, and framed by the app server itself).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { groupMembers, SERVERS, spawnApp, stopGroup, waitForSocket, type AppProcess } from '../helpers/app-servers.js';
import { requireBinary } from '../helpers/debian.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { parseHead, rawRequest } from '../helpers/raw.js';
import { tempDir } from '../helpers/upstream.js';

const MiB = 1024 * 1024;

interface Echo {
  server: string;
  method: string;
  path: string;
  query: string;
  bodySize: number;
  bodySha256: string;
  headers: Record<string, string>;
  pid: number;
}

/** Byte i of /big is (i * 7 + 13) % 251, as config.ru writes it. */
function bigPattern(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7 + 13) % 251;
  return b;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

for (const kind of SERVERS) {
  const bin = requireBinary(kind.bin, kind.pkg);

  describe.skipIf(!bin)(`behind ${kind.name}`, () => {
    let tmp: ReturnType<typeof tempDir>;
    let sock: string;
    let pidFile: string;
    let app: AppProcess | undefined;
    let gw: RunningGateway | undefined;
    let client: Pool | undefined;

    async function stopAll(): Promise<void> {
      await client?.destroy();
      client = undefined;
      if (gw) await gw.stop('SIGTERM');
      if (app) await stopGroup(app);
    }

    beforeAll(async () => {
      tmp = tempDir(`gw-${kind.name}-`);
      sock = join(tmp.dir, 'web_server.sock');
      pidFile = join(tmp.dir, 'web_server.pid');
      app = spawnApp(bin as string, kind.command(tmp.dir, sock, pidFile), tmp.dir);
      const bootMs = await waitForSocket(sock, app);
      process.stderr.write(`${kind.name}: socket accepting after ${Math.round(bootMs)} ms\n`);
      gw = await startGateway(['--upstream', sock, '--access-log', 'off']);
      client = new Pool(gw.url, { connections: 20 });
    });

    afterAll(async () => {
      await stopAll();
      tmp?.cleanup();
    });

    it('runs as the Procfile line runs it (PID file as the server writes it)', async () => {
      const res = await client!.request({ method: 'GET', path: '/pid' });
      const echo = (await res.body.json()) as Echo;
      expect(res.statusCode).toBe(200);
      expect(echo.server.toLowerCase()).toContain(kind.name);
      if (kind.writesPidFile) {
        // Puma and Unicorn write the master's PID: the process we started.
        expect(Number(readFileSync(pidFile, 'utf8').trim())).toBe(app!.proc.pid);
      } else {
        expect(existsSync(pidFile)).toBe(false);
      }
    });

    it('answers 200 requests, 20 at a time, mixed GET and POST with bodies up to 1 MiB, each with its own echo', async () => {
      const total = 200;
      const failures: string[] = [];
      let next = 0;
      const started = performance.now();
      const one = async (i: number) => {
        const tag = `req-${i}`;
        if (i % 2 === 0) {
          const res = await client!.request({ method: 'GET', path: `/echo/${i}?i=${i}&q=a%20b`, headers: { 'x-test': tag } });
          const echo = (await res.body.json()) as Echo;
          if (res.statusCode !== 200) return failures.push(`${tag}: status ${res.statusCode}`);
          if (echo.method !== 'GET' || echo.path !== `/echo/${i}` || echo.query !== `i=${i}&q=a%20b` || echo.bodySize !== 0 || echo.headers['x-test'] !== tag) failures.push(`${tag}: echo ${JSON.stringify(echo)}`);
          return;
        }
        // Sizes spread over 0..1 MiB, with the edges (empty, one byte, exactly 1 MiB) included.
        const size = i === 1 ? 0 : i === 3 ? 1 : i === 5 ? MiB : (i * 104_729) % (MiB + 1);
        const body = randomBytes(size);
        const res = await client!.request({ method: 'POST', path: `/upload?i=${i}`, headers: { 'x-test': tag, 'content-type': 'application/octet-stream' }, body });
        const echo = (await res.body.json()) as Echo;
        if (res.statusCode !== 200) return failures.push(`${tag}: status ${res.statusCode}`);
        if (echo.method !== 'POST' || echo.path !== '/upload' || echo.query !== `i=${i}` || echo.bodySize !== size || echo.bodySha256 !== sha256(body) || echo.headers['x-test'] !== tag) {
          failures.push(`${tag} (${size} bytes): echo ${JSON.stringify({ ...echo, headers: undefined })}`);
        }
      };
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          for (let i = next++; i < total; i = next++) {
            try {
              await one(i);
            } catch (err) {
              failures.push(`req-${i}: ${(err as Error).message}`);
            }
          }
        }),
      );
      process.stderr.write(`${kind.name}: ${total} mixed requests in ${Math.round(performance.now() - started)} ms\n`);
      expect(failures, gw!.output().slice(-4000)).toEqual([]);
    });

    it('forwards Host and sets X-Forwarded-For, X-Real-IP, X-Forwarded-Proto and X-Forwarded-Host, ignoring a client forging them', async () => {
      const r = await rawRequest(
        gw!.port,
        'GET /headers?x=1 HTTP/1.1\r\n' +
          'Host: app.example.test\r\n' +
          'X-Forwarded-For: 6.6.6.6\r\n' +
          'X-Real-IP: 6.6.6.6\r\n' +
          'X-Forwarded-Proto: https\r\n' +
          'X-Forwarded-Host: evil.example\r\n' +
          'Forwarded: for=6.6.6.6;proto=https\r\n' +
          'Connection: close\r\n\r\n',
        { waitMs: 10_000 },
      );
      const { status, body } = parseHead(r.text);
      expect(status, r.text).toBe(200);
      // A close-delimited or Content-Length body: the JSON is all of it.
      const echo = JSON.parse(body) as Echo;
      expect(echo.path).toBe('/headers');
      expect(echo.query).toBe('x=1');
      // The peer is not a trusted proxy (none configured): its claims are dropped, ours set.
      expect(echo.headers).toEqual({
        host: 'app.example.test',
        'x-forwarded-for': '127.0.0.1',
        'x-real-ip': '127.0.0.1',
        'x-forwarded-proto': 'http',
        'x-forwarded-host': 'app.example.test',
      });
    });

    it('streams a 4 MiB download with Content-Length complete and in order', async () => {
      const size = 4 * MiB;
      const res = await client!.request({ method: 'GET', path: '/big?mb=4' });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-length']).toBe(String(size));
      const got = Buffer.from(await res.body.arrayBuffer());
      expect(got.length).toBe(size);
      expect(sha256(got)).toBe(sha256(bigPattern(size)));
    });

    it('streams a 4 MiB download the app server frames itself (chunked or close-delimited) complete and chunked to the client', async () => {
      const size = 4 * MiB;
      const res = await client!.request({ method: 'GET', path: '/big?mb=4&chunked=1' });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-length']).toBeUndefined();
      expect(res.headers['transfer-encoding']).toBe('chunked');
      const got = Buffer.from(await res.body.arrayBuffer());
      expect(got.length).toBe(size);
      expect(sha256(got)).toBe(sha256(bigPattern(size)));
    });

    it('stops the gateway cleanly and leaves no app server process behind', async () => {
      const pgid = app!.pgid;
      const code = await gw!.stop('SIGTERM');
      expect(code).toBe(0);
      await stopAll();
      expect(groupMembers(pgid)).toEqual([]);
    });
  });
}
