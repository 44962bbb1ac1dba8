/**
 * A PID file that is a symlink, names PID 1, names an unrelated live process, or holds garbage is
 * refused and nothing is signalled (issue 4, "Done when"). The gateway runs in adopt mode (no
 * --app-command): it manages the server its PID file names, or none.
 *
 * At adoption: each bad file is refused with a log line naming why; `gateway restart` and
 * `gateway stop` then fail with a clear line (nothing adopted, and why), and signal nothing: the
 * app server behind the symlink, the `sleep` of user nobody and PID 1 are all still alive, and the
 * app logged no signal. The gateway keeps proxying to the socket meanwhile.
 *
 * After adoption: a PID file rewritten to name another (root) process, a `sleep` started before
 * the server, is never taken for the server: not on `gateway restart` (the USR2 handoff does not
 * follow it; the fixture has no hot restart, so the restart fails and the old server keeps
 * serving), not when the server dies (the supervisor does not follow the file to it), and `gateway
 * stop` signals only the server it adopted, or nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { appArgv, appFiles, appStatus, gatewayCommand, killGroups, Load, processesMatching, readEvents, sleep, waitUntil, type AppFiles } from '../helpers/supervised.js';
import { tempDir } from '../helpers/upstream.js';

const NOBODY = 65534;
/** A distinctive duration, so pgrep finds our sleeps and no one else's. */
const SLEEP_ARG = `59.${process.pid}`;

function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** An app server started by hand (its own process group), as the gateway finds it in adopt mode. */
async function startApp(f: AppFiles): Promise<ChildProcess> {
  const [bin, ...args] = appArgv('steady', f);
  const app = spawn(bin as string, args, { detached: true, stdio: 'ignore' });
  await waitUntil(() => existsSync(f.pidFile), 5000, `${f.pidFile} written`);
  return app;
}

function startSleep(opts: { uid?: number; gid?: number } = {}): ChildProcess {
  return spawn('sleep', [SLEEP_ARG], { detached: true, stdio: 'ignore', ...opts });
}

/** Replaces `path` atomically, as a planted file would appear: a new inode, mode 0644, owned by root. */
function plant(path: string, content: string): void {
  const tmp = `${path}.planted`;
  writeFileSync(tmp, content, { mode: 0o644 });
  renameSync(tmp, path);
}

function signalsTo(f: AppFiles, pid: number): string[] {
  return readEvents(f.events)
    .filter((e) => e.pid === pid && e.what.startsWith('signal:'))
    .map((e) => e.what);
}

describe('PID file refused at adoption: nothing signalled', () => {
  const tmp = tempDir('gw-sup-pidfile-');
  const f = appFiles(tmp.dir);
  let app: ChildProcess;
  let nobodySleep: ChildProcess;
  const gateways: RunningGateway[] = [];

  beforeAll(async () => {
    app = await startApp(f);
    nobodySleep = startSleep({ uid: NOBODY, gid: NOBODY });
  });

  afterAll(async () => {
    for (const gw of gateways) await gw.stop();
    killGroups([app.pid as number], tmp.dir);
    nobodySleep.kill('SIGKILL');
    await sleep(100);
    expect(processesMatching(tmp.dir)).toEqual([]);
    expect(processesMatching(`sleep ${SLEEP_ARG}`)).toEqual([]);
    tmp.cleanup();
  });

  const cases: { name: string; setup: (path: string) => void; reason: RegExp; victim: () => number }[] = [
    {
      name: 'a symlink to the real PID file of a live server',
      setup: (path) => symlinkSync(f.pidFile, path),
      reason: /is a symbolic link; refusing to follow it/,
      victim: () => app.pid as number,
    },
    { name: 'PID 1', setup: (path) => writeFileSync(path, '1\n', { mode: 0o644 }), reason: /names PID 1 \(init\)/, victim: () => 1 },
    {
      name: 'the PID of an unrelated live process (sleep, user nobody)',
      setup: (path) => writeFileSync(path, `${nobodySleep.pid}\n`, { mode: 0o644 }),
      reason: new RegExp(`process \\d+ runs as uid ${NOBODY}, not one we manage; refusing to adopt it`),
      victim: () => nobodySleep.pid as number,
    },
    { name: 'garbage', setup: (path) => writeFileSync(path, 'abc\n', { mode: 0o644 }), reason: /holds .*abc.*, not a process ID/, victim: () => app.pid as number },
  ];

  for (const [i, c] of cases.entries()) {
    it(`${c.name}: refused; restart and stop fail clearly and signal nothing`, async () => {
      const dir = join(tmp.dir, `case${i}`);
      const pidFile = `${dir}.pid`;
      const control = `${dir}.ctl`;
      c.setup(pidFile);
      const gw = await startGateway(['--upstream', f.sock, '--pid-file', pidFile, '--control', control, '--access-log', 'off', '--app-restart-timeout', '1s', '--app-stop-signals', 'QUIT/1s,KILL/1s']);
      gateways.push(gw);

      const out = await gw.waitForOutput('no app server to adopt');
      const refusal = out.split('\n').find((l) => l.includes('no app server to adopt')) ?? '';
      expect(refusal).toMatch(c.reason);
      expect(await appStatus(control)).toMatchObject({ phase: 'idle', pid: null });

      for (const command of ['restart', 'stop']) {
        const r = await gatewayCommand(command, control);
        expect(r.code, `${command}: ${r.stdout}`).toBe(1);
        const line = r.stderr.trim();
        expect(line).toMatch(new RegExp(`^gateway: ${command} failed: `));
        // The clear line says why: the PID file's own refusal.
        expect(line).toMatch(c.reason);
      }
      // Still managing nothing, not "stopped": the server behind the symlink runs on.
      expect(await appStatus(control)).toMatchObject({ phase: 'idle', pid: null });

      expect(alive(c.victim())).toBe(true);
      expect(alive(app.pid as number)).toBe(true);
      expect(alive(nobodySleep.pid as number)).toBe(true);
      expect(signalsTo(f, app.pid as number)).toEqual([]);
      expect(gw.output()).not.toMatch(/"msg":"stop ladder"/);
      // The proxy goes on serving through the socket, supervised or not.
      const o = await new Load(gw.url, { loops: 0 }).one(`case${i}`, 'GET');
      expect(o.status).toBe(200);
      await gw.stop();
    });
  }
});

