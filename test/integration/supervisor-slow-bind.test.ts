/**
 * A server slow to bind (1.5 s of boot, as a Rails app loading its code): requests that arrive as
 * the gateway starts are held until it accepts, then answered; `gateway restart` (cold, the
 * fixture having no hot restart) under a load of GETs and POSTs fails none and sends no POST
 * twice, though the server is down for 1.5 s; and a second gateway started on the same control
 * socket refuses to start, touching nothing (issue 4, "Done when").
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startGateway, type RunningGateway } from '../helpers/gateway.js';
import { appCommand, appFiles, appStatus, duplicatePosts, failures, gatewayCommand, killGroups, Load, processesMatching, readEvents, readRecord, sleep, waitUntil } from '../helpers/supervised.js';
import { tempDir } from '../helpers/upstream.js';

/** A port free a moment ago: the gateway prints its address only once the app is up, too late here. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

describe('a server slow to bind', () => {
  const tmp = tempDir('gw-sup-slow-');
  const f = appFiles(tmp.dir);
  const control = `${tmp.dir}/gw.ctl`;
  const flags = [
    '--upstream', f.sock,
    '--pid-file', f.pidFile,
    '--control', control,
    '--access-log', 'off',
    '--app-command', appCommand('slow-bind', f, ['--bind-delay', '1500']),
    '--app-restart', 'cold',
    '--app-stop-signals', 'QUIT/3s,KILL/1s',
  ];
  let gw: RunningGateway | undefined;
  let port = 0;
  let starting: Promise<RunningGateway>;

  beforeAll(async () => {
    port = await freePort();
    starting = startGateway([...flags, '--listen', `127.0.0.1:${port}`]);
    // Don't leave an unhandled rejection behind if the test fails before awaiting it.
    starting.then((g) => (gw = g)).catch(() => undefined);
  });

  afterAll(async () => {
    await (gw ?? (await starting.catch(() => undefined)))?.stop();
    killGroups(readEvents(f.events).map((e) => e.pid), tmp.dir);
    expect(processesMatching(tmp.dir)).toEqual([]);
    tmp.cleanup();
  });

  it('holds requests sent as the gateway starts, and answers them once the server binds', async () => {
    await waitUntil(() => connects(port), 5000, 'the gateway listening');
    const load = new Load(`http://127.0.0.1:${port}`, { loops: 0 });
    const sent = performance.now();
    const early = await Promise.all([load.one('early-get', 'GET'), load.one('early-post', 'POST'), load.one('early-get-2', 'GET')]);
    const gateway = await starting;
    expect(early.map((o) => o.status)).toEqual([200, 200, 200]);
    // Held for most of the 1.5 s boot.
    const listening = readEvents(f.events).find((e) => e.what === 'listening');
    expect(listening).toBeDefined();
    expect(Math.min(...early.map((o) => o.end - sent))).toBeGreaterThanOrEqual(700);
    expect(readRecord(f.record).filter((a) => a.id.startsWith('early-')).map((a) => a.id).sort()).toEqual(['early-get', 'early-get-2', 'early-post']);
    expect((await appStatus(control)).phase).toBe('running');
    expect(gateway.port).toBeGreaterThan(0);
  });

  it('restart (cold) under load: no request fails, no POST twice, counted as manual', async () => {
    const gateway = await starting;
    const before = await appStatus(control);
    const load = new Load(gateway.url, { loops: 4, pauseMs: 10 });
    await sleep(300);
    const r = await gatewayCommand('restart', control);
    await sleep(300);
    const outcomes = await load.stop();

    expect(r.code, r.stderr).toBe(0);
    // It returns only once the new server serves: after its 1.5 s boot.
    expect(r.reply?.restartMs as number).toBeGreaterThanOrEqual(1500);
    const after = await appStatus(control);
    expect(after.restarts.manual).toBe(1);
    expect(after.phase).toBe('running');
    expect(after.pid).not.toBe(before.pid);
    expect(r.reply?.restartedPid).toBe(after.pid);

    expect(failures(outcomes)).toEqual([]);
    const pids = new Set(outcomes.map((o) => o.pid));
    expect(pids.has(before.pid as number) && pids.has(after.pid as number)).toBe(true);
    const record = readRecord(f.record);
    expect(duplicatePosts(record)).toEqual([]);
    const seen = new Set(record.filter((a) => a.method === 'POST').map((a) => a.id));
    expect(outcomes.filter((o) => o.method === 'POST' && !seen.has(o.id))).toEqual([]);
    const slowest = Math.max(...outcomes.map((o) => o.end - o.start));
    expect(slowest).toBeGreaterThanOrEqual(1000); // some were held across the boot
    process.stdout.write(`supervisor-slow-bind: cold restart of a slow binder: ${r.reply?.restartMs as number} ms, ${outcomes.length} requests, slowest ${Math.round(slowest)} ms, none failed\n`);
  });

  it('a second gateway on the same control socket refuses to start and touches nothing', async () => {
    const gateway = await starting;
    const before = await appStatus(control);
    const startsBefore = readEvents(f.events).filter((e) => e.what === 'start').length;
    const second = await runCli(['run', '--workers', '0', '--listen', '127.0.0.1:0', '--admin', 'null', ...flags]);
    expect(second.code).not.toBe(0);
    expect(second.code).not.toBeNull();
    const line = second.stderr.split('\n').find((l) => l.includes(control));
    expect(line, second.stderr).toMatch(/in use by a running gateway/);
    // No second app server started, the first one untouched and still serving.
    expect(readEvents(f.events).filter((e) => e.what === 'start')).toHaveLength(startsBefore);
    expect(await appStatus(control)).toMatchObject({ phase: 'running', pid: before.pid });
    const o = await new Load(gateway.url, { loops: 0 }).one('after-second', 'GET');
    expect(o.status).toBe(200);
  });
});
