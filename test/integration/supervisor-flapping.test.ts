/**
 * A crash loop is detected as flapping and backs off (issue 4, "Done when"). The fixture exits 1 as
 * it starts; the supervisor starts it again after each failure until the flapping check trips
 * (3 starts within 10 s), then waits retry_in (2 s) before trying again, or, with retry_in=never,
 * gives up. The starts are counted by the fixture itself (one event line each), so a supervisor that
 * spins is caught whatever it reports. Meanwhile requests are held and, the app never coming up,
 * answered 503 at --hold-timeout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { appCommand, appFiles, appStatus, killGroups, Load, processesMatching, readEvents, readRecord, sleep, waitUntil, type AppFiles } from '../helpers/supervised.js';
import { tempDir } from '../helpers/upstream.js';

const starts = (f: AppFiles) => readEvents(f.events).filter((e) => e.what === 'start');

/** A GET and a POST sent now: held, then 503 with Retry-After once the hold timeout (1 s) passes. */
async function expectHeldThen503(gw: RunningGateway): Promise<void> {
  const load = new Load(gw.url, { loops: 0 });
  const [get, post] = await Promise.all([load.one('held-get', 'GET'), load.one('held-post', 'POST')]);
  for (const o of [get, post]) {
    expect(o.status).toBe(503);
    const ms = o.end - o.start;
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(2500);
  }
}

describe('flapping: back off, then try again', () => {
  const tmp = tempDir('gw-sup-flap-');
  const f = appFiles(tmp.dir);
  const control = `${tmp.dir}/gw.ctl`;
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startGateway([
      '--upstream', f.sock,
      '--pid-file', f.pidFile,
      '--control', control,
      '--access-log', 'off',
      '--hold-timeout', '1s',
      '--app-command', appCommand('crash-on-start', f),
      '--check-flapping', 'times=3 within=10s retry_in=2s',
    ]);
  });

  afterAll(async () => {
    await gw?.stop();
    killGroups(readEvents(f.events).map((e) => e.pid), tmp.dir);
    expect(processesMatching(tmp.dir)).toEqual([]);
    tmp.cleanup();
  });

  it('stops starting it after 3 starts, holds requests, then 503 at the hold timeout', async () => {
    await waitUntil(async () => (await appStatus(control)).phase === 'backoff', 5000, 'backoff');
    const s = await appStatus(control);
    expect(s).toMatchObject({ phase: 'backoff', pid: null, flapping: true });
    expect(s.restarts.flapping).toBe(1);
    expect(starts(f)).toHaveLength(3);
    expect(await gw.waitForOutput('app server is flapping; backing off')).toContain('app server is flapping; backing off');

    // Backing off: held requests get 503 at the hold timeout; no start meanwhile.
    await expectHeldThen503(gw);
    expect(starts(f)).toHaveLength(3);
    expect(readRecord(f.record)).toEqual([]);
  });

  it('tries again after retry_in, with the full count of starts, and backs off again', async () => {
    await waitUntil(async () => (await appStatus(control)).restarts.flapping >= 2, 5000, 'a second back-off');
    const s = await appStatus(control);
    expect(s).toMatchObject({ phase: 'backoff', flapping: true });
    const t = starts(f).map((e) => e.t);
    expect(t).toHaveLength(6);
    // The gap is the back-off: retry_in (2 s) after the start that tripped the check.
    const gap = (t[3] as number) - (t[2] as number);
    expect(gap).toBeGreaterThanOrEqual(1900);
    expect(gap).toBeLessThan(3500);
    // Bounded: 6 starts in the first ~2.5 s of a 10 s window; a spinning supervisor starts dozens.
    process.stdout.write(`supervisor-flapping: starts at +${t.map((x) => x - (t[0] as number)).join(', +')} ms\n`);
  });
});

describe('flapping: retry_in=never gives up', () => {
  const tmp = tempDir('gw-sup-flap-never-');
  const f = appFiles(tmp.dir);
  const control = `${tmp.dir}/gw.ctl`;
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startGateway([
      '--upstream', f.sock,
      '--pid-file', f.pidFile,
      '--control', control,
      '--access-log', 'off',
      '--hold-timeout', '1s',
      // Binds, then dies: the socket file stays behind with nothing listening on it.
      '--app-command', appCommand('crash-on-start', f, ['--after-bind']),
      '--check-flapping', 'times=3 within=10s retry_in=never',
    ]);
  });

  afterAll(async () => {
    await gw?.stop();
    killGroups(readEvents(f.events).map((e) => e.pid), tmp.dir);
    expect(processesMatching(tmp.dir)).toEqual([]);
    tmp.cleanup();
  });

  it('ends failed after 3 starts and starts it no more; requests get 503 at the hold timeout', async () => {
    await waitUntil(async () => (await appStatus(control)).phase === 'failed', 5000, 'failed');
    const s = await appStatus(control);
    expect(s).toMatchObject({ phase: 'failed', pid: null, flapping: true });
    expect(s.restarts.flapping).toBe(1);
    expect(await gw.waitForOutput('app server is flapping; giving up (retry_in never)')).toContain('app server is flapping; giving up (retry_in never)');
    expect(starts(f)).toHaveLength(3);
    expect(readEvents(f.events).filter((e) => e.what === 'listening')).toHaveLength(3);

    await expectHeldThen503(gw);
    await sleep(500);
    expect(starts(f)).toHaveLength(3);
    expect((await appStatus(control)).phase).toBe('failed');
  });
});
