/**
 * The admin listener's /metrics after what operators want to see: traffic, a cold restart with
 * held requests, an expired hold, a memory restart; each metric moves as it should, a scrape passes
 * `promtool check metrics`, and /readyz follows the app server (issue 5, "Done when").
 */
import { spawnSync } from 'node:child_process';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendCommand } from '../../src/control/client.js';
import { requireBinary } from '../helpers/debian.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { appCommand, appFiles, appStatus, gatewayCommand, killGroups, readEvents, sleep, waitUntil } from '../helpers/supervised.js';
import { tempDir } from '../helpers/upstream.js';

/** `name{labels} value` lines of a scrape, as a lookup. */
function parse(text: string): (name: string, labels?: string) => number {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    values.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return (name, labels) => values.get(labels ? `${name}{${labels}}` : name) ?? NaN;
}

describe('metrics', () => {
  const tmp = tempDir('gw-metrics-');
  const f = appFiles(tmp.dir);
  const control = `${tmp.dir}/gw.ctl`;
  let gw: RunningGateway;
  let admin: string;

  const scrape = async (): Promise<{ text: string; get: ReturnType<typeof parse> }> => {
    const r = await request(`${admin}/metrics`);
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await r.body.text();
    return { text, get: parse(text) };
  };
  const get = async (path: string) => {
    const r = await request(`${gw.url}${path}`, { headersTimeout: 20_000 });
    await r.body.dump();
    return r;
  };

  beforeAll(async () => {
    gw = await startGateway([
      '--upstream', f.sock,
      '--pid-file', f.pidFile,
      '--control', control,
      '--admin', '127.0.0.1:0',
      '--access-log', 'off',
      '--app-command', appCommand('grows', f),
      '--app-restart', 'cold',
      '--hold-timeout', '1500ms',
      '--check-memory', 'below=120m every=200ms times=2/3',
      '--app-stop-signals', 'QUIT/3s,KILL/1s',
    ]);
    const m = /"admin":"([^"]+)"/.exec(gw.output());
    admin = `http://${m?.[1]}`;
  });

  afterAll(async () => {
    await gw?.stop();
    killGroups(readEvents(f.events).map((e) => e.pid), tmp.dir);
    tmp.cleanup();
  });

  it('counts traffic by method and status class, with durations and bytes', async () => {
    for (let i = 0; i < 4; i++) expect((await get('/traffic')).statusCode).toBe(200);
    const post = await request(`${gw.url}/traffic`, { method: 'POST', body: 'x'.repeat(1000) });
    await post.body.dump();
    const { get: m } = await scrape();
    expect(m('gateway_http_requests_total', 'method="GET",status="2xx"')).toBeGreaterThanOrEqual(4);
    expect(m('gateway_http_requests_total', 'method="POST",status="2xx"')).toBe(1);
    expect(m('gateway_http_request_duration_seconds_count', 'method="GET"')).toBeGreaterThanOrEqual(4);
    expect(m('gateway_http_request_body_bytes_total')).toBeGreaterThanOrEqual(1000);
    expect(m('gateway_http_response_body_bytes_total')).toBeGreaterThan(0);
    expect(m('gateway_upstream_response_time_seconds_count')).toBeGreaterThanOrEqual(5);
    expect(m('gateway_http_connections_accepted_total')).toBeGreaterThanOrEqual(1);
    expect(m('gateway_supervisor_app_up')).toBe(1);
    expect(m('gateway_supervisor_app_rss_bytes')).toBeGreaterThan(10 * 1024 * 1024);
    expect(m('gateway_supervisor_app_start_time_seconds')).toBeGreaterThan(Date.now() / 1000 - 600);
  });

  it('passes promtool check metrics', async () => {
    const promtool = requireBinary('promtool', 'prometheus');
    if (!promtool) return;
    const { text } = await scrape();
    const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('serves OpenMetrics when asked', async () => {
    const r = await request(`${admin}/metrics`, { headers: { accept: 'application/openmetrics-text; version=1.0.0' } });
    expect(r.headers['content-type']).toMatch(/^application\/openmetrics-text/);
    expect((await r.body.text()).trimEnd().endsWith('# EOF')).toBe(true);
  });

  it('counts a cold restart with held requests: held, released, hold time, restarts by reason', async () => {
    const before = (await scrape()).get;
    // Held for certain, whatever the machine's load: the gate is paused before they are sent, the
    // restart runs while they wait, and they go on when the gate resumes.
    expect(await sendCommand(control, 'pause')).toMatchObject({ ok: true, paused: true });
    const during = Promise.all([get('/held-1'), get('/held-2'), get('/held-3')]);
    await sleep(100);
    expect(await sendCommand(control, 'restart')).toMatchObject({ ok: true });
    expect(await sendCommand(control, 'resume')).toMatchObject({ ok: true, paused: false });
    expect((await during).map((r) => r.statusCode)).toEqual([200, 200, 200]);
    const { get: m } = await scrape();
    expect(m('gateway_supervisor_restarts_total', 'reason="manual"')).toBe(before('gateway_supervisor_restarts_total', 'reason="manual"') + 1);
    expect(m('gateway_gate_held_total')).toBeGreaterThanOrEqual(before('gateway_gate_held_total') + 3);
    expect(m('gateway_gate_released_total')).toBeGreaterThanOrEqual(before('gateway_gate_released_total') + 3);
    expect(m('gateway_gate_hold_duration_seconds_count')).toBeGreaterThanOrEqual(3);
    expect(m('gateway_supervisor_last_restart_duration_seconds')).toBeGreaterThan(0);
    expect(m('gateway_gate_held_requests')).toBe(0);
  });

  it('counts an expired hold, and /readyz follows the app server', async () => {
    expect((await request(`${admin}/readyz`)).statusCode).toBe(200);
    expect((await gatewayCommand('stop', control)).code).toBe(0);
    expect((await request(`${admin}/readyz`)).statusCode).toBe(503);
    expect((await request(`${admin}/healthz`)).statusCode).toBe(200);
    const before = (await scrape()).get;
    expect(before('gateway_gate_paused')).toBe(1);
    expect(before('gateway_supervisor_app_up')).toBe(0);
    const r = await get('/expires');
    expect(r.statusCode).toBe(503);
    const { get: m } = await scrape();
    expect(m('gateway_gate_expired_total')).toBe(before('gateway_gate_expired_total') + 1);
    expect(m('gateway_http_requests_total', 'method="GET",status="5xx"')).toBeGreaterThanOrEqual(1);
    expect((await gatewayCommand('start', control)).code).toBe(0);
    expect((await request(`${admin}/readyz`)).statusCode).toBe(200);
  });

  it('counts a memory restart and the failed checks behind it', async () => {
    const before = (await scrape()).get;
    // Each request makes the fixture keep 5 MB more; the check restarts it past 120 MiB.
    for (let i = 0; i < 30; i++) expect((await get('/grow')).statusCode).toBe(200);
    await waitUntil(async () => (await appStatus(control)).restarts.memory >= 1, 10_000, 'a memory restart');
    await waitUntil(async () => (await appStatus(control)).phase === 'running', 10_000, 'running again');
    const { get: m } = await scrape();
    expect(m('gateway_supervisor_restarts_total', 'reason="memory"')).toBeGreaterThanOrEqual(before('gateway_supervisor_restarts_total', 'reason="memory"') + 1);
    expect(m('gateway_supervisor_check_failures_total', 'check="memory"')).toBeGreaterThanOrEqual(1);
    expect(m('gateway_http_requests_total', 'method="GET",status="5xx"')).toBe(before('gateway_http_requests_total', 'method="GET",status="5xx"'));
  });
});
