/**
 * The adversarial request table (request-cases.ts) against the built gateway and a strict raw app:
 * each case's statuses, whether the connection closes, and exactly what the app received. After
 * every case a follow-up request on a new connection must reach the app as one clean request, and
 * the app must never have received bytes a strict parser reads differently (no desync).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { converse, strictApp, type StrictApp, type StrictRequest } from './harness.js';
import { tempDir } from '../helpers/upstream.js';
import { REQUEST_GROUPS, type ExpectedRequest, type RequestCase } from './request-cases.js';

const tmp = tempDir('gw-adv-');
let app: StrictApp;
let gw: RunningGateway;
let followUps = 0;

beforeAll(async () => {
  app = await strictApp(join(tmp.dir, 'app.sock'));
  gw = await startGateway([
    '--upstream', app.socketPath,
    '--max-header-size', '4k',
    '--max-header-count', '20',
    '--client-max-body-size', '1k',
    '--client-header-timeout', '1s',
    '--client-body-timeout', '1s',
    '--hold-timeout', '0',
    '--access-log', 'off',
  ]);
});

afterAll(async () => {
  await gw?.stop();
  await app?.close();
  tmp.cleanup();
});

function field(req: StrictRequest, name: string): string | null {
  const f = req.headers.find(([n]) => n.toLowerCase() === name);
  return f ? f[1] : null;
}

function describeRequest(r: StrictRequest): string {
  return `${r.method} ${r.target} ${JSON.stringify(r.body.toString('latin1'))}`;
}

/** Waits until the app has seen `n` whole requests, or `ms` passed. */
async function appSettles(n: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (app.requests.length < n && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  // Anything more (a smuggled request) would come right behind: give it a moment.
  await new Promise((r) => setTimeout(r, 50));
}

function checkUpstream(c: RequestCase): void {
  const errors = app.errors();
  expect(errors, 'the app received bytes a strict parser refuses (desync)').toEqual([]);
  if (c.upstream === 'none') {
    const bytes = app.connections.reduce((n, conn) => n + conn.raw.length, 0);
    expect(bytes, 'bytes reached the app').toBe(0);
    return;
  }
  const expected = c.upstream as ExpectedRequest[];
  expect(app.requests.map(describeRequest)).toEqual(expected.map((e) => `${e.method} ${e.target} ${JSON.stringify(e.body ?? '')}`));
  expected.forEach((e, i) => {
    const got = app.requests[i] as StrictRequest;
    for (const [name, value] of Object.entries(e.headers ?? {})) expect(field(got, name), `${e.target}: ${name}`).toBe(value);
  });
  // Left over on a connection: nothing, or (partial) the start of one request the gateway cut.
  const leftovers = app.connections.filter((conn) => conn.parse.rest.length > 0);
  if (!c.partial) expect(leftovers.map((l) => l.parse.rest.toString('latin1'))).toEqual([]);
  else {
    expect(leftovers.length).toBeLessThanOrEqual(1);
    // A cut request's connection is not used again: it is closed by the gateway.
    for (const l of leftovers) expect(l.closed, 'the connection of a cut request was closed').toBe(true);
  }
}

async function followUp(): Promise<void> {
  app.reset();
  const path = `/follow-up-${++followUps}`;
  const r = await converse(gw.port, [{ data: `GET ${path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n` }], { expect: 1 });
  expect(r.responses.map((x) => x.status)).toEqual([200]);
  expect(r.responses[0]?.body.toString()).toBe(`GET ${path} 0`);
  await appSettles(1, 500);
  expect(app.errors()).toEqual([]);
  expect(app.requests.map(describeRequest)).toEqual([`GET ${path} ""`]);
}

for (const [group, cases] of Object.entries(REQUEST_GROUPS)) {
  describe(`adversarial requests: ${group}`, () => {
    it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      app.reset();
      const r = await converse(gw.port, c.steps, { expect: c.statuses.length, methods: c.methods, halfClose: c.halfClose, timeoutMs: c.timeoutMs ?? 6000 });
      const context = `${c.source}\nreceived: ${JSON.stringify(r.text.slice(0, 400))}`;
      expect(r.responses.map((x) => x.status), context).toEqual(c.statuses);
      expect(r.responses.every((x) => x.complete), context).toBe(true);
      expect(r.interim, context).toEqual(c.interim ?? []);
      expect(r.closed, `closed? ${context}`).toBe(c.closed);
      if (c.upstream !== 'none') await appSettles(c.upstream.length, 1000);
      else await new Promise((res) => setTimeout(res, 50));
      checkUpstream(c);
      await followUp();
    });
  });
}
