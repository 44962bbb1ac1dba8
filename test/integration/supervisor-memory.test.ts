/**
 * The memory check restarts a growing app server without a failed request (issue 4, "Done when").
 * The fixture keeps a 5 MB buffer per request; the supervisor samples the RSS of it and its
 * workers, and 2 samples of the last 3 at or above 100 MiB (it starts near 45 MiB) lead to a
 * restart (cold: the fixture has no hot restart, as Thin) while a steady load of GETs and POSTs runs
 * through the gateway. The gate holds what arrives meanwhile: every request is answered 200, and no
 * POST reaches the app twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { appCommand, appFiles, appStatus, duplicatePosts, failures, killGroups, Load, processesMatching, readEvents, readRecord, sleep, waitUntil } from '../helpers/supervised.js';
import { tempDir } from '../helpers/upstream.js';

describe('memory check', () => {
  const tmp = tempDir('gw-sup-memory-');
  const f = appFiles(tmp.dir);
  const control = `${tmp.dir}/gw.ctl`;
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startGateway([
      '--upstream', f.sock,
      '--pid-file', f.pidFile,
      '--control', control,
      '--access-log', 'off',
      '--app-command', appCommand('grows', f),
      '--app-restart', 'cold',
      '--check-memory', 'below=100m every=200ms times=2/3',
      '--app-stop-signals', 'QUIT/3s,KILL/1s',
    ]);
  });

  afterAll(async () => {
    await gw?.stop();
    killGroups(readEvents(f.events).map((e) => e.pid), tmp.dir);
    expect(processesMatching(tmp.dir)).toEqual([]);
    tmp.cleanup();
  });

  it('restarts the growing server under load: no request fails, no POST is seen twice', async () => {
    const first = await appStatus(control);
    expect(first.phase).toBe('running');
    expect(first.rssBytes).toBeLessThan(100 * 1024 * 1024);

    // 4 loops, 20 ms apart: about 100 requests a second, 500 MB a second if nothing restarted it.
    const load = new Load(gw.url, { loops: 4, pauseMs: 20 });
    const t0 = performance.now();
    await waitUntil(async () => (await appStatus(control)).restarts.memory >= 1, 10_000, 'a memory restart');
    await waitUntil(async () => (await appStatus(control)).phase === 'running', 10_000, 'running again');
    const restartedAfter = performance.now() - t0;
    await sleep(300); // the new server under load too
    const outcomes = await load.stop();

    const after = await appStatus(control);
    expect(after.restarts.memory).toBeGreaterThanOrEqual(1);
    expect(after.checkFailures.memory).toBeGreaterThanOrEqual(1);
    expect(after.pid).not.toBe(first.pid);
    expect(after.pid).not.toBeNull();
    expect(await gw.waitForOutput('check failed; restarting the app server')).toContain('check failed; restarting the app server');

    expect(failures(outcomes)).toEqual([]);
    const posts = outcomes.filter((o) => o.method === 'POST');
    expect(posts.length).toBeGreaterThan(10);
    // The old server answered some, the new one others.
    expect(new Set(outcomes.map((o) => o.pid)).size).toBeGreaterThanOrEqual(2);
    const record = readRecord(f.record);
    expect(duplicatePosts(record)).toEqual([]);
    // Every POST answered 200 reached the app exactly once.
    const seen = new Set(record.filter((a) => a.method === 'POST').map((a) => a.id));
    expect(posts.filter((o) => !seen.has(o.id))).toEqual([]);

    const maxMs = Math.max(...outcomes.map((o) => o.end - o.start));
    process.stdout.write(`supervisor-memory: memory restart after ${Math.round(restartedAfter)} ms of load; ${outcomes.length} requests, slowest ${Math.round(maxMs)} ms; restart took ${after.lastRestartMs} ms\n`);
  });
});
