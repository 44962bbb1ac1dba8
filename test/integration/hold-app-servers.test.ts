/**
 * Holding across real restarts of the real app servers (Debian's puma, unicorn, thin), under
 * concurrent load through the gateway: 12 loops, half on keep-alive connections and half on a new
 * connection per request, plus one more request every 25 ms that waits for no one (so requests keep
 * arriving while the others are held), mixing GET, POST and PUT with small bodies, each tagged with a
 * unique X-Req-Id that the Rack fixture appends to a record file on arrival (GW_RECORD).
 *
 * Per server: a cold restart (graceful stop, 2 s gap, start), the hot restart it has (Puma USR2;
 * Unicorn USR2 + QUIT of the old master from before_fork), a SIGKILL of the whole process group
 * with requests in flight, and the gate's bounds (hold timeout, queue size) against a real outage.
 * The time from the socket accepting again to the first held request reaching the app is measured
 * against the test's own 1 ms connect probe and printed per server.
 *
 * In a graceful stop, a POST already sent may still fail (502, and it is never sent again): Puma
 * and Unicorn reset the connections still in their accept queue when they close the listener, and
 * Thin's stop closes "idle" keep-alive connections with close_connection, which drops responses
 * it had queued but not yet written (the app ran the request). The issue allows exactly that: a
 * POST fails only if it was in flight when the app server went away.
 *
 * Times are CLOCK_MONOTONIC in ms on both sides: Node's process.hrtime.bigint() and Ruby's
 * Process.clock_gettime(Process::CLOCK_MONOTONIC) read the same clock.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool, type Dispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connects, groupMembers, SERVERS, signalGroup, spawnApp, stopGroup, waitGroupEmpty, type AppProcess } from '../helpers/app-servers.js';
import { requireBinary } from '../helpers/debian.js';
import { runCli, startGateway, type RunningGateway } from '../helpers/gateway.js';
import { tempDir } from '../helpers/upstream.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** CLOCK_MONOTONIC in ms, with µs precision. */
const now = (): number => Number(process.hrtime.bigint() / 1000n) / 1000;

const GAP_MS = 2000;
const LOOPS = 12;
/** Besides the loops, one request arrives every ARRIVAL_MS whatever happens to the others. */
const ARRIVAL_MS = 25;
/** Steady load before and after each event. */
const STEADY_MS = 500;
/** The bound asserted on the release lag; the goal (issue 3) is 20 ms, and the figure is printed. */
const RELEASE_BOUND_MS = 500;

interface Echo {
  method: string;
  bodySize: number;
  headers: Record<string, string>;
}

/** What the client saw for one request. */
interface Outcome {
  id: string;
  method: string;
  keepAlive: boolean;
  start: number;
  end: number;
  /** 0: no response (a connection error, in `error`). */
  status: number;
  error?: string;
  retryAfter?: string;
}

/** One line of the fixture's record: a request's arrival at the app, or an app process loading. */
interface Arrival {
  t: number;
  what: string;
  id: string;
  pid: number;
}

function readRecord(file: string): Arrival[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [ns = '0', what = '', id = '', pid = '0'] = l.split(' ');
      return { t: Number(BigInt(ns) / 1000n) / 1000, what, id, pid: Number(pid) };
    });
}

/** How many times each id of `method` reached the app. */
function arrivals(lines: Arrival[], method?: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of lines) if (l.what !== 'BOOT' && (method === undefined || l.what === method)) m.set(l.id, (m.get(l.id) ?? 0) + 1);
  return m;
}

const METHODS = ['GET', 'POST', 'GET', 'PUT', 'POST'] as const;

