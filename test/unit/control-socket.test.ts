import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { lstatSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { sendCommand } from '../../src/control/client.js';
import { ControlServer } from '../../src/control/server.js';
import { tempDir } from '../helpers/upstream.js';

const log = pino({ level: 'silent' });

describe('control socket', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('is created 0600 and answers commands, unknown ones with the list', async () => {
    const path = join(tmp.dir, 'a.ctl');
    const srv = new ControlServer(path, new Map([['ping', () => ({ pong: true })]]), log);
    await srv.listen();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(await sendCommand(path, 'ping')).toEqual({ ok: true, pong: true });
    expect(await sendCommand(path, 'nope')).toEqual({ ok: false, error: 'unknown command "nope"; known: ping' });
    await srv.close();
  });

  it('replaces a stale socket of ours, refuses a live one', async () => {
    const path = join(tmp.dir, 'b.ctl');
    // A live server at the path: refused.
    const live = net.createServer();
    await new Promise<void>((r) => live.listen(path, r));
    await expect(new ControlServer(path, new Map(), log).listen()).rejects.toThrow(/in use by a running gateway/);
    await new Promise((r) => live.close(r));
    // A socket file left behind by a process that was killed (nothing listens): replaced.
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] });
    await once(child.stdout, 'data');
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(lstatSync(path).isSocket()).toBe(true);
    const srv = new ControlServer(path, new Map([['ping', () => ({})]]), log);
    await srv.listen();
    expect(await sendCommand(path, 'ping')).toEqual({ ok: true });
    await srv.close();
  });

  it('never replaces a symlink or a regular file planted at its path', async () => {
    const target = join(tmp.dir, 'victim');
    writeFileSync(target, 'precious');
    const link = join(tmp.dir, 'link.ctl');
    symlinkSync(target, link);
    await expect(new ControlServer(link, new Map(), log).listen()).rejects.toThrow(/not a socket \(a symlink\); refusing/);
    const file = join(tmp.dir, 'file.ctl');
    writeFileSync(file, 'x');
    await expect(new ControlServer(file, new Map(), log).listen()).rejects.toThrow(/not a socket \(a file\); refusing/);
    expect(statSync(target).size).toBe(8);
  });
});
