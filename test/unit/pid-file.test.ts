import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { checkPidIdentity, clearStalePidFile, oldbinPath, PidFileError, readPidFile, removePidFile, writePidFile, type PidFileReason } from '../../src/supervisor/pid-file.js';
import { readProc } from '../../src/supervisor/proc.js';
import { tempDir } from '../helpers/upstream.js';

const ROOT = { allowedUids: [0] };
const NOBODY = 65534;

const started = new Set<ChildProcess>();
function start(cmd: string, args: string[]): ChildProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'], detached: true });
  started.add(child);
  return child;
}
async function killAll(): Promise<void> {
  for (const child of started) {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) continue;
    const exited = once(child, 'exit');
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await exited;
  }
  started.clear();
}
function pidOf(child: ChildProcess): number {
  if (child.pid === undefined) throw new Error('child did not start');
  return child.pid;
}
async function sleeper(): Promise<number> {
  const pid = pidOf(start('sleep', ['30']));
  for (let i = 0; i < 250 && readProc(pid)?.comm !== 'sleep'; i++) await sleep(20);
  return pid;
}
/** The reason of the PidFileError `fn` throws (and that it throws one). */
function reasonOf(fn: () => unknown): PidFileReason {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PidFileError);
    expect((err as PidFileError).code).toBe('GW_ERR_PID_FILE');
    return (err as PidFileError).reason;
  }
  throw new Error('did not throw');
}
function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('did not throw');
}

