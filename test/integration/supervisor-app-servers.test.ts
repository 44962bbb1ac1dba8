/**
 * `gateway restart` under load with the real app servers the host runs (Debian's puma, unicorn,
 * thin), each started by the gateway itself from the host's Procfile-style line (issue 4, "Done
 * when": zero failed requests and no POST seen twice, for each server, PID followed for Unicorn).
 *
 * Per server, in its own mkdtemp dir: the gateway runs the server (`--app-command`, cwd the temp
 * dir, socket and PID file in it); a steady load of GETs and POSTs with 2 KB bodies (keep-alive
 * and new connections, each request tagged with a unique X-Req-Id that fixtures/rack/record.ru
 * appends to a record file on arrival) runs while `gateway restart` is run twice in a row. Then:
 * every request answered 200 (no 5xx, no connection error), no POST id recorded twice, every POST
 * answered 200 recorded exactly once with its whole body, and the PID followed as each server
 * restarts:
 * - Puma (single, and cluster with -w 2): USR2 re-execs in place: the same PID, the PID file
 *   rewritten with the same content, and (cluster) the old workers gone;
 * - Unicorn: USR2 starts a new master (the old PID file renamed .oldbin), whose before_fork QUITs
 *   the old one, as the host's unicorn.rb does: a new PID in the PID file after each restart, the
 *   one status reports, and no process left from before the restart;
 * - Thin: no USR2 restart, so `--app-restart cold` (stop ladder, then start): a new PID.
 * Finally `gateway stop` walks the ladder (QUIT/5s,TERM/3s,KILL/2s; QUIT is enough for each): no
 * server process is left, and the socket and PID file are gone or kept as the server itself leaves
 * them on QUIT (see ServerKind.socketKept: Puma's QUIT is not its graceful stop).
 * Each restart's duration (status lastRestartMs) is printed.
 */
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UNICORN_BEFORE_FORK } from '../helpers/app-servers.js';
import { requireBinary } from '../helpers/debian.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { appFiles, appStatus, duplicatePosts, failures, gatewayCommand, killGroups, Load, processesMatching, readRecord, sleep, type AppFiles, type Outcome } from '../helpers/supervised.js';
import { tempDir } from '../helpers/upstream.js';

const RECORD_APP = fileURLToPath(new URL('../fixtures/rack/record.ru', import.meta.url));
const LADDER = 'QUIT/5s,TERM/3s,KILL/2s';
/** Load before, between and after the restarts, so each server answers some of it. */
const STEADY_MS = 400;

interface ServerKind {
  name: 'puma' | 'unicorn' | 'thin';
  /** How the describe names it (a second Puma runs in cluster mode). */
  label: string;
  pkg: string;
  /** The host's Procfile line with the socket and PID file in `dir` (the app server's cwd). */
  command(dir: string, f: AppFiles): string;
  restart: 'usr2' | 'cold';
  /** Whether the PID changes across `gateway restart`. */
  newPid: boolean;
  /**
   * Whether the socket file is still there once the ladder's QUIT stopped the server. Unicorn never
   * removes it (REFERENCE.md); Thin always does. Puma removes it on its own graceful stop (TERM),
   * but QUIT is not one of Puma's signals: Ruby's default handler raises SignalException, Puma
   * exits through its at_exit hooks (the PID file is deleted) without closing its listeners, so
   * the socket file stays (a later Puma unlinks a socket nobody accepts on before binding), and
   * without finishing requests in flight (a request kept 2 s in Puma is reset by a QUIT). The
   * gateway drains before the ladder, so none of ours is in flight then.
   */
  socketKept: boolean;
}