/** One request through the gateway; never throws. `keepAlive` false: a new connection, closed after. */
async function send(d: Dispatcher, id: string, method: string, keepAlive: boolean, query = ''): Promise<Outcome> {
  const body = method === 'GET' ? undefined : `id=${id}&pad=${'x'.repeat((id.length * 37) % 300)}`;
  const path = (body === undefined ? `/echo/${id}` : '/upload') + query;
  const start = now();
  try {
    const res = await d.request({
      method,
      path,
      headers: { 'x-req-id': id, ...(body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }) },
      body,
      reset: !keepAlive,
    });
    const text = await res.body.text();
    const end = now();
    let error: string | undefined;
    if (res.statusCode === 200) {
      try {
        const echo = JSON.parse(text) as Echo;
        if (echo.method !== method || echo.headers['x-req-id'] !== id || echo.bodySize !== (body?.length ?? 0)) error = `wrong echo: ${text.slice(0, 300)}`;
      } catch {
        error = `not JSON: ${text.slice(0, 300)}`;
      }
    } else if (res.statusCode >= 500 && res.statusCode !== 502 && res.statusCode !== 503) {
      // Not the gateway's own page: say what the app server answered.
      error = JSON.stringify(text.slice(0, 200));
    }
    const ra = res.headers['retry-after'];
    return { id, method, keepAlive, start, end, status: res.statusCode, error, retryAfter: Array.isArray(ra) ? ra.join(',') : ra };
  } catch (err) {
    return { id, method, keepAlive, start, end: now(), status: 0, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
}

/** `LOOPS` concurrent request loops until stop(); even loops keep their connection alive. */
class Load {
  readonly outcomes: Outcome[] = [];
  private stopping = false;
  private readonly running: Promise<void>[] = [];
  private readonly pools: Pool[] = [];

  private readonly arrivals: NodeJS.Timeout;

  constructor(url: string, prefix: string, query = '') {
    for (let i = 0; i < LOOPS; i++) {
      const pool = new Pool(url, { connections: 1 });
      this.pools.push(pool);
      this.running.push(this.loop(pool, prefix, i, i % 2 === 0, query));
    }
    // The loops wait for their answers, so during an outage each has one request held and sends
    // no more; users do not wait for each other: one more request arrives every ARRIVAL_MS.
    const open = new Pool(url, { connections: 256 });
    this.pools.push(open);
    let n = 0;
    this.arrivals = setInterval(() => {
      const i = n++;
      this.running.push(send(open, `${prefix}-a-${i}`, METHODS[i % METHODS.length] as string, i % 2 === 0, query).then((o) => void this.outcomes.push(o)));
    }, ARRIVAL_MS);
  }

  private async loop(pool: Pool, prefix: string, i: number, keepAlive: boolean, query: string): Promise<void> {
    for (let n = 0; !this.stopping; n++) {
      this.outcomes.push(await send(pool, `${prefix}-${i}-${n}`, METHODS[(i + n) % METHODS.length] as string, keepAlive, query));
    }
  }

  async stop(): Promise<Outcome[]> {
    this.stopping = true;
    clearInterval(this.arrivals);
    await Promise.all(this.running);
    await Promise.all(this.pools.map((p) => p.destroy()));
    return this.outcomes;
  }
}

function describeOutcome(o: Outcome, t0: number): string {
  return `${o.id} ${o.method} ${o.keepAlive ? 'keep-alive' : 'new-conn'} +${(o.start - t0).toFixed(0)}..+${(o.end - t0).toFixed(0)} ms: ${o.status}${o.error ? ` ${o.error}` : ''}`;
}

const ok = (o: Outcome) => o.status >= 200 && o.status < 300 && o.error === undefined;

/** Resolves when `cond` holds; throws with `what` after `timeoutMs`. */
async function waitFor(cond: () => boolean, timeoutMs: number, what: string, pollMs = 5): Promise<void> {
  const deadline = now() + timeoutMs;
  while (!cond()) {
    if (now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

/** The test's own probe: a connect() every 1 ms; returns when the first one was accepted. */
async function acceptingAt(sock: string, app: AppProcess, timeoutMs = 30_000): Promise<number> {
  const deadline = now() + timeoutMs;
  for (;;) {
    if (app.proc.exitCode !== null || app.proc.signalCode !== null) throw new Error(`app server exited (${app.proc.exitCode ?? app.proc.signalCode}) before accepting on ${sock}:\n${app.output()}`);
    if (await connects(sock)) return now();
    if (now() > deadline) throw new Error(`${sock} not accepting after ${timeoutMs} ms:\n${app.output()}`);
    await sleep(1);
  }
}

interface Release {
  /** Socket accepting (our probe) → the first held request at the app. */
  lag: number;
  /** Socket accepting → the app loaded (config.ru evaluated) in the first process; negative when before. */
  appLoaded: number;
  /**
   * From the moment the app server could serve (accepting and loaded) to the first held request at
   * the app: the gateway's share. Unicorn's master binds the socket before its workers load the
   * app (no preload_app), so there the socket accepts for a while before anything can answer.
   */
  sinceReady: number;
  /** Socket accepting → the last of the held requests at the app (how long the queue took to drain). */
  last: number;
}

/** `held`: the requests that were waiting when the socket accepted; `since`: when the app was started. */
function release(lines: Arrival[], held: Outcome[], since: number, acceptAt: number): Release {
  const first = Math.min(...lines.filter((l) => l.what !== 'BOOT' && l.t > since).map((l) => l.t));
  const loaded = Math.min(...lines.filter((l) => l.what === 'BOOT' && l.t > since).map((l) => l.t));
  const ids = new Set(held.map((o) => o.id));
  const last = Math.max(...lines.filter((l) => ids.has(l.id) && l.t > since).map((l) => l.t));
  return { lag: first - acceptAt, appLoaded: loaded - acceptAt, sinceReady: first - Math.max(acceptAt, loaded), last: last - acceptAt };
}

const describeRelease = (r: Release) =>
  `release lag: socket accepting -> first held request at the app ${r.lag.toFixed(1)} ms (app loaded at ${r.appLoaded.toFixed(1)} ms; ${r.sinceReady.toFixed(1)} ms after both), last held one at ${r.last.toFixed(0)} ms`;

const report: string[] = [];
function print(line: string): void {
  report.push(line);
  process.stdout.write(`hold-app-servers: ${line}\n`);
}

afterAll(() => {
  if (report.length > 0) process.stdout.write(`\nhold-app-servers summary:\n${report.map((l) => `  ${l}`).join('\n')}\n`);
});

for (const kind of SERVERS) {
  const bin = requireBinary(kind.bin, kind.pkg);

  describe.skipIf(!bin)(`holding across ${kind.name} restarts`, () => {
    let tmp: ReturnType<typeof tempDir> | undefined;
    let sock = '';
    let pidFile = '';
    let record = '';
    let ctl = '';
    let app: AppProcess | undefined;
    /** Every process group we started, checked empty at the end. */
    const groups = new Set<number>();
    let gw: RunningGateway | undefined;
    let gwBounded: RunningGateway | undefined;
    // Thin 1.8 keeps at most 100 connections persistent (DEFAULT_MAXIMUM_PERSISTENT_CONNECTIONS),
    // yet still answers "Connection: keep-alive" on the 101st and closes it after the response
    // (Response#persistent? ignores Connection#can_persist?). Releasing ~100 held requests at once
    // opens that many connections; the next request on such a connection is reset unread, and a
    // POST there gets 502. The default --upstream-connections (128) is above that limit; stay below.
    const upstreamConnections = kind.name === 'thin' ? ['--upstream-connections', '90'] : [];

    async function startApp(): Promise<{ startAt: number; acceptAt: number }> {
      const dir = (tmp as { dir: string }).dir;
      const startAt = now();
      app = spawnApp(bin as string, kind.command(dir, sock, pidFile), dir, { GW_RECORD: record });
      groups.add(app.pgid);
      const acceptAt = await acceptingAt(sock, app);
      return { startAt, acceptAt };
    }

    /** The master's PID: Unicorn's changes on USR2 (from the PID file); Thin writes no PID file. */
    function masterPid(): number {
      if (kind.writesPidFile) return Number(readFileSync(pidFile, 'utf8').trim());
      return app?.proc.pid as number;
    }

    /** Graceful stop of the master (as a supervisor would send it); resolves when the group is empty. */
    async function stopGracefully(): Promise<{ stopAt: number; diedAt: number }> {
      const stopAt = now();
      process.kill(masterPid(), kind.gracefulStop);
      if (!(await waitGroupEmpty(app?.pgid as number, 20_000, 5))) throw new Error(`${kind.name} still running 20 s after ${kind.gracefulStop}:\n${app?.output()}`);
      return { stopAt, diedAt: now() };
    }

    async function gateStats(control = ctl): Promise<Record<string, number>> {
      const r = await runCli(['status', '--control', control]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { stats: Record<string, number> }).stats;
    }

    /** On a failure: the gateway's warnings and errors, and the access log's 5xx and cut requests. */
    function diagnostics(): string {
      const gwLines = gw!.output().split('\n').filter((l) => /"level":[4-6]\d/.test(l));
      let access: string[] = [];
      try {
        access = readFileSync(join((tmp as { dir: string }).dir, 'access.log'), 'utf8').split('\n').filter((l) => /"status":(5\d\d|499)|"error":"/.test(l));
      } catch {
        // no access log yet
      }
      return `--- gateway warnings and errors:\n${gwLines.slice(-40).join('\n')}\n--- access log, 5xx and errors:\n${access.slice(-40).join('\n')}`;
    }

    const delta = (a: Record<string, number>, b: Record<string, number>) => Object.fromEntries(['held', 'released', 'replayed', 'expired', 'overflowed'].map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]));

    /** Asserts the record: no POST id twice, and every POST answered 200 reached the app exactly once. */
    function expectPostsOnce(out: Outcome[], lines: Arrival[]): void {
      const posts = arrivals(lines, 'POST');
      expect([...posts].filter(([, n]) => n > 1), 'POST ids that reached the app more than once').toEqual([]);
      const answeredNotOnce = out.filter((o) => o.method === 'POST' && o.status === 200 && posts.get(o.id) !== 1).map((o) => `${o.id}: ${posts.get(o.id) ?? 0} arrivals`);
      expect(answeredNotOnce, 'POSTs answered 200 must have reached the app exactly once').toEqual([]);
    }

    beforeAll(async () => {
      tmp = tempDir(`gw-hold-${kind.name}-`);
      sock = join(tmp.dir, 'web_server.sock');
      pidFile = join(tmp.dir, 'web_server.pid');
      record = join(tmp.dir, 'record.log');
      ctl = join(tmp.dir, 'ctl.sock');
      await startApp();
      // One client address opens up to 272 connections here (256 arrivals while the app is down,
      // the loops, the markers): past maxConnectionsPerClient (256) they would be closed at accept.
      gw = await startGateway(['--upstream', sock, '--control', ctl, '--access-log', join(tmp.dir, 'access.log'), '--access-log-format', 'json', '--max-connections-per-client', 'null', ...upstreamConnections]);
    });

    afterAll(async () => {
      await gw?.stop('SIGTERM');
      await gwBounded?.stop('SIGTERM');
      for (const pgid of groups) {
        signalGroup(pgid, 'SIGKILL');
        await waitGroupEmpty(pgid, 10_000);
      }
      tmp?.cleanup();
    });

    it('cold restart (graceful stop, a 2 s gap, start): every request 2xx but POSTs in flight at the stop (502), none reaches the app twice', async () => {
      const before = await gateStats();
      const t0 = now();
      const load = new Load(gw!.url, 'cold');
      await sleep(STEADY_MS);
      const { stopAt, diedAt } = await stopGracefully();
      const stoppedOutput = app!.output();
      await sleep(GAP_MS);
      const { startAt, acceptAt } = await startApp();
      await sleep(STEADY_MS);
      const out = await load.stop();
      const stats = delta(before, await gateStats());
      const lines = readRecord(record);

      const inGap = out.filter((o) => o.start > diedAt && o.start < acceptAt);
      const failed = out.filter((o) => !ok(o));
      // The one failure the issue allows: a POST (never sent twice) that was in flight when the app
      // server went away, i.e. sent to it after the stop began and before it was gone.
      const inFlightPost = (o: Outcome) => o.method === 'POST' && o.status === 502 && o.start < diedAt && o.end > stopAt;
      const failedPosts = failed.filter(inFlightPost);
      const seen = arrivals(lines);
      const r = release(lines, out.filter((o) => o.start < acceptAt && o.end > acceptAt), startAt, acceptAt);
      const heldMax = Math.max(...inGap.map((o) => o.end - o.start));
      print(
        `${kind.name} cold restart: ${out.length} requests, ${inGap.length} arrived in the ${(acceptAt - diedAt).toFixed(0)} ms without a listener (held up to ${heldMax.toFixed(0)} ms), ` +
          `${failed.length} failed (${failedPosts.length} POSTs in flight at the stop, reached the app: ${failedPosts.filter((o) => seen.has(o.id)).length}); ` +
          `stop took ${(diedAt - stopAt).toFixed(0)} ms; gate ${JSON.stringify(stats)}; ${describeRelease(r)}`,
      );

      const why = `${diagnostics()}\n--- ${kind.name} output until it stopped:\n${stoppedOutput.slice(-1500)}`;
      expect(inGap.length, 'requests must have arrived during the gap').toBeGreaterThanOrEqual(LOOPS / 2);
      expect(inGap.filter((o) => !ok(o)).map((o) => describeOutcome(o, t0)), why).toEqual([]);
      expect(failed.filter((o) => !inFlightPost(o)).map((o) => describeOutcome(o, t0)), why).toEqual([]);
      expectPostsOnce(out, lines);
      // The held requests really waited for the new app server, and only its listener ended the wait.
      for (const o of inGap) expect(o.end).toBeGreaterThan(acceptAt);
      expect(stats.held).toBeGreaterThanOrEqual(inGap.length);
      expect(r.sinceReady).toBeLessThan(RELEASE_BOUND_MS);
    });

    // Thin has no USR2 restart (REFERENCE.md): its restarts are cold, tested above. Not registered
    // for it rather than skipped, so CI reports no skipped test.
    const itHot: typeof it | ((...args: unknown[]) => void) = kind.name === 'thin' ? () => undefined : it;
    itHot(`hot restart (${kind.name === 'unicorn' ? 'USR2, then QUIT of the old master from before_fork' : 'USR2'}): zero errors`, async () => {
      const before = await gateStats();
      const t0 = now();
      const oldMaster = masterPid();
      const load = new Load(gw!.url, 'usr2');
      await sleep(STEADY_MS);
      const sigAt = now();
      process.kill(oldMaster, 'SIGUSR2');
      if (kind.name === 'puma') {
        // Puma re-execs in place (same PID, listening fd inherited): done when the app is loaded again.
        await waitFor(() => readRecord(record).some((l) => l.what === 'BOOT' && l.t > sigAt && l.pid === oldMaster), 20_000, 'Puma to re-exec');
      } else {
        // A new master beside the old one; its before_fork QUITs the old master (the .oldbin PID).
        await waitFor(() => !groupMembers(app!.pgid).includes(oldMaster), 20_000, 'the old Unicorn master to quit', 10);
        expect(masterPid()).not.toBe(oldMaster);
      }
      const doneAt = now();
      await sleep(STEADY_MS);
      const out = await load.stop();
      const stats = delta(before, await gateStats());
      const lines = readRecord(record);
      const failed = out.filter((o) => !ok(o));
      print(`${kind.name} USR2: ${out.length} requests, ${failed.length} failed; restart took ${(doneAt - sigAt).toFixed(0)} ms; gate ${JSON.stringify(stats)}`);
      expect(failed.map((o) => describeOutcome(o, t0)), gw!.output().slice(-3000)).toEqual([]);
      expectPostsOnce(out, lines);
      // Requests were answered across the restart by the new processes.
      expect(lines.some((l) => l.what !== 'BOOT' && l.t > doneAt)).toBe(true);
    });

    it('SIGKILL of the process group with requests in flight, then a start: idempotent ones 200, POSTs in flight 502 and never sent twice', async () => {
      const before = await gateStats();
      const t0 = now();
      // This test timed out now and then (1 run in 3 on one machine): requests released onto new
      // upstream connections that a busy Puma left unaccepted (fixed in the pool's growth rule,
      // docs/proxy.md). Near the test's limit it still prints each step's time so far and what the
      // gateway said.
      const steps: string[] = [];
      const step = (what: string) => steps.push(`${what} +${(now() - t0).toFixed(0)} ms`);
      const watchdog = setTimeout(() => {
        const markersAtApp = readRecord(record).filter((l) => l.id.startsWith('marker-')).map((l) => `${l.what} ${l.id} pid ${l.pid} +${(l.t - t0).toFixed(0)} ms`);
        print(`${kind.name} SIGKILL: near the time limit; steps: ${steps.join(', ')}; markers at the app: ${markersAtApp.join(', ') || 'none'}\n${diagnostics()}\n--- gateway output:\n${gw!.output().slice(-4000)}`);
      }, 55_000);
      watchdog.unref();
      // Every load request spends 20 ms in the app, so some are always inside it.
      const load = new Load(gw!.url, 'kill', '?sleep=0.02');
      const markers = new Pool(gw!.url, { connections: 4 });
      await sleep(STEADY_MS);
      // Requests known to be inside the app when it dies: a POST first (waited for in the record),
      // then a GET and a PUT (Thin runs one request at a time, so there they wait in its queue).
      const post = send(markers, 'marker-post', 'POST', false, '?sleep=3');
      await waitFor(() => arrivals(readRecord(record)).has('marker-post'), 10_000, 'the marker POST to reach the app');
      step('marker POST at the app');
      const get = send(markers, 'marker-get', 'GET', false, '?sleep=1');
      const put = send(markers, 'marker-put', 'PUT', false, '?sleep=1');
      await waitFor(() => ['marker-get', 'marker-put'].every((id) => arrivals(readRecord(record)).has(id)), 1000, 'GET and PUT markers').catch(() => sleep(100));
      const master = masterPid();
      const killAt = now();
      signalGroup(app!.pgid, 'SIGKILL');
      await waitGroupEmpty(app!.pgid, 10_000, 5);
      step('killed');
      const diedAt = now();
      // A 1 s gap, and the killed master reaped: Unicorn refuses to start while its PID file names
      // a process that kill(0) finds, and a zombie counts. After USR2 the master is no child of
      // ours but of pid 1, and this VM's init reaps about once a second (systemd at once).
      await Promise.all([sleep(1000), waitFor(() => !existsSync(`/proc/${master}`), 10_000, `PID ${master} to be reaped`, 10)]);
      const { startAt, acceptAt } = await startApp();
      step('started');
      const marks = await Promise.all([post, get, put]);
      step('markers answered');
      await sleep(STEADY_MS);
      const out = await load.stop();
      step('load stopped');
      clearTimeout(watchdog);
      await markers.destroy();
      const stats = delta(before, await gateStats());
      const lines = readRecord(record);
      const seen = arrivals(lines);
      const r = release(lines, [...out, ...marks].filter((o) => o.start < acceptAt && o.end > acceptAt), startAt, acceptAt);

      const idempotentFailed = out.filter((o) => o.method !== 'POST' && !ok(o));
      const post502 = out.filter((o) => o.method === 'POST' && o.status === 502);
      const postOther = out.filter((o) => o.method === 'POST' && !ok(o) && o.status !== 502);
      const later = out.filter((o) => o.start > diedAt && !ok(o));
      print(
        `${kind.name} SIGKILL: ${out.length} requests + 3 markers, ${post502.length} load POSTs 502 (in flight at the kill), ${idempotentFailed.length} idempotent failed; ` +
          `markers: POST ${marks[0].status}, GET ${marks[1].status} (reached the app ${seen.get('marker-get') ?? 0}x), PUT ${marks[2].status} (${seen.get('marker-put') ?? 0}x); gate ${JSON.stringify(stats)}; ` +
          describeRelease(r),
      );

      const slowest = [...out, ...marks].sort((a, b) => b.end - b.start - (a.end - a.start))[0];
      if (slowest) print(`${kind.name} SIGKILL: slowest request ${describeOutcome(slowest, t0)} (accepting at +${(acceptAt - t0).toFixed(0)} ms; at the app at ${lines.filter((l) => l.id === slowest.id).map((l) => `+${(l.t - t0).toFixed(0)}`).join(', ')})`);
      const why = `${diagnostics()}\n--- ${kind.name} output:\n${app!.output().slice(-3000)}`;
      expect(describeOutcome(marks[0], t0)).toMatch(/ 502$/);
      expect(seen.get('marker-post')).toBe(1);
      for (const m of marks.slice(1)) expect(describeOutcome(m, t0), why).toMatch(/ 200$/);
      expect(idempotentFailed.map((o) => describeOutcome(o, t0)), why).toEqual([]);
      expect(postOther.map((o) => describeOutcome(o, t0)), why).toEqual([]);
      // A POST may fail only if it was sent before the app died, or, a race the gateway cannot
      // close without risking a POST twice, if it was dispatched on a pooled connection to the
      // dead server before the gateway had seen that connection close (docs/holding.md): then it
      // went out before the gate noticed the app was down, and the app never saw it.
      // The gateway's log times are epoch ms, ours CLOCK_MONOTONIC ms: convert with the offset read
      // now, and take the first such line at or after the kill (earlier tests logged their own).
      const epochOffset = Date.now() - now();
      const downTimes = [...gw!.output().matchAll(/"time":(\d+),[^\n]*"msg":"app server not accepting; holding requests"/g)].map((m) => Number(m[1]) - epochOffset);
      const gateDownAt = downTimes.find((t) => t >= killAt - 2) ?? Infinity;
      const raced = (o: Outcome) => o.method === 'POST' && o.status === 502 && o.start <= gateDownAt + 5 && !seen.has(o.id);
      expect(post502.filter((o) => o.start >= diedAt && !raced(o)).map((o) => describeOutcome(o, t0)), why).toEqual([]);
      expect(later.filter((o) => !raced(o)).map((o) => describeOutcome(o, t0)), why).toEqual([]);
      expectPostsOnce([...out, ...marks], lines);
      // The GET and the PUT were replayed once each (both were sent when the app died).
      expect(stats.replayed).toBeGreaterThanOrEqual(2);
      expect(killAt).toBeLessThan(diedAt);
      expect(r.sinceReady).toBeLessThan(RELEASE_BOUND_MS);
    });

    it('an outage longer than --hold-timeout 1s: held requests 503 with Retry-After at ~1 s; past --hold-max-requests 5: 503 at once; none sent later', async () => {
      const ctlBounded = join((tmp as { dir: string }).dir, 'ctl-bounded.sock');
      gwBounded = await startGateway(['--upstream', sock, '--hold-timeout', '1s', '--hold-max-requests', '5', '--control', ctlBounded, '--access-log', 'off']);
      const pool = new Pool(gwBounded.url, { connections: 10 });
      expect((await send(pool, 'bounded-warm', 'GET', true)).status).toBe(200);
      const before = await gateStats(ctlBounded);
      await stopGracefully();
      const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => send(pool, `bounded-${i}`, i % 2 === 0 ? 'GET' : 'POST', false)));
      const stats = delta(before, await gateStats(ctlBounded));
      await startApp();
      const after = await send(pool, 'bounded-after', 'POST', false);
      await pool.destroy();
      await gwBounded.stop('SIGTERM');
      gwBounded = undefined;

      const times = burst.map((o) => o.end - o.start).sort((a, b) => a - b);
      print(`${kind.name} bounds: 10 requests while down: ${burst.map((o) => o.status).join(',')}; answered after ${times.map((t) => t.toFixed(0)).join(', ')} ms; gate ${JSON.stringify(stats)}`);
      expect(burst.map((o) => [o.status, o.retryAfter])).toEqual(Array(10).fill([503, '5']));
      // Five over the bound: at once. Five held: at their deadline, 1 s after arrival.
      expect(times.slice(0, 5).every((t) => t < 300), `overflow answered at once: ${times.join(', ')}`).toBe(true);
      expect(times.slice(5).every((t) => t >= 900 && t <= 2000), `held answered at ~1 s: ${times.join(', ')}`).toBe(true);
      expect(stats).toMatchObject({ overflowed: 5, expired: 5, released: 0 });
      // A request answered 503 by the gate was never sent, not even once the app was back.
      expect(after.status).toBe(200);
      const seen = arrivals(readRecord(record));
      expect(burst.filter((o) => seen.has(o.id)).map((o) => o.id)).toEqual([]);
    });

    it('stops the gateway and the app server and leaves no process behind', async () => {
      expect(await gw!.stop('SIGTERM')).toBe(0);
      gw = undefined;
      if (app) await stopGroup(app);
      for (const pgid of groups) expect(groupMembers(pgid), `process group ${pgid}`).toEqual([]);
    });
  });
}
