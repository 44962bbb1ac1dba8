/**
 * USR2, nginx's binary upgrade (docs/proxy.md, "Binary upgrade"): a new gateway process inherits
 * the listening sockets and the app server, the old one drains and exits, the gateway's PID file
 * moves to `.oldbin` and the new PID takes its place. Under a steady load of GETs and POSTs on
 * keep-alive and new connections, no request fails and no connection is refused. An upgrade whose
 * new process cannot start (a broken configuration) leaves the old one serving, its PID file back.
 *
 * The new process is not our child: it writes to the old one's stdout (our pipe, so its log is in
 * gw.output()), and is stopped through its PID file at the end.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { appCommand, appFiles, appStatus, duplicatePosts, failures, gatewayCommand, killGroups, Load, processesMatching, readEvents, readRecord, sleep, waitUntil } from '../helpers/supervised.js';
import { tempDir } from '../helpers/upstream.js';

const readPid = (file: string): number => Number(readFileSync(file, 'utf8').trim());
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
};

describe('USR2 with the supervisor and a running app server', () => {
  const tmp = tempDir('gw-upgrade-');
  const f = appFiles(tmp.dir);
  const control = join(tmp.dir, 'gw.ctl');
  const gwPid = join(tmp.dir, 'gateway.pid');
  const config = join(tmp.dir, 'gateway.json');
  let gw: RunningGateway;

  beforeAll(async () => {
    writeFileSync(config, JSON.stringify({ clientMaxBodySize: '1m' }));
    gw = await startGateway([
      '--config', config,
      '--upstream', f.sock,
      '--pid-file', f.pidFile,
      '--control', control,
      '--gateway-pid-file', gwPid,
      '--access-log', 'off',
      '--app-command', appCommand('steady', f),
      '--app-stop-signals', 'QUIT/3s,KILL/1s',
      // The fixture has no hot restart (like Thin).
      '--app-restart', 'cold',
    ]);
  });

  afterAll(async () => {
    if (existsSync(gwPid)) {
      const pid = readPid(gwPid);
      if (pid !== gw.proc.pid && alive(pid)) {
        process.kill(pid, 'SIGQUIT');
        await waitUntil(() => !alive(pid), 15_000, 'the upgraded gateway to stop').catch(() => process.kill(pid, 'SIGKILL'));
      }
    }
    await gw?.stop('SIGKILL');
    killGroups(readEvents(f.events).map((e) => e.pid), tmp.dir);
    expect(processesMatching(tmp.dir)).toEqual([]);
    tmp.cleanup();
  });

  it('hands over to a new process under load: no failed request, the app server kept, the PID file moved', async () => {
    const before = await appStatus(control);
    expect(before.phase).toBe('running');
    const oldPid = gw.proc.pid as number;
    expect(readPid(gwPid)).toBe(oldPid);

    const load = new Load(gw.url, { loops: 8, pauseMs: 2 });
    await sleep(400);
    gw.proc.kill('SIGUSR2');
    // While both run, the old PID is in .oldbin and the new one in the PID file.
    // Checked in this order, the rename can fall between the two: neither file is there then, and
    // reading the PID file threw (ENOENT) instead of waiting on (a CI failure).
    await waitUntil(
      () => {
        if (existsSync(`${gwPid}.oldbin`)) return true;
        try {
          return readPid(gwPid) !== oldPid;
        } catch {
          return existsSync(`${gwPid}.oldbin`); // renamed in between
        }
      },
      10_000,
      'the PID file to move',
    );
    const exited = await gw.exited;
    const newPid = readPid(gwPid);
    await sleep(400);
    const outcomes = await load.stop();

    expect(exited).toBe(0);
    expect(newPid).not.toBe(oldPid);
    expect(alive(newPid)).toBe(true);
    expect(existsSync(`${gwPid}.oldbin`)).toBe(false);
    expect(failures(outcomes)).toEqual([]);
    // Requests before and after the handover, none lost.
    expect(outcomes.filter((o) => o.end > 0).length).toBeGreaterThan(100);
    expect(duplicatePosts(readRecord(f.record))).toEqual([]);
    // The new gateway adopted the same app server, answers the control socket, and logs the app.
    const after = await appStatus(control);
    expect(after.pid).toBe(before.pid);
    expect(after.phase).toBe('running');
    expect(gw.output()).toMatch(new RegExp(`"pid":${newPid},[^\\n]*"upgradedFrom":${oldPid}[^\\n]*"gateway started"|"pid":${newPid},[^\\n]*"gateway started"`));
    expect(gw.output()).toContain(`"pid":${oldPid},"msg":"binary upgrade: the new gateway is ready; this one stops gracefully"`);
    // The app server's output, through the pipes the old gateway handed over, is logged by the new one.
    process.kill(before.pid as number, 'SIGUSR2');
    await waitUntil(() => new RegExp(`"pid":${newPid},"component":"supervisor","output":"app"[^\n]*fixture ${before.pid}: SIGUSR2 ignored`).test(gw.output()), 5000, 'the app line logged by the new gateway');
  });

  it('the upgraded gateway restarts the app server (cold) and logs the new one', async () => {
    const before = await appStatus(control);
    const r = await gatewayCommand('restart', control);
    expect(r.code, r.stderr).toBe(0);
    const after = await appStatus(control);
    expect(after.phase).toBe('running');
    expect(after.pid).not.toBe(before.pid);
    const newPid = readPid(gwPid);
    process.kill(after.pid as number, 'SIGUSR2');
    await waitUntil(() => new RegExp(`"pid":${newPid},"component":"supervisor","output":"app"[^\n]*fixture ${after.pid}: SIGUSR2 ignored`).test(gw.output()), 5000, 'the new app line logged by the new gateway');
  });

  it('a second USR2 with a broken configuration fails: the running gateway goes on, its PID file back', async () => {
    const running = readPid(gwPid);
    writeFileSync(config, JSON.stringify({ clientMaxBodySize: 'huge' }));
    const from = gw.output().length;
    process.kill(running, 'SIGUSR2');
    await waitUntil(() => gw.output().slice(from).includes('binary upgrade failed'), 15_000, 'the upgrade to fail');
    expect(readPid(gwPid)).toBe(running);
    expect(existsSync(`${gwPid}.oldbin`)).toBe(false);
    expect(alive(running)).toBe(true);
    // Still serving, and still answering on its control socket.
    const load = new Load(gw.url, { loops: 2, pauseMs: 0 });
    await sleep(200);
    expect(failures(await load.stop())).toEqual([]);
    expect((await appStatus(control)).phase).toBe('running');
  });
});