const SERVERS: ServerKind[] = [
  {
    name: 'puma',
    label: 'puma',
    pkg: 'puma',
    // Procfile: bundle exec puma -e $RACK_ENV -b unix:///tmp/web_server.sock --pidfile /tmp/web_server.pid
    command: (_dir, f) => `puma -e production -b unix://${f.sock} --pidfile ${f.pidFile} config.ru`,
    restart: 'usr2',
    newPid: false,
    socketKept: true,
  },
  {
    name: 'puma',
    label: 'puma -w 2',
    pkg: 'puma',
    // The same in cluster mode: USR2 re-execs the master in place and boots new workers.
    command: (_dir, f) => `puma -e production -w 2 -b unix://${f.sock} --pidfile ${f.pidFile} config.ru`,
    restart: 'usr2',
    newPid: false,
    socketKept: true,
  },
  {
    name: 'unicorn',
    label: 'unicorn',
    pkg: 'unicorn',
    command: (dir, f) => {
      // The host's unicorn.rb: listen and pid, and the before_fork that QUITs the old master.
      writeFileSync(
        join(dir, 'unicorn.conf.rb'),
        [
          `listen ${JSON.stringify(f.sock)}`,
          `pid ${JSON.stringify(f.pidFile)}`,
          'worker_processes 2',
          'preload_app false',
          ...UNICORN_BEFORE_FORK,
          '',
        ].join('\n'),
      );
      return 'unicorn -E production -c unicorn.conf.rb config.ru';
    },
    restart: 'usr2',
    newPid: true,
    socketKept: true,
  },
  {
    name: 'thin',
    label: 'thin',
    pkg: 'thin',
    // Procfile: bundle exec thin start --socket /tmp/web_server.sock --pid /tmp/web_server.pid -e $RACK_ENV
    // (Thin in the foreground does not write --pid: the supervisor writes the PID file for it.)
    command: (_dir, f) => `thin start --socket ${f.sock} --pid ${f.pidFile} -e production -R config.ru`,
    restart: 'cold',
    newPid: true,
    socketKept: false,
  },
];

/** PIDs of the live processes whose command line holds `dir`, except `except` (the gateway). */
function pidsMatching(dir: string, except: number[] = []): number[] {
  return processesMatching(dir)
    .map((l) => Number(l.split(' ')[0]))
    .filter((pid) => !except.includes(pid));
}

/** Alive and not a zombie (an orphaned old master is reaped by whoever adopted it, maybe later). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The process group of `pid`, from /proc (field 5 of stat). */
function pgidOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  } catch {
    return undefined;
  }
}

