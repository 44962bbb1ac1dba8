/**
 * The adversarial upstream table (upstream-cases.ts): a raw app that answers with the bytes of each
 * case, and what the client gets. After every case a follow-up request on a new connection must get
 * its own clean answer (never bytes left over from the faulty one) and reach the app exactly once.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { tempDir } from '../helpers/upstream.js';
import { converse, strictApp, type StrictApp } from './harness.js';
import { UPSTREAM_CASES } from './upstream-cases.js';

const tmp = tempDir('gw-adv-up-');
let app: StrictApp;
let gw: RunningGateway;

beforeAll(async () => {
  app = await strictApp(join(tmp.dir, 'app.sock'));
  app.script = (req) => {
    const m = /^\/case\/(\d+)$/.exec(req.target);
    return m ? UPSTREAM_CASES[Number(m[1])]?.answer : undefined;
  };
  gw = await startGateway(['--upstream', app.socketPath, '--proxy-read-timeout', '1s', '--hold-timeout', '0', '--access-log', 'off']);
});

afterAll(async () => {
  await gw?.stop();
  await app?.close();
  tmp.cleanup();
});

describe('adversarial upstream answers', () => {
  it.each(UPSTREAM_CASES.map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
    app.reset();
    const head = c.method === 'POST' ? `POST /case/${i} HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2\r\n\r\nhi` : `GET /case/${i} HTTP/1.1\r\nHost: gw.test\r\n\r\n`;
    const r = await converse(gw.port, [{ data: head }], { expect: 1, settleMs: 300, timeoutMs: 5000 });
    const context = `${c.source}\nreceived: ${JSON.stringify(r.text.slice(0, 300))}`;
    const first = r.responses[0];
    expect(first?.status ?? null, context).toBe(c.status);
    expect(r.responses.length, `one response only; ${context}`).toBe(c.status === null ? 0 : 1);
    if (first) {
      expect(first.complete, context).toBe(c.complete ?? true);
      if (c.body !== undefined) expect(first.body.toString('latin1'), context).toBe(c.body);
    }
    expect(r.closed, `closed? ${context}`).toBe(c.closed);
    await new Promise((res) => setTimeout(res, 100));
    expect(app.errors(), 'the app received bytes a strict parser refuses').toEqual([]);
    expect(app.requests.map((q) => q.target)).toEqual(Array.from({ length: c.appSaw }, () => `/case/${i}`));

    // The follow-up: its own answer, on whatever upstream connection the gateway picks.
    app.reset();
    const f = await converse(gw.port, [{ data: `GET /follow-up-${i} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n` }], { expect: 1 });
    expect(f.responses.map((x) => [x.status, x.body.toString()]), f.text).toEqual([[200, `GET /follow-up-${i} 0`]]);
    await new Promise((res) => setTimeout(res, 50));
    expect(app.errors()).toEqual([]);
    expect(app.requests.map((q) => q.target)).toEqual([`/follow-up-${i}`]);
    expect(gw.proc.exitCode).toBeNull();
  });
});
