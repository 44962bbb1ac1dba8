/**
 * Holding on purpose (deploys: pause, swap, resume) through the control socket, and WebSocket
 * upgrades held like any request while the app server is away.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { request, WebSocket } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { sendCommand } from '../../src/control/client.js';
import { startWsEcho } from '../fixtures/ws-echo.js';
import { runCli, startGateway, type RunningGateway } from '../helpers/gateway.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('pause and resume', () => {
  const tmp = tempDir();
  const ctl = join(tmp.dir, 'gw.ctl');
  let gw: RunningGateway | undefined;
  let app: Upstream | undefined;
  afterAll(async () => {
    await gw?.stop();
    await app?.close();
    tmp.cleanup();
  });

  it('holds every new request while paused and lets them go on resume', async () => {
    const seen: string[] = [];
    app = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
      seen.push(req.url ?? '');
      res.end('ok');
    });
    gw = await startGateway(['--upstream', app.socketPath, '--control', ctl, '--access-log', 'off']);
    // The control socket is for the gateway's owner only.
    expect(statSync(ctl).mode & 0o777).toBe(0o600);

    const paused = await runCli(['pause', '--control', ctl]);
    expect(paused.code).toBe(0);
    expect(JSON.parse(paused.stdout)).toMatchObject({ ok: true, paused: true });
    const pending = [1, 2, 3].map((i) => request(`${gw?.url}/p/${i}`).then((r) => r.statusCode));
    await sleep(300);
    expect(seen).toEqual([]);
    const status = JSON.parse((await runCli(['status', '--control', ctl])).stdout) as Record<string, unknown>;
    expect(status).toMatchObject({ paused: true, held: 3, upstreamUp: true });

    const resumed = await runCli(['resume', '--control', ctl]);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ ok: true, paused: false });
    expect(await Promise.all(pending)).toEqual([200, 200, 200]);
    expect(seen.sort()).toEqual(['/p/1', '/p/2', '/p/3']);
  });

  it('refuses an unknown command and a missing control socket with a clear message', async () => {
    const bogus = await sendCommand(ctl, 'bogus');
    expect(bogus).toMatchObject({ ok: false });
    expect(String(bogus.error)).toMatch(/unknown command "bogus"; known: status, restart, stop, start, pause, resume/);
    const missing = await runCli(['status', '--control', join(tmp.dir, 'nope.ctl')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no control socket at .*nope\.ctl: is the gateway running/);
  });
});

describe('WebSocket upgrades during an outage', () => {
  const tmp = tempDir();
  let gw: RunningGateway | undefined;
  afterAll(async () => {
    await gw?.stop();
    tmp.cleanup();
  });

  it('are held until the app server listens, then connect and echo', async () => {
    const sock = join(tmp.dir, 'cable.sock');
    gw = await startGateway(['--upstream', sock, '--access-log', 'off']);
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/cable`);
    const opened = new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error('websocket failed'));
    });
    await sleep(400);
    expect(ws.readyState).toBe(WebSocket.CONNECTING);
    const echo = await startWsEcho(sock);
    await opened;
    const reply = new Promise<string>((resolve) => (ws.onmessage = (e) => resolve(String(e.data))));
    ws.send('hello after the outage');
    expect(await reply).toBe('hello after the outage');
    ws.close();
    await new Promise((r) => echo.server.close(r));
  });
});