/** SIGKILL to the process group of each pid (the app server's own, never ours), and to the pid. */
function killProcessGroups(pids: number[]): void {
  const ours = pgidOf(process.pid);
  for (const pid of pids) {
    const pgid = pgidOf(pid);
    for (const target of pgid !== undefined && pgid !== ours && pgid > 1 ? [-pgid, pid] : [pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
}

function readPid(file: string): number {
  return Number(readFileSync(file, 'utf8').trim());
}

/** The requests that were in flight (sent, not yet answered) at some moment of [t0, t1]. */
function during(outcomes: Outcome[], t0: number, t1: number): Outcome[] {
  return outcomes.filter((o) => o.start < t1 && o.end > t0);
}

for (const kind of SERVERS) {
  const bin = requireBinary(kind.name, kind.pkg);
  describe.skipIf(!bin)(`${kind.label}: gateway restart under load, then gateway stop`, () => {
    // Made in beforeAll, so a skipped server leaves no temp dir behind.
    let tmp: { dir: string; cleanup: () => void };
    let f: AppFiles;
    let control: string;
    let gw: RunningGateway;
    /** Every server process seen, for afterAll. */
    const seen = new Set<number>();

    beforeAll(async () => {
      tmp = tempDir(`gw-sup-${kind.label.replace(/\W+/g, '')}-`);
      f = appFiles(tmp.dir);
      control = `${tmp.dir}/gw.ctl`;
      copyFileSync(RECORD_APP, join(tmp.dir, 'config.ru'));
      gw = await startGateway([
        '--upstream', f.sock,
        '--pid-file', f.pidFile,
        '--control', control,
        '--access-log', 'off',
        '--app-command', kind.command(tmp.dir, f),
        '--app-cwd', tmp.dir,
        '--app-env', `GW_RECORD=${f.record}`,
        '--app-env', 'RACK_ENV=production',
        '--app-restart', kind.restart,
        '--app-stop-signals', LADDER,
        // Ruby boots in about a second; the server is up once the gateway's start returns.
        '--app-start-timeout', '30s',
      ]);
      const end = Date.now() + 30_000;
      while ((await appStatus(control)).phase !== 'running') {
        if (Date.now() > end) throw new Error(`${kind.label} not running within 30 s:\n${gw.output()}`);
        await sleep(50);
      }
    }, 45_000);

    afterAll(async () => {
      const gatewayPid = gw?.proc.pid ?? -1;
      for (const pid of pidsMatching(tmp.dir, [gatewayPid])) seen.add(pid);
      await gw?.stop();
      killGroups(seen, tmp.dir);
      // Unicorn's later masters are not group leaders (the first master was): kill their groups by id.
      killProcessGroups(pidsMatching(tmp.dir));
      await sleep(100);
      expect(processesMatching(tmp.dir)).toEqual([]);
      tmp.cleanup();
    }, 30_000);

    it('two restarts in a row: exit 0, no request fails, no POST seen twice, the PID followed', async () => {
      const first = await appStatus(control);
      expect(first.phase).toBe('running');
      const firstPid = first.pid as number;
      expect(readPid(f.pidFile)).toBe(firstPid);
      const pidFileText = readFileSync(f.pidFile, 'utf8');
      for (const pid of pidsMatching(tmp.dir, [gw.proc.pid as number])) seen.add(pid);

      const load = new Load(gw.url, { loops: 6, pauseMs: 10, tag: kind.name[0] });
      await sleep(STEADY_MS);
      const windows: { t0: number; t1: number }[] = [];
      const pids = [firstPid];
      const durations: number[] = [];
      for (let i = 0; i < 2; i++) {
        const before = pidsMatching(tmp.dir, [gw.proc.pid as number]);
        for (const pid of before) seen.add(pid);
        const t0 = performance.now();
        const r = await gatewayCommand('restart', control);
        const t1 = performance.now();
        windows.push({ t0, t1 });
        expect(r.code, `${r.stderr}\n${r.stdout}\n${gw.output()}`).toBe(0);
        expect(r.reply?.ok).toBe(true);
        const st = await appStatus(control);
        expect(st.phase).toBe('running');
        const pid = st.pid as number;
        durations.push(st.lastRestartMs);
        expect(r.reply?.restartedPid).toBe(pid);
        // The PID file names the server status reports, and the one the restart returned.
        expect(readPid(f.pidFile)).toBe(pid);
        // Unicorn: the old master removed its renamed PID file as it left.
        expect(existsSync(`${f.pidFile}.oldbin`)).toBe(false);
        const previous = pids[pids.length - 1] as number;
        // Nothing from before the restart is left but a master that re-exec'd in place (Puma):
        // the old master (Unicorn: QUIT by the new one's before_fork) and the old workers are gone;
        // Thin: the stopped server.
        expect(before.filter((p) => p !== pid && alive(p)), `left from before restart ${i + 1}: ${processesMatching(tmp.dir).join('\n')}`).toEqual([]);
        if (kind.newPid) {
          expect(pid).not.toBe(previous);
        } else {
          // Puma re-execs in place: the same PID, the PID file rewritten with the same content.
          expect(pid).toBe(firstPid);
          expect(readFileSync(f.pidFile, 'utf8')).toBe(pidFileText);
        }
        pids.push(pid);
        for (const p of pidsMatching(tmp.dir, [gw.proc.pid as number])) seen.add(p);
        await sleep(STEADY_MS);
      }
      const outcomes = await load.stop();

      const after = await appStatus(control);
      expect(after.restarts.manual).toBe(2);
      expect(after.restarts.crash).toBe(0);
      if (kind.name === 'unicorn') {
        // Followed through the PID file at each handoff, never taken for a crash.
        expect(gw.output()).not.toContain('app server died');
        expect(gw.output()).not.toContain('falling back to a cold restart');
      }

      // Zero failed requests: every outcome a 200, no connection error.
      expect(failures(outcomes), gw.output().slice(-8000)).toEqual([]);
      const posts = outcomes.filter((o) => o.method === 'POST');
      expect(posts.length).toBeGreaterThan(20);
      // The load ran through each restart: requests were in flight (held) during each.
      for (const w of windows) expect(during(outcomes, w.t0, w.t1).length).toBeGreaterThan(0);

      const record = readRecord(f.record);
      expect(duplicatePosts(record)).toEqual([]);
      // Every POST answered 200 reached the app exactly once, with its whole body.
      const lines = readFileSync(f.record, 'utf8').split('\n').filter((l) => l !== '');
      const postBytes = new Map(lines.filter((l) => l.startsWith('POST ')).map((l) => [l.split(' ')[1], l.split(' ')[3]]));
      expect(posts.filter((o) => !postBytes.has(o.id)).map((o) => o.id)).toEqual([]);
      expect([...postBytes.values()].filter((b) => b !== '2048')).toEqual([]);
      // Each answered GET was recorded too (the record is complete).
      const recorded = new Set(record.map((a) => a.id));
      expect(outcomes.filter((o) => !recorded.has(o.id)).map((o) => o.id)).toEqual([]);

      if (kind.newPid) {
        // Each generation answered part of the load (Unicorn: its workers; Thin: the server).
        const answeredBy = new Set(outcomes.map((o) => o.pid));
        expect(answeredBy.size).toBeGreaterThanOrEqual(3);
      }
      const slowest = Math.max(...outcomes.map((o) => o.end - o.start));
      const inWindows = windows.map((w) => during(outcomes, w.t0, w.t1).length);
      process.stdout.write(
        `supervisor-app-servers ${kind.label}: restarts took ${durations.map((d) => `${d} ms`).join(', ')} (status lastRestartMs; ` +
          `gateway restart returned after ${windows.map((w) => Math.round(w.t1 - w.t0)).join(', ')} ms); ` +
          `pids ${pids.join(' -> ')}; ${outcomes.length} requests (${posts.length} POST), ${inWindows.join(' + ')} in flight during the restarts, 0 failed, slowest ${Math.round(slowest)} ms\n`,
      );
    }, 60_000);

    it('gateway stop walks the ladder: no server process left; socket and PID file as the server leaves them', async () => {
      const pid = (await appStatus(control)).pid as number;
      const t0 = performance.now();
      const r = await gatewayCommand('stop', control);
      const ms = performance.now() - t0;
      expect(r.code, `${r.stderr}\n${gw.output()}`).toBe(0);
      expect((r.reply?.app as { phase: string }).phase).toBe('stopped');
      expect(alive(pid)).toBe(false);
      expect(pidsMatching(tmp.dir, [gw.proc.pid as number]), processesMatching(tmp.dir).join('\n')).toEqual([]);
      // QUIT was enough: each server stops gracefully on it, the ladder went no further.
      const ladder = gw.output().split('\n').filter((l) => l.includes('"stop ladder"') && l.includes(`"pid":${pid}`));
      expect(ladder.map((l) => /"signal":"(\w+)"/.exec(l)?.[1])).toEqual(['SIGQUIT']);
      // The PID file: removed by Puma and Unicorn on exit, by the supervisor for Thin (it wrote it).
      expect(existsSync(f.pidFile)).toBe(false);
      expect(existsSync(`${f.pidFile}.oldbin`)).toBe(false);
      expect(existsSync(f.sock)).toBe(kind.socketKept);
      expect(await appStatus(control)).toMatchObject({ phase: 'stopped', pid: null });
      process.stdout.write(`supervisor-app-servers ${kind.label}: gateway stop returned after ${Math.round(ms)} ms (QUIT)\n`);
    }, 30_000);
  });
}
