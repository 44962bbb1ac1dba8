/**
 * The embedded default: the demo app server keeps the host's conventions (socket, PID file, USR2
 * restart keeping PID and socket, graceful TERM removing both) and answers through the gateway.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { tempDir } from '../helpers/upstream.js';

const DEMO = fileURLToPath(new URL('../../examples/demo-app.mjs', import.meta.url));

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('demo app behind the gateway', () => {
  const tmp = tempDir();
  const sock = join(tmp.dir, 'web_server.sock');
  const pidFile = join(tmp.dir, 'web_server.pid');
  let app: ChildProcess;
  let gw: RunningGateway;

  beforeAll(async () => {
    app = spawn(process.execPath, [DEMO, '--socket', sock, '--pid', pidFile], { stdio: 'ignore' });
    await waitFor(() => existsSync(pidFile));
    gw = await startGateway(['--upstream', sock, '--access-log', 'off']);
  });

  afterAll(async () => {
    await gw?.stop();
    if (app.exitCode === null) app.kill('SIGINT');
    tmp.cleanup();
  });

  it('answers GET and POST through the gateway, with the client address forwarded', async () => {
    const get = await request(`${gw.url}/hello?x=1`);
    expect(get.statusCode).toBe(200);
    const body = (await get.body.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ method: 'GET', url: '/hello?x=1', x_real_ip: '127.0.0.1', x_forwarded_for: '127.0.0.1' });
    expect(body.master_pid).toBe(Number(readFileSync(pidFile, 'utf8')));

    const post = await request(`${gw.url}/upload`, { method: 'POST', body: Buffer.alloc(100_000, 1) });
    expect(((await post.body.json()) as { body_bytes: number }).body_bytes).toBe(100_000);
  });

  it('restarts on USR2 keeping its PID and socket: no request fails meanwhile', async () => {
    const before = (await (await request(gw.url)).body.json()) as { master_pid: number; worker_pid: number };
    let stop = false;
    const statuses: number[] = [];
    const load = (async () => {
      while (!stop) {
        try {
          const r = await request(gw.url);
          await r.body.dump();
          statuses.push(r.statusCode);
        } catch {
          statuses.push(0);
        }
      }
    })();
    process.kill(before.master_pid, 'SIGUSR2');
    let after = before;
    const end = Date.now() + 10_000;
    while (after.worker_pid === before.worker_pid && Date.now() < end) {
      const r = await request(gw.url);
      if (r.statusCode === 200) after = (await r.body.json()) as typeof before;
      else statuses.push(r.statusCode);
    }
    stop = true;
    await load;
    expect(after.worker_pid).not.toBe(before.worker_pid);
    expect(after.master_pid).toBe(before.master_pid);
    expect(Number(readFileSync(pidFile, 'utf8'))).toBe(before.master_pid);
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  });

  it('stops gracefully on TERM, removing its socket and PID file', async () => {
    const exited = new Promise((r) => app.once('exit', r));
    app.kill('SIGTERM');
    await exited;
    expect(existsSync(sock)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
  });
});
