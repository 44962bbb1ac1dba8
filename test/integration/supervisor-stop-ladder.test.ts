/**
 * `gateway stop` walks the stop ladder; `gateway start` brings the server back; the PID file the
 * supervisor writes for a server that writes none is removed when it stops (issue 4).
 *
 * The fixture ignores QUIT and TERM (it logs each signal it gets): with the ladder
 * QUIT/500ms,TERM/500ms,KILL/2s it gets QUIT, then TERM half a second later, then is killed, and
 * the command returns after about a second with the server stopped. A request arriving while it
 * is stopped is held, and answered by the server `gateway start` brings back.
 */
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendCommand } from '../../src/control/client.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { appCommand, appFiles, appStatus, gatewayCommand, killGroups, Load, processesMatching, readEvents, type AppFiles } from '../helpers/supervised.js';
import { tempDir } from '../helpers/upstream.js';

const LADDER = 'QUIT/500ms,TERM/500ms,KILL/2s';

function alive(pid: number): boolean {
  return existsSync(`/proc/${pid}`) && !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

async function startSupervised(tmp: { dir: string }, f: AppFiles, extra: string[]): Promise<RunningGateway> {
  return startGateway([
    '--upstream', f.sock,
    '--pid-file', f.pidFile,
    '--control', `${tmp.dir}/gw.ctl`,
    '--access-log', 'off',
    '--app-command', appCommand('ignores-term', f, extra),
    '--app-stop-signals', LADDER,
  ]);
}

async function cleanup(gw: RunningGateway | undefined, tmp: { dir: string; cleanup: () => void }, f: AppFiles): Promise<void> {
  // The ladder first (about a second): the gateway's own fast stop would TERM, wait 3 s, then KILL.
  if (gw) await sendCommand(`${tmp.dir}/gw.ctl`, 'stop', {}, 10_000).catch(() => undefined);
  await gw?.stop();
  killGroups(readEvents(f.events).map((e) => e.pid), tmp.dir);
  expect(processesMatching(tmp.dir)).toEqual([]);
  tmp.cleanup();
}

describe('stop ladder on a server that ignores QUIT and TERM', () => {
  const tmp = tempDir('gw-sup-ladder-');
  const f = appFiles(tmp.dir);
  const control = `${tmp.dir}/gw.ctl`;
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startSupervised(tmp, f, []);
  });
  afterAll(() => cleanup(gw, tmp, f));

  it('stop: QUIT, TERM, then KILL; returns after about a second; status stopped with no pid', async () => {
    const before = await appStatus(control);
    expect(before.phase).toBe('running');
    const pid = before.pid as number;

    const r = await gatewayCommand('stop', control);
    expect(r.code, r.stderr).toBe(0);
    // 500 ms after QUIT, 500 ms after TERM, then KILL: about 1 s, plus the CLI's own start (a few
    // hundred ms, more on a loaded box). The gateway's log times the ladder itself, below.
    expect(r.ms).toBeGreaterThanOrEqual(1000);
    expect(r.ms).toBeLessThan(3500);
    expect((r.reply?.app as { phase: string }).phase).toBe('stopped');

    const signals = readEvents(f.events).filter((e) => e.pid === pid && e.what.startsWith('signal:'));
    expect(signals.map((e) => e.what)).toEqual(['signal:SIGQUIT', 'signal:SIGTERM']);
    const gap = (signals[1]?.t ?? 0) - (signals[0]?.t ?? 0);
    expect(gap).toBeGreaterThanOrEqual(450);
    expect(gap).toBeLessThan(1000);
    // Killed: it never got to exit on its own.
    expect(readEvents(f.events).filter((e) => e.pid === pid && e.what.startsWith('exit'))).toEqual([]);
    expect(alive(pid)).toBe(false);

    const after = await appStatus(control);
    expect(after).toMatchObject({ phase: 'stopped', pid: null });
    // The supervisor's own account: QUIT, TERM 500 ms later, KILL 500 ms after that, then stopped.
    await gw.waitForOutput('"to":"stopped"');
    const at = (pattern: RegExp): number => {
      const line = gw.output().split('\n').find((l) => pattern.test(l));
      return line ? (JSON.parse(line) as { time: number }).time : NaN;
    };
    const quitAt = at(/"signal":"SIGQUIT","msg":"stop ladder"/);
    const termAt = at(/"signal":"SIGTERM","msg":"stop ladder"/);
    const killAt = at(/"signal":"SIGKILL","msg":"stop ladder"/);
    const stoppedAt = at(/"event":"stopped","to":"stopped"/);
    expect(termAt - quitAt).toBeGreaterThanOrEqual(490);
    expect(killAt - termAt).toBeGreaterThanOrEqual(490);
    expect(killAt - quitAt).toBeLessThan(1500);
    expect(stoppedAt - killAt).toBeLessThan(500);
    process.stdout.write(`supervisor-stop-ladder: QUIT to stopped ${stoppedAt - quitAt} ms (QUIT to TERM ${termAt - quitAt} ms, TERM to KILL ${killAt - termAt} ms); the command took ${Math.round(r.ms)} ms\n`);
  });

  it('start: a request held while stopped is answered by the new server', async () => {
    const load = new Load(gw.url, { loops: 0 });
    const held = load.one('held-while-stopped', 'GET');
    await new Promise((r) => setTimeout(r, 200));
    const r = await gatewayCommand('start', control);
    expect(r.code, r.stderr).toBe(0);
    const s = await appStatus(control);
    expect(s.phase).toBe('running');
    expect(s.pid).not.toBeNull();
    expect(alive(s.pid as number)).toBe(true);
    const o = await held;
    expect(o.status).toBe(200);
    expect(o.pid).toBe(s.pid);
    expect(readFileSync(f.pidFile, 'utf8').trim()).toBe(String(s.pid));
  });
});

describe('the PID file the supervisor writes for a server that writes none', () => {
  const tmp = tempDir('gw-sup-ladder-nopid-');
  const f = appFiles(tmp.dir);
  const control = `${tmp.dir}/gw.ctl`;
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startSupervised(tmp, f, ['--no-pid-file']);
  });
  afterAll(() => cleanup(gw, tmp, f));

  it('is written for the child it started (a regular file, 0644), removed on stop, written again on start', async () => {
    const s = await appStatus(control);
    expect(s.phase).toBe('running');
    const st = lstatSync(f.pidFile);
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o777).toBe(0o644);
    expect(readFileSync(f.pidFile, 'utf8')).toBe(`${s.pid}\n`);

    const stop = await gatewayCommand('stop', control);
    expect(stop.code, stop.stderr).toBe(0);
    expect(existsSync(f.pidFile)).toBe(false);
    expect(alive(s.pid as number)).toBe(false);

    const start = await gatewayCommand('start', control);
    expect(start.code, start.stderr).toBe(0);
    const again = await appStatus(control);
    expect(again.pid).not.toBe(s.pid);
    expect(readFileSync(f.pidFile, 'utf8')).toBe(`${again.pid}\n`);
  });
});