describe('PID file', () => {
  const tmp = tempDir();
  let n = 0;
  /** A fresh path in the temp dir, optionally with content (mode 0644, owned by root). */
  function file(content?: string, mode = 0o644): string {
    const path = join(tmp.dir, `pid-${++n}`);
    if (content !== undefined) {
      fs.writeFileSync(path, content);
      fs.chmodSync(path, mode);
    }
    return path;
  }
  afterEach(async () => {
    vi.restoreAllMocks();
    await killAll();
  });
  afterAll(() => tmp.cleanup());

  it('reads one decimal PID with optional whitespace around it', () => {
    for (const text of ['4242', '4242\n', '  4242 \n', '\t4242\r\n', '\n4242\n\n'])
      expect(readPidFile(file(text), ROOT)).toBe(4242);
    expect(oldbinPath('/tmp/web_server.pid')).toBe('/tmp/web_server.pid.oldbin');
  });

  it('refuses a symlink without ever reading or writing its target', () => {
    const target = file('4242\n');
    const longAgo = new Date(Math.floor(Date.now() / 1000 - 3 * 86_400) * 1000);
    fs.utimesSync(target, longAgo, longAgo);
    const link = file();
    fs.symlinkSync(target, link);
    expect(reasonOf(() => readPidFile(link, ROOT))).toBe('symlink');
    expect(messageOf(() => readPidFile(link, ROOT))).toMatch(new RegExp(`^PID file ${link} is a symbolic link; refusing to follow it`));
    expect(reasonOf(() => writePidFile(link, 77))).toBe('symlink');
    expect(reasonOf(() => clearStalePidFile(link, [0]))).toBe('symlink');
    expect(removePidFile(link, 4242)).toBe(false);
    // The link is still a link, the target untouched: same content, and (relatime would have
    // updated an atime this old on any read) never read.
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    const st = fs.statSync(target);
    expect(Math.round(st.atimeMs)).toBe(longAgo.getTime());
    expect(Math.round(st.mtimeMs)).toBe(longAgo.getTime());
    expect(fs.readFileSync(target, 'utf8')).toBe('4242\n');

    // A dangling link: refused as a symlink, not reported missing, and its target never created.
    const nowhere = join(tmp.dir, 'created-through-link');
    const dangling = file();
    fs.symlinkSync(nowhere, dangling);
    expect(reasonOf(() => readPidFile(dangling, ROOT))).toBe('symlink');
    expect(reasonOf(() => writePidFile(dangling, 77))).toBe('symlink');
    expect(fs.existsSync(nowhere)).toBe(false);
  });

  it('refuses a regular file owned by a uid not allowed', () => {
    const path = file('4242\n');
    fs.chownSync(path, NOBODY, NOBODY);
    expect(reasonOf(() => readPidFile(path, ROOT))).toBe('owner');
    expect(messageOf(() => readPidFile(path, ROOT))).toBe(
      `PID file ${path} is owned by uid ${NOBODY}, not by uid 0; refusing to trust it: remove it if it was planted, or allow the app server's user`,
    );
    expect(reasonOf(() => clearStalePidFile(path, [0]))).toBe('owner');
    expect(fs.existsSync(path)).toBe(true);
    expect(readPidFile(path, { allowedUids: [0, NOBODY] })).toBe(4242);
  });

  it('refuses a file writable by group or others', () => {
    for (const mode of [0o666, 0o646, 0o664, 0o660]) {
      const path = file('4242\n', mode);
      expect(reasonOf(() => readPidFile(path, ROOT))).toBe('mode');
      expect(messageOf(() => readPidFile(path, ROOT))).toContain(`chmod go-w ${path}`);
    }
    expect(readPidFile(file('4242\n', 0o600), ROOT)).toBe(4242);
    expect(readPidFile(file('4242\n', 0o444), ROOT)).toBe(4242);
  });

  it('refuses garbage', () => {
    const garbage = ['abc', '12 34', '', '-5', '99999999999999999999', '0', '+5', '0x10', '1e3', '12abc', '4242\n4243\n', '4242\0', '\u0664\u0662', ' '.repeat(30) + '4242', '4194305'];
    for (const text of garbage) {
      const path = file(text);
      expect(reasonOf(() => readPidFile(path, ROOT)), JSON.stringify(text)).toBe('garbage');
      expect(messageOf(() => readPidFile(path, ROOT))).toContain(`PID file ${path} holds`);
      expect(reasonOf(() => clearStalePidFile(path, [0]))).toBe('garbage');
      expect(fs.existsSync(path)).toBe(true);
    }
  });

  it('refuses what is not a regular file, a FIFO included (never opened, so never blocks)', () => {
    const dir = file();
    fs.mkdirSync(dir);
    expect(reasonOf(() => readPidFile(dir, ROOT))).toBe('not-regular');
    expect(reasonOf(() => writePidFile(dir, 4242))).toBe('not-regular');
    const fifo = file();
    execFileSync('mkfifo', ['-m', '0644', fifo]);
    expect(reasonOf(() => readPidFile(fifo, ROOT))).toBe('not-regular');
    expect(removePidFile(fifo, 4242)).toBe(false);
    expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
  });

  it('reports a missing file as missing', () => {
    const path = file();
    expect(reasonOf(() => readPidFile(path, ROOT))).toBe('missing');
    expect(reasonOf(() => readPidFile(join(tmp.dir, 'no-dir', 'x.pid'), ROOT))).toBe('missing');
    expect(clearStalePidFile(path, [0])).toBe(false);
    expect(removePidFile(path, 4242)).toBe(false);
  });

  it('refuses PID 1, this process and its parent, in the file and before a signal', () => {
    expect(reasonOf(() => readPidFile(file('1\n'), ROOT))).toBe('pid1');
    expect(reasonOf(() => readPidFile(file(`${process.pid}\n`), ROOT))).toBe('self');
    expect(reasonOf(() => readPidFile(file(`${process.ppid}\n`), ROOT))).toBe('self');
    expect(reasonOf(() => clearStalePidFile(file('1\n'), [0]))).toBe('pid1');
    expect(reasonOf(() => checkPidIdentity(1, {}))).toBe('pid1');
    expect(reasonOf(() => checkPidIdentity(process.pid, {}))).toBe('self');
    expect(reasonOf(() => checkPidIdentity(0, {}))).toBe('garbage');
    expect(reasonOf(() => checkPidIdentity(-1, {}))).toBe('garbage');
    expect(reasonOf(() => writePidFile(file(), 1))).toBe('pid1');
  });

  it('detects a stale PID (the process exited) and clears the file', async () => {
    const child = start('true', []);
    const pid = pidOf(child);
    await once(child, 'exit');
    expect(reasonOf(() => checkPidIdentity(pid, {}))).toBe('stale');
    expect(messageOf(() => checkPidIdentity(pid, {}))).toBe(`process ${pid} does not exist: the PID file is stale; remove it or start the app server`);
    const path = file();
    writePidFile(path, pid);
    expect(clearStalePidFile(path, [0])).toBe(true);
    expect(fs.existsSync(path)).toBe(false);
  });

  it('treats a zombie as stale', async () => {
    // bash forks `sleep 0.2`, then becomes `sleep 30`, which never reaps it.
    const parent = start('bash', ['-c', 'sleep 0.2 & exec sleep 30']);
    let zombie: number | undefined;
    for (let i = 0; i < 250 && zombie === undefined; i++) {
      await sleep(20);
      zombie = fs
        .readdirSync('/proc')
        .filter((d) => /^\d+$/.test(d))
        .map((d) => readProc(Number(d)))
        .find((p) => p !== undefined && p.ppid === parent.pid && p.state === 'Z')?.pid;
    }
    if (zombie === undefined) throw new Error('no zombie appeared');
    expect(reasonOf(() => checkPidIdentity(zombie, {}))).toBe('stale');
    const path = file();
    writePidFile(path, zombie);
    expect(clearStalePidFile(path, [0])).toBe(true);
  });

  it('never clears a file naming a live process', async () => {
    const pid = await sleeper();
    const path = file();
    writePidFile(path, pid);
    expect(clearStalePidFile(path, [0])).toBe(false);
    expect(readPidFile(path, ROOT)).toBe(pid);
  });

  it('refuses a live process that differs from what is expected as a foreign process', async () => {
    const pid = await sleeper();
    const info = readProc(pid);
    if (!info) throw new Error('sleep vanished');
    expect(checkPidIdentity(pid, { uid: info.uid, startTime: info.startTime, cmdlineIncludes: ['sleep', '30'] })).toMatchObject({
      pid,
      uid: info.uid,
      startTime: info.startTime,
      comm: 'sleep',
      cmdline: ['sleep', '30'],
    });
    expect(checkPidIdentity(pid, {}).pid).toBe(pid);

    expect(reasonOf(() => checkPidIdentity(pid, { startTime: info.startTime + 1 }))).toBe('foreign-process');
    expect(messageOf(() => checkPidIdentity(pid, { startTime: info.startTime + 1 }))).toMatch(
      new RegExp(`^process ${pid} \\(sleep\\) is not the app server we manage: it started at \\S+ \\(tick ${info.startTime}, expected ${info.startTime + 1}\\): the PID was reused; not signalling it$`),
    );
    expect(reasonOf(() => checkPidIdentity(pid, { cmdlineIncludes: ['puma'] }))).toBe('foreign-process');
    expect(messageOf(() => checkPidIdentity(pid, { cmdlineIncludes: ['sleep', 'puma', 'unicorn'] }))).toContain(`its command line "sleep 30" does not contain "puma", "unicorn"`);
    expect(messageOf(() => checkPidIdentity(pid, { uid: NOBODY }))).toContain(`it runs as uid ${info.uid}, not ${NOBODY}`);
    // Every difference is named at once.
    expect(messageOf(() => checkPidIdentity(pid, { uid: NOBODY, startTime: 1, cmdlineIncludes: ['puma'] })).split('; ')).toHaveLength(4);
  });

  it('writes atomically: a concurrent reader never sees a partial or missing file', async () => {
    const path = file();
    const stop = file();
    writePidFile(path, 11111);
    const reader = start(process.execPath, [
      '-e',
      `const fs = require('fs');
       const [path, stop] = process.argv.slice(1);
       let reads = 0; const bad = [];
       console.log('ready');
       while (!fs.existsSync(stop)) {
         try { const t = fs.readFileSync(path, 'latin1'); reads++; if (!/^(11111|2222222)\\n$/.test(t)) bad.push(t); }
         catch (e) { bad.push(e.code); }
       }
       console.log(JSON.stringify({ reads, bad: bad.slice(0, 10), badCount: bad.length }));`,
      path,
      stop,
    ]);
    const out: string[] = [];
    reader.stdout?.setEncoding('utf8').on('data', (c: string) => out.push(c));
    await once(reader.stdout as NodeJS.ReadableStream, 'data');
    let writes = 0;
    // Each write fsyncs: under load there may be few of them, but each is a chance to see a torn file.
    for (const end = Date.now() + 1500; Date.now() < end; writes++) writePidFile(path, writes % 2 ? 11111 : 2222222);
    fs.writeFileSync(stop, '');
    await once(reader, 'exit');
    const result = JSON.parse(out.join('').split('\n').filter(Boolean).pop() ?? '{}') as { reads: number; bad: string[]; badCount: number };
    expect(writes).toBeGreaterThan(20);
    expect(result.reads).toBeGreaterThan(20);
    expect(result).toMatchObject({ badCount: 0 });
    // No temp file left behind.
    expect(fs.readdirSync(tmp.dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('writes `${pid}\\n` with mode 0644 whatever the umask, replacing an old file', () => {
    const path = file('999\n', 0o600);
    const old = process.umask(0o077);
    try {
      writePidFile(path, 4242);
    } finally {
      process.umask(old);
    }
    expect(fs.readFileSync(path, 'utf8')).toBe('4242\n');
    expect(fs.statSync(path).mode & 0o7777).toBe(0o644);
    expect(readPidFile(path, ROOT)).toBe(4242);
    expect(reasonOf(() => writePidFile(path, 0))).toBe('garbage');
    expect(reasonOf(() => writePidFile(path, 1.5))).toBe('garbage');
  });

  it('removes its temp file when the rename fails and leaves the old file alone', () => {
    const path = file('999\n');
    vi.spyOn(fs, 'renameSync').mockImplementationOnce(() => {
      throw Object.assign(new Error('EXDEV: cross-device link not permitted'), { code: 'EXDEV' });
    });
    const before = fs.readdirSync(tmp.dir).sort();
    expect(() => writePidFile(path, 4242)).toThrow(/EXDEV/);
    expect(fs.readdirSync(tmp.dir).sort()).toEqual(before);
    expect(fs.readFileSync(path, 'utf8')).toBe('999\n');
  });

  it('removePidFile removes only a file holding its own PID', () => {
    const path = file('4242\n');
    expect(removePidFile(path, 4243)).toBe(false);
    expect(removePidFile(path, 424)).toBe(false);
    expect(fs.readFileSync(path, 'utf8')).toBe('4242\n');
    expect(removePidFile(path, 4242)).toBe(true);
    expect(fs.existsSync(path)).toBe(false);
    expect(removePidFile(file('garbage'), 4242)).toBe(false);
    // Whoever owns it and whatever its mode: what counts is that it names our PID.
    const other = file('4242\n', 0o666);
    fs.chownSync(other, NOBODY, NOBODY);
    expect(removePidFile(other, 4242)).toBe(true);
  });
});
