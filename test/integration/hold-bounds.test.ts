/**
 * Holding is bounded: a request waits at most --hold-timeout from its arrival, at most
 * --hold-max-requests wait at once; past a bound the answer is 503 with Retry-After and the
 * operator's page. A client that gives up while held is forgotten: nothing is sent for it.
 */
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { sendCommand } from '../../src/control/client.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('hold bounds', () => {
  const tmp = tempDir();
  const gws: RunningGateway[] = [];
  const apps: Upstream[] = [];
  afterAll(async () => {
    await Promise.all(gws.map((g) => g.stop()));
    await Promise.all(apps.map((a) => a.close()));
    tmp.cleanup();
  });

  it('answers 503 with Retry-After and the hold page once the deadline passes', async () => {
    const page = join(tmp.dir, '503.html');
    writeFileSync(page, '<h1>Back in a moment</h1>\n');
    const gw = await startGateway(['--upstream', join(tmp.dir, 'never.sock'), '--hold-timeout', '1s', '--hold-retry-after', '7s', '--hold-page', page, '--access-log', 'off']);
    gws.push(gw);
    const t0 = performance.now();
    const r = await request(`${gw.url}/wait`, { method: 'POST', body: 'x' });
    const waited = performance.now() - t0;
    expect(r.statusCode).toBe(503);
    expect(r.headers['retry-after']).toBe('7');
    expect(await r.body.text()).toBe('<h1>Back in a moment</h1>\n');
    expect(waited).toBeGreaterThanOrEqual(950);
    expect(waited).toBeLessThan(2000);
  });

  it('answers 503 at once past the queue bound', async () => {
    const ctl = join(tmp.dir, 'bound.ctl');
    const gw = await startGateway(['--upstream', join(tmp.dir, 'never2.sock'), '--hold-max-requests', '3', '--control', ctl, '--access-log', 'off']);
    gws.push(gw);
    const held = [0, 1, 2].map(() => request(`${gw.url}/held`).catch(() => undefined));
    await sleep(300);
    const t0 = performance.now();
    const over = await request(`${gw.url}/over`);
    expect(over.statusCode).toBe(503);
    expect(over.headers['retry-after']).toBe('5');
    expect(performance.now() - t0).toBeLessThan(500);
    await over.body.dump();
    const st = await sendCommand(ctl, 'status');
    expect(st).toMatchObject({ held: 3, stats: { overflowed: 1 } });
    await gw.stop();
    // Stopping the gateway answers the held ones (503) rather than leaving them hanging.
    const settled = await Promise.all(held);
    for (const r of settled) expect(r === undefined || r.statusCode === 503).toBe(true);
  });

  it('forgets a client that gives up while held: the app never sees its request', async () => {
    const sock = join(tmp.dir, 'later.sock');
    const ctl = join(tmp.dir, 'gone.ctl');
    const gw = await startGateway(['--upstream', sock, '--control', ctl, '--access-log', 'off']);
    gws.push(gw);
    // Raw clients that send a request and then close the connection while it is held.
    const quitters = [0, 1, 2].map((i) => {
      const s = net.connect(gw.port, '127.0.0.1', () => s.write(`GET /quitter/${i} HTTP/1.1\r\nHost: t\r\n\r\n`));
      s.on('error', () => undefined);
      return s;
    });
    await sleep(300);
    expect(await sendCommand(ctl, 'status')).toMatchObject({ held: 3 });
    for (const s of quitters) s.destroy();
    await sleep(200);
    expect(await sendCommand(ctl, 'status')).toMatchObject({ held: 0, stats: { cancelled: 3 } });
    const seen: string[] = [];
    const app = await httpUpstream(sock, (req, res) => {
      seen.push(req.url ?? '');
      res.end('ok');
    });
    apps.push(app);
    const r = await rawRequest(gw.port, 'GET /stayed HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    expect(r.status).toBe(200);
    expect(seen).toEqual(['/stayed']);
  });
});
