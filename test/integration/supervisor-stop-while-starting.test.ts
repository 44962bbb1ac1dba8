/**
 * Regression: a gateway stopped while the app server it started was still booting left that server
 * running, orphaned (it was not yet the supervisor's `server`, only its child). Found as fixture
 * processes that outlived failed test runs.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI } from '../helpers/gateway.js';
import { appCommand, appFiles, killGroups, processesMatching, readEvents, sleep, waitUntil } from '../helpers/supervised.js';
import { tempDir } from '../helpers/upstream.js';

describe('stopping the gateway while the app server starts', () => {
  const tmp = tempDir('gw-sup-stopstart-');
  const f = appFiles(tmp.dir);
  afterAll(() => {
    killGroups(readEvents(f.events).map((e) => e.pid), tmp.dir);
    tmp.cleanup();
  });

  it.each(['SIGINT', 'SIGTERM'] as const)('%s stops the booting app server too', async (signal) => {
    const proc = spawn(process.execPath, [CLI, 'run', '--workers', '0', '--listen', '127.0.0.1:0', '--admin', 'null', '--control', 'null', '--access-log', 'off', '--upstream', f.sock, '--pid-file', f.pidFile, '--app-command', appCommand('slow-bind', f, ['--bind-delay', '5000']), '--app-stop-signals', 'TERM/2s,KILL/1s'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    await waitUntil(() => readEvents(f.events).some((e) => e.what === 'start'), 10_000, 'the app to boot');
    await sleep(200);
    expect(processesMatching(tmp.dir).length).toBeGreaterThan(0);
    proc.kill(signal);
    await once(proc, 'exit');
    await waitUntil(() => processesMatching(tmp.dir).length === 0, 5_000, `no app process left after ${signal}:\n${out}`);
  });
});