describe('PID file planted after adoption: never signalled', () => {
  const tmp = tempDir('gw-sup-planted-');
  let rootSleep: ChildProcess;
  const apps: ChildProcess[] = [];
  const gateways: RunningGateway[] = [];

  beforeAll(() => {
    // Root, like the server, and started before it: the kind of process a stale or planted file names.
    rootSleep = startSleep();
  });

  afterAll(async () => {
    for (const gw of gateways) await gw.stop();
    killGroups(
      apps.map((a) => a.pid as number),
      tmp.dir,
    );
    rootSleep.kill('SIGKILL');
    await sleep(100);
    expect(processesMatching(tmp.dir)).toEqual([]);
    expect(processesMatching(`sleep ${SLEEP_ARG}`)).toEqual([]);
    tmp.cleanup();
  });

  async function adopted(name: string): Promise<{ f: AppFiles; control: string; gw: RunningGateway; pid: number }> {
    const dir = join(tmp.dir, name);
    mkdirSync(dir);
    const f = appFiles(dir);
    const app = await startApp(f);
    apps.push(app);
    const control = join(dir, 'gw.ctl');
    const gw = await startGateway(['--upstream', f.sock, '--pid-file', f.pidFile, '--control', control, '--access-log', 'off', '--app-restart-timeout', '1s', '--app-stop-signals', 'QUIT/1s,KILL/1s']);
    gateways.push(gw);
    expect(await appStatus(control)).toMatchObject({ phase: 'running', pid: app.pid });
    return { f, control, gw, pid: app.pid as number };
  }

  it('restart does not follow the planted file, and stop signals only the adopted server', async () => {
    const { f, control, gw, pid } = await adopted('restart');
    plant(f.pidFile, `${rootSleep.pid}\n`);

    const r = await gatewayCommand('restart', control);
    // USR2 went to the adopted server (it has no hot restart: it logs it and carries on); the handoff
    // never takes the planted PID for a new server, so it fails with the old one still serving.
    expect(r.code, r.stdout).toBe(1);
    expect(r.stderr).toMatch(/restart failed: .*handoff/);
    expect(r.ms).toBeLessThan(5000);
    expect(await appStatus(control)).toMatchObject({ phase: 'running', pid });
    expect(signalsTo(f, pid)).toEqual(['signal:SIGUSR2']);
    expect(alive(rootSleep.pid as number)).toBe(true);
    expect(await gw.waitForOutput('not a new master started by our USR2')).toContain(`"pid":${rootSleep.pid}`);
    expect((await new Load(gw.url, { loops: 0 }).one('after-restart', 'GET')).pid).toBe(pid);

    const s = await gatewayCommand('stop', control);
    expect(s.code, s.stderr).toBe(0);
    expect(signalsTo(f, pid)).toEqual(['signal:SIGUSR2', 'signal:SIGQUIT']);
    expect(alive(pid)).toBe(false);
    expect(alive(rootSleep.pid as number)).toBe(true);
    expect(await appStatus(control)).toMatchObject({ phase: 'stopped', pid: null });
  });

  it('when the adopted server dies, the supervisor does not follow the planted file; stop signals nothing', async () => {
    const { f, control, gw, pid } = await adopted('died');
    plant(f.pidFile, `${rootSleep.pid}\n`);
    process.kill(-pid, 'SIGKILL');
    // No command to start it again: given up, managing nothing.
    await waitUntil(async () => (await appStatus(control)).phase === 'failed', 5000, 'failed');
    expect(await appStatus(control)).toMatchObject({ phase: 'failed', pid: null });
    const out = await gw.waitForOutput('app server died');
    expect(out).toContain('PID file names a process that is not a successor of the app server');
    expect(out).not.toContain('following the PID file"');

    const s = await gatewayCommand('stop', control);
    expect(s.code, s.stderr).toBe(0);
    expect(alive(rootSleep.pid as number)).toBe(true);
    expect(gw.output()).not.toMatch(/"msg":"stop ladder"/);
    expect(signalsTo(f, pid)).toEqual([]);
  });
});
