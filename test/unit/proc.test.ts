import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { bootTimeMs, CLOCK_TICKS, descendants, isAlive, parseStat, readProc, sameProcess, startedAtMs, treeUsage } from '../../src/supervisor/proc.js';
import { tempDir } from '../helpers/upstream.js';

const SLEEP = execFileSync('bash', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim();

// Every child is the leader of its own process group, so killing the group also kills what it forked.
const started = new Set<ChildProcess>();
function start(cmd: string, args: string[]): ChildProcess {
  const child = spawn(cmd, args, { stdio: 'ignore', detached: true });
  started.add(child);
  return child;
}
async function killAll(): Promise<void> {
  for (const child of started) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await exited;
    }
  }
  started.clear();
}
function pidOf(child: ChildProcess): number {
  if (child.pid === undefined) throw new Error('child did not start');
  return child.pid;
}
async function until<T>(fn: () => T | undefined | false, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(20);
  }
}
/** The PID of a process that existed and has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = start('true', []);
  const pid = pidOf(child);
  await once(child, 'exit');
  return pid;
}

describe('proc', () => {
  const tmp = tempDir();
  afterEach(killAll);
  afterAll(() => tmp.cleanup());

  it('parseStat splits at the last ")": comm may hold spaces, parentheses and newlines', () => {
    const rest = 'S 41 41 41 0 -1 4194304 1 0 0 0 7 3 5 6 20 0 1 0 123456 1000 99 18446744073709551615 0';
    expect(parseStat(`42 (a) (b) c) ${rest}\n`)).toEqual({ pid: 42, comm: 'a) (b) c', state: 'S', ppid: 41, utime: 7, stime: 3, cutime: 5, cstime: 6, startTime: 123456 });
    expect(parseStat(`42 (x\n) 1 2 3 (y) ${rest}`)?.comm).toBe('x\n) 1 2 3 (y');
    expect(parseStat(`42 (${') S 1 1 1 0 -1 0 0 0 0 0 9 9 9 9'}) ${rest}`)?.utime).toBe(7);
    expect(parseStat('')).toBeUndefined();
    expect(parseStat('42 (sleep) S 1')).toBeUndefined();
  });

  it('readProc describes this process', () => {
    const me = readProc(process.pid);
    expect(me).toBeDefined();
    if (!me) return;
    expect(me.pid).toBe(process.pid);
    expect(me.ppid).toBe(process.ppid);
    expect(me.uid).toBe(process.getuid?.());
    expect(me.cmdline).toEqual(readFileSync('/proc/self/cmdline', 'utf8').split('\0').slice(0, -1));
    expect(me.rssBytes).toBeGreaterThan(1024 * 1024);
    expect(me.cpuTicks).toBeGreaterThan(0);
    expect(['R', 'S']).toContain(me.state);
    // btime has whole seconds, so the start time is known to about a second.
    expect(Math.abs(startedAtMs(me) - (Date.now() - process.uptime() * 1000))).toBeLessThan(2000);
  });

  it('CLOCK_TICKS and bootTimeMs come from getconf and /proc/stat', () => {
    expect(CLOCK_TICKS).toBe(Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()));
    const btime = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1];
    expect(bootTimeMs()).toBe(Number(btime) * 1000);
    expect(bootTimeMs()).toBeLessThan(Date.now());
  });

  it('readProc parses a process whose comm contains spaces and ")"', async () => {
    // comm is the basename of the path given to execve, so a symlink to sleep names the process.
    const name = 'a b) (c)';
    const link = join(tmp.dir, name);
    symlinkSync(SLEEP, link);
    const child = start(link, ['30']);
    const info = await until(() => {
      const i = readProc(pidOf(child));
      return i?.comm === name && i.state === 'S' && i;
    });
    expect(info).toMatchObject({ pid: child.pid, ppid: process.pid, comm: name, state: 'S', cmdline: [link, '30'] });
    expect(info.rssBytes).toBeGreaterThan(0);
    expect(info.startTime).toBeGreaterThan(0);
  });

  it('a process that is gone, and PIDs that are not PIDs, read as undefined and not alive', async () => {
    const pid = await deadPid();
    expect(readProc(pid)).toBeUndefined();
    expect(isAlive(pid)).toBe(false);
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 53]) {
      expect(readProc(bad)).toBeUndefined();
      // kill(0) and kill(-1) would address whole process groups: never passed on.
      expect(isAlive(bad)).toBe(false);
    }
    expect(isAlive(process.pid)).toBe(true);
    expect(isAlive(1)).toBe(true);
    expect(treeUsage(pid)).toEqual({ rssBytes: 0, cpuTicks: 0, processes: 0 });
    expect(descendants(pid)).toEqual([]);
  });

  it('sameProcess compares the PID and the start time', async () => {
    const child = start(SLEEP, ['30']);
    const a = await until(() => readProc(pidOf(child)));
    const b = readProc(pidOf(child));
    expect(b && sameProcess(a, b)).toBe(true);
    expect(sameProcess(a, { ...a, startTime: a.startTime + 1 })).toBe(false);
    expect(sameProcess(a, { ...a, pid: a.pid + 1 })).toBe(false);
  });

  it('a zombie is returned with state Z, is alive to kill(0), and is not a live descendant', async () => {
    // bash forks `sleep 0.3`, then becomes `sleep 30`, which never reaps it: a zombie.
    const parent = start('bash', ['-c', `${SLEEP} 0.3 & exec ${SLEEP} 30`]);
    const zombie = await until(() =>
      readdirSync('/proc')
        .filter((n) => /^\d+$/.test(n))
        .map((n) => readProc(Number(n)))
        .find((i) => i !== undefined && i.ppid === parent.pid && i.state === 'Z'),
    );
    expect(zombie.ppid).toBe(parent.pid);
    expect(zombie.cmdline).toEqual([]);
    expect(zombie.rssBytes).toBe(0);
    expect(isAlive(zombie.pid)).toBe(true);
    expect(descendants(pidOf(parent))).toEqual([]);
    expect(treeUsage(pidOf(parent)).processes).toBe(1);
  });

  it("descendants and treeUsage see a child's children and sum their RSS", async () => {
    const bash = start('bash', ['-c', `${SLEEP} 30 & ${SLEEP} 30 & wait`]);
    const pid = pidOf(bash);
    const kids = await until(() => {
      const d = descendants(pid);
      return d.length === 2 && d.every((i) => i.comm === 'sleep') && d;
    });
    expect(kids.map((k) => k.ppid)).toEqual([pid, pid]);
    // Grandchildren of this process are found too.
    const mine = descendants(process.pid).map((i) => i.pid);
    expect(mine).toEqual(expect.arrayContaining([pid, ...kids.map((k) => k.pid)]));

    const usage = treeUsage(pid);
    expect(usage.processes).toBe(3);
    const sum = [pid, ...kids.map((k) => k.pid)].reduce((n, p) => n + (readProc(p)?.rssBytes ?? 0), 0);
    // RSS is read twice, a few microseconds apart: allow a page or two of drift.
    expect(Math.abs(usage.rssBytes - sum)).toBeLessThanOrEqual(16 * 1024);
    expect(usage.rssBytes).toBeGreaterThan(readProc(pid)?.rssBytes ?? Infinity);
  });

  it("treeUsage keeps a reaped worker's CPU, so the sum never goes down when a worker exits", async () => {
    // A worker burns ~400 ms of CPU and exits; bash reaps it (its ticks move into bash's cutime).
    const burn = `${process.execPath} -e "const e = Date.now() + 400; while (Date.now() < e);"`;
    const bash = start('bash', ['-c', `${burn}; exec ${SLEEP} 30`]);
    const pid = pidOf(bash);
    let during = 0;
    await until(() => {
      const u = treeUsage(pid);
      if (u.processes === 2) during = Math.max(during, u.cpuTicks);
      return readProc(pid)?.comm === 'sleep';
    });
    const after = treeUsage(pid);
    expect(after.processes).toBe(1);
    expect(during).toBeGreaterThan(0);
    expect(after.cpuTicks).toBeGreaterThanOrEqual(during);
    expect(after.cpuTicks).toBeGreaterThanOrEqual(0.3 * CLOCK_TICKS);
    // The process's own ticks do not include its reaped children: that is treeUsage's job.
    expect(readProc(pid)?.cpuTicks ?? Infinity).toBeLessThan(0.3 * CLOCK_TICKS);
  });
});
