/**
 * Worker processes (docs/proxy.md, "Worker processes"): `--workers 2` makes the gateway a primary
 * that binds the listener and supervises the app server, with two workers that proxy on the
 * inherited socket. A cold restart of the app server under load loses nothing (every worker's gate
 * pauses, drains and holds); pause/resume and status go through the primary to all workers; the
 * metrics of /metrics are the sum of the workers' (and the primary's supervisor); a worker killed
 * is started again; HUP reaches the workers; QUIT stops them all and the app server, leaving no
 * process. As root with `--user nobody`, only the workers drop to nobody; the primary stays root.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendCommand } from '../../src/control/client.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { appCommand, appFiles, appStatus, duplicatePosts, failures, gatewayCommand, killGroups, Load, processesMatching, readEvents, readRecord, sleep, waitUntil } from '../helpers/supervised.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

/** Real, effective, saved and filesystem uid of a live process. */
function uids(pid: number): number[] {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Uid:')) ?? '';
  return line.split(/\s+/).slice(1, 5).map(Number);
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function workerPids(control: string): Promise<number[]> {
  const reply = await sendCommand(control, 'status', {}, 5000);
  return reply.workers as number[];
}

describe('--workers 2 with the supervisor', () => {
  const tmp = tempDir('gw-workers-');
  const f = appFiles(tmp.dir);
  const control = join(tmp.dir, 'gw.ctl');
  const config = join(tmp.dir, 'gateway.json');
  const gwPidFile = join(tmp.dir, 'gateway.pid');
  let gw: RunningGateway;
  let admin = '';
  /** The primary now: ours, or the one a USR2 started. */
  const primary = (): number => Number(readFileSync(gwPidFile, 'utf8').trim());

  beforeAll(async () => {
    writeFileSync(config, JSON.stringify({ clientMaxBodySize: '1m' }));
    gw = await startGateway([
      '--workers', '2',
      '--config', config,
      '--admin', '127.0.0.1:0',
      '--upstream', f.sock,
      '--pid-file', f.pidFile,
      '--control', control,
      '--access-log', 'off',
      '--app-command', appCommand('steady', f),
      '--app-restart', 'cold',
      '--app-stop-signals', 'QUIT/3s,KILL/1s',
      '--gateway-pid-file', gwPidFile,
    ]);
    const m = /"admin":"([^"]+)","msg":"admin listener started"/.exec(await gw.waitForOutput('admin listener started', 10_000));
    admin = `http://${m?.[1] ?? ''}`;
    await waitUntil(async () => (await appStatus(control)).phase === 'running', 20_000, 'the app server to run');
  });

  afterAll(async () => {
    await gw?.stop('SIGKILL');
    if (existsSync(gwPidFile) && existsSync(`/proc/${primary()}`)) process.kill(primary(), 'SIGKILL');
    killGroups(readEvents(f.events).map((e) => e.pid), tmp.dir);
    await sleep(200);
    for (const line of processesMatching(tmp.dir)) process.kill(Number(line.split(' ')[0]), 'SIGKILL');
    tmp.cleanup();
  });

  it('runs two workers, children of the primary, each listening on the primary socket', async () => {
    const pids = await workerPids(control);
    expect(pids).toHaveLength(2);
    expect(childrenOf(gw.proc.pid as number)).toEqual(expect.arrayContaining(pids));
    expect(gw.output()).toMatch(/"worker":0,"addresses":\["127\.0\.0\.1:\d+"\][^\n]*"worker listening"/);
    expect(gw.output()).toMatch(/"worker":1,"addresses":\["127\.0\.0\.1:\d+"\][^\n]*"worker listening"/);
    const load = new Load(gw.url, { loops: 4, pauseMs: 0, tag: 'first' });
    await sleep(300);
    expect(failures(await load.stop())).toEqual([]);
  });

  it('a cold restart of the app server under load: no request fails, none reaches the app twice', async () => {
    const before = await appStatus(control);
    const load = new Load(gw.url, { loops: 6, pauseMs: 2, tag: 'restart' });
    await sleep(300);
    const r = await gatewayCommand('restart', control);
    expect(r.code, r.stderr).toBe(0);
    await sleep(300);
    const outcomes = await load.stop();
    expect(failures(outcomes)).toEqual([]);
    expect(duplicatePosts(readRecord(f.record))).toEqual([]);
    expect((await appStatus(control)).pid).not.toBe(before.pid);
  });

  it('pause holds requests in every worker, resume releases them; status sums the workers', async () => {
    expect((await gatewayCommand('pause', control)).code).toBe(0);
    const held = Array.from({ length: 6 }, (_, i) => request(`${gw.url}/load?held=${i}`, { reset: true }).then((res) => res.statusCode));
    await waitUntil(async () => (await sendCommand(control, 'status', {}, 5000)).held === 6, 10_000, 'six requests held across the workers');
    const status = await sendCommand(control, 'status', {}, 5000);
    expect(status.paused).toBe(true);
    expect((await gatewayCommand('resume', control)).code).toBe(0);
    expect(await Promise.all(held)).toEqual(Array(6).fill(200));
  });

  it('/metrics sums the workers: every request counted once, the app up, the gate not paused', async () => {
    const metric = async (name: string): Promise<number> => {
      const text = await (await request(`${admin}/metrics`)).body.text();
      return text
        .split('\n')
        .filter((l) => l.startsWith(name))
        .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
    };
    const before = await metric('gateway_http_requests_total');
    await Promise.all(Array.from({ length: 20 }, () => request(`${gw.url}/load`, { reset: true }).then((r) => r.body.dump())));
    // The access is counted when the response ends; the scrape may come a moment after.
    await waitUntil(async () => (await metric('gateway_http_requests_total')) - before === 20, 5000, '20 more requests counted');
    expect(await metric('gateway_supervisor_app_up')).toBe(1);
    expect(await metric('gateway_gate_paused')).toBe(0);
    expect(await metric('gateway_gate_upstream_up')).toBe(1);
  });

  it('a worker killed is started again, and requests go on', async () => {
    const [first] = await workerPids(control);
    process.kill(first as number, 'SIGKILL');
    await waitUntil(async () => {
      const now = await workerPids(control);
      return now.length === 2 && !now.includes(first as number);
    }, 10_000, 'a new worker in place of the killed one');
    expect(gw.output()).toContain('worker died; starting it again');
    const load = new Load(gw.url, { loops: 4, pauseMs: 0, tag: 'respawned' });
    await sleep(300);
    expect(failures(await load.stop())).toEqual([]);
  });

  it('HUP reaches the workers: a new body limit applies to all', async () => {
    writeFileSync(config, JSON.stringify({ clientMaxBodySize: '1k' }));
    const from = gw.output().length;
    gw.proc.kill('SIGHUP');
    await waitUntil(() => gw.output().slice(from).includes('configuration reloaded'), 10_000, 'the reload');
    const statuses = await Promise.all(Array.from({ length: 6 }, () => request(`${gw.url}/load`, { method: 'POST', body: 'x'.repeat(4096), reset: true }).then(async (r) => (await r.body.dump(), r.statusCode))));
    expect(statuses).toEqual(Array(6).fill(413));
  });

  it('USR2 under load: a new primary with its own workers takes the listener; no request fails', async () => {
    // Back to a limit the load's 2 KB POSTs pass, for the old primary's workers too.
    writeFileSync(config, JSON.stringify({ clientMaxBodySize: '1m' }));
    const from = gw.output().length;
    gw.proc.kill('SIGHUP');
    await waitUntil(() => gw.output().slice(from).includes('configuration reloaded'), 10_000, 'the reload');
    const old = primary();
    const oldWorkers = await workerPids(control);
    const load = new Load(gw.url, { loops: 6, pauseMs: 2, tag: 'usr2' });
    await sleep(300);
    gw.proc.kill('SIGUSR2');
    expect(await gw.exited).toBe(0);
    await sleep(300);
    const outcomes = await load.stop();
    expect(failures(outcomes)).toEqual([]);
    expect(primary()).not.toBe(old);
    const workers = await workerPids(control);
    expect(workers).toHaveLength(2);
    expect(workers.some((w) => oldWorkers.includes(w))).toBe(false);
    expect(childrenOf(primary())).toEqual(expect.arrayContaining(workers));
    await waitUntil(() => oldWorkers.every((p) => !existsSync(`/proc/${p}`)), 10_000, 'the old workers to exit');
    expect((await appStatus(control)).phase).toBe('running');
  });

  it('QUIT stops the workers and the app server, and leaves no process', async () => {
    const pids = await workerPids(control);
    const pid = primary();
    process.kill(pid, 'SIGQUIT');
    await waitUntil(() => !existsSync(`/proc/${pid}`) && pids.every((p) => !existsSync(`/proc/${p}`)), 15_000, 'the primary and its workers to exit');
    await waitUntil(() => processesMatching(tmp.dir).length === 0, 10_000, 'the app server to stop');
    expect(existsSync(gwPidFile)).toBe(false);
  });
});

