/**
 * HUP reloads the configuration as nginx does (docs/proxy.md, "Reload"): the new values apply to
 * requests from then on, no listener closes and no connection drops (a keep-alive connection opened
 * before the reload carries requests after it), a configuration with errors is rejected with the
 * running one kept, and what a running process cannot change (the listeners, the upstream) is kept
 * and reported. Under a steady load, several reloads cost no request.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let tmp: ReturnType<typeof tempDir>;
let upstream: Upstream;

beforeAll(async () => {
  tmp = tempDir('gw-reload-');
  upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => res.end(`got ${n}`));
  });
});

afterAll(async () => {
  await upstream?.close();
  tmp?.cleanup();
});

/** Waits for a line of the gateway's log matching `re` after `from` characters of output. */
async function logLine(gw: RunningGateway, re: RegExp, from: number, ms = 5000): Promise<string> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const line = gw.output().slice(from).split('\n').find((l) => re.test(l));
    if (line) return line;
    await sleep(20);
  }
  throw new Error(`no log line ${re} within ${ms} ms:\n${gw.output().slice(from)}`);
}

async function post(pool: Pool, bytes: number): Promise<number> {
  const r = await pool.request({ path: '/upload', method: 'POST', body: 'x'.repeat(bytes) });
  await r.body.dump();
  return r.statusCode;
}

describe('HUP with a JSON config file', () => {
  let gw: RunningGateway;
  let file: string;
  const write = (o: Record<string, unknown>) => writeFileSync(file, JSON.stringify({ upstream: upstream.socketPath, accessLog: 'off', ...o }));

  beforeAll(async () => {
    file = join(tmp.dir, 'gateway.json');
    write({ clientMaxBodySize: '1k' });
    gw = await startGateway(['--config', file]);
  });

  afterAll(async () => {
    await gw?.stop('SIGKILL');
  });

  it('applies a new body limit to the next request, on a keep-alive connection opened before', async () => {
    const pool = new Pool(gw.url, { connections: 1, pipelining: 1 });
    try {
      expect(await post(pool, 5000)).toBe(413);
      // 413 closes the connection (its body is unread); this one stays open across the reload.
      expect(await post(pool, 10)).toBe(200);
      write({ clientMaxBodySize: '10k' });
      const from = gw.output().length;
      gw.proc.kill('SIGHUP');
      const line = await logLine(gw, /configuration reloaded/, from);
      expect(JSON.parse(line)).toMatchObject({ applied: ['clientMaxBodySize'] });
      expect(await post(pool, 5000)).toBe(200);
      expect(await post(pool, 20_000)).toBe(413);
    } finally {
      await pool.close();
    }
  });

  it('rejects a configuration with errors and keeps the running one', async () => {
    write({ clientMaxBodySize: 'ten megs' });
    const from = gw.output().length;
    gw.proc.kill('SIGHUP');
    const line = await logLine(gw, /reload rejected/, from);
    expect(line).toContain('clientMaxBodySize');
    expect(line).toContain('ten megs');
    const pool = new Pool(gw.url, { connections: 1 });
    try {
      expect(await post(pool, 5000)).toBe(200);
      expect(await post(pool, 20_000)).toBe(413);
    } finally {
      await pool.close();
    }
    expect(gw.proc.exitCode).toBeNull();
  });

  it('keeps the upstream and the head size limit, saying they take a restart', async () => {
    // (The listeners come from startGateway's --listen flag, which wins over the file.)
    write({ clientMaxBodySize: '10k', maxHeaderSize: '64k', upstream: join(tmp.dir, 'other.sock') });
    const from = gw.output().length;
    gw.proc.kill('SIGHUP');
    const line = await logLine(gw, /take a restart/, from);
    expect(JSON.parse(line)).toMatchObject({ keys: ['upstream', 'maxHeaderSize'] });
    const pool = new Pool(gw.url, { connections: 1 });
    try {
      expect(await post(pool, 10)).toBe(200);
    } finally {
      await pool.close();
    }
  });
});

describe('HUP with an nginx.conf', () => {
  it('reads the file again: a new client_max_body_size, and a broken file rejected', async () => {
    const conf = join(tmp.dir, 'nginx.conf');
    const write = (size: string) =>
      writeFileSync(conf, `events {}\nhttp {\n  upstream app { server unix:${upstream.socketPath} fail_timeout=0; }\n  server {\n    listen 127.0.0.1:0;\n    client_max_body_size ${size};\n    location / { proxy_pass http://app; }\n  }\n}\n`);
    write('1k');
    const gw = await startGateway(['--nginx-config', conf, '--listen', '127.0.0.1:0', '--access-log', 'off']);
    const pool = new Pool(gw.url, { connections: 1 });
    try {
      expect(await post(pool, 5000)).toBe(413);
      write('10k');
      let from = gw.output().length;
      gw.proc.kill('SIGHUP');
      await logLine(gw, /configuration reloaded/, from);
      expect(await post(pool, 5000)).toBe(200);

      writeFileSync(conf, readFileSync(conf, 'utf8').replace('client_max_body_size 10k;', 'client_max_body_size 10k'));
      from = gw.output().length;
      gw.proc.kill('SIGHUP');
      const line = await logLine(gw, /reload rejected/, from);
      expect(line).toContain('directive \\"client_max_body_size\\" is not terminated by \\";\\"');
      expect(await post(pool, 5000)).toBe(200);
    } finally {
      await pool.close();
      await gw.stop('SIGKILL');
    }
  });
});

describe('HUP under load', () => {
  it('five reloads while 8 keep-alive loops send requests: every request 200, no connection dropped', async () => {
    const file = join(tmp.dir, 'load.json');
    writeFileSync(file, JSON.stringify({ upstream: upstream.socketPath, accessLog: 'off', clientMaxBodySize: '1m' }));
    const gw = await startGateway(['--config', file]);
    const pools = Array.from({ length: 8 }, () => new Pool(gw.url, { connections: 1 }));
    const statuses = new Map<string, number>();
    let connections = 0;
    for (const p of pools) p.on('connect', () => connections++);
    let running = true;
    const loops = pools.map(async (p) => {
      while (running) {
        try {
          const s = await post(p, 100);
          statuses.set(String(s), (statuses.get(String(s)) ?? 0) + 1);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? 'error';
          statuses.set(code, (statuses.get(code) ?? 0) + 1);
        }
      }
    });
    try {
      for (let i = 0; i < 5; i++) {
        await sleep(150);
        writeFileSync(file, JSON.stringify({ upstream: upstream.socketPath, accessLog: 'off', clientMaxBodySize: `${2 + i}m`, keepaliveTimeout: `${60 + i}s` }));
        const from = gw.output().length;
        gw.proc.kill('SIGHUP');
        await logLine(gw, /configuration reloaded/, from);
      }
      await sleep(150);
    } finally {
      running = false;
      await Promise.all(loops);
      await Promise.all(pools.map((p) => p.close()));
      await gw.stop('SIGKILL');
    }
    expect([...statuses.keys()]).toEqual(['200']);
    expect(statuses.get('200')).toBeGreaterThan(100);
    // Each loop kept its one connection through every reload.
    expect(connections).toBe(8);
  });
});