const isRoot = process.getuid?.() === 0;
if (!isRoot) {
  if (process.env.GATEWAY_REQUIRE_DEBIAN === '1') throw new Error('workers.test.ts must run as root in CI');
  process.stderr.write('SKIP: workers.test.ts, --user: needs root; CI runs it as root\n');
}

describe.skipIf(!isRoot)('--workers 2 --user nobody, as root', () => {
  let tmp: ReturnType<typeof tempDir>;
  let upstream: Upstream;
  let gw: RunningGateway | undefined;

  beforeAll(async () => {
    tmp = tempDir('gw-workers-user-');
    chmodSync(tmp.dir, 0o755);
    upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    // The workers (nobody) connect to it, as nginx's workers to Puma's socket.
    chmodSync(upstream.socketPath, 0o666);
  });

  afterAll(async () => {
    await gw?.stop('SIGKILL');
    await upstream?.close();
    tmp?.cleanup();
  });

  it('only the workers run as nobody; the primary keeps root; the access log is the workers\'', async () => {
    const nobody = Number(execFileSync('getent', ['passwd', 'nobody'], { encoding: 'utf8' }).split(':')[2]);
    const log = join(tmp.dir, 'access.log');
    const control = join(tmp.dir, 'gw.ctl');
    gw = await startGateway(['--workers', '2', '--user', 'nobody', '--upstream', upstream.socketPath, '--access-log', log, '--control', control]);
    const body = await new Promise<string>((resolve, reject) => {
      http.get(`${gw!.url}/x`, (r) => {
        let b = '';
        r.on('data', (c: Buffer) => (b += c.toString()));
        r.on('end', () => resolve(b));
      }).on('error', reject);
    });
    expect(body).toBe('ok');
    const workers = await workerPids(control);
    expect(workers).toHaveLength(2);
    for (const w of workers) expect(uids(w)).toEqual([nobody, nobody, nobody, nobody]);
    expect(uids(gw.proc.pid as number)[1]).toBe(0);
    // The control socket stays root's, 0600.
    expect(statSync(control).uid).toBe(0);
    expect(statSync(control).mode & 0o777).toBe(0o600);
    await waitUntil(() => existsSync(log) && readFileSync(log, 'utf8').includes('GET /x '), 5000, 'the access log line');
    expect(statSync(log).uid).toBe(nobody);
    expect(await gw.stop('SIGQUIT')).toBe(0);
    gw = undefined;
  });
});
