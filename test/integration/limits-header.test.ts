/**
 * Request heads past --max-header-size or --max-header-count are answered 431 by the gateway itself
 * (Envoy's and Node's status; nginx says 400/414) and never reach the app.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { parseHead, rawRequest } from '../helpers/raw.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

const MAX_HEADER_COUNT = 10;

describe('request head limits', () => {
  const tmp = tempDir();
  const seen: string[] = [];
  let upstream: Upstream;
  let gw: RunningGateway;

  beforeAll(async () => {
    upstream = await httpUpstream(join(tmp.dir, 'app.sock'), (req, res) => {
      seen.push(req.url ?? '');
      res.end('ok');
    });
    gw = await startGateway(['--upstream', upstream.socketPath, '--max-header-size', '4k', '--max-header-count', String(MAX_HEADER_COUNT), '--access-log', 'off']);
  });

  afterAll(async () => {
    await gw?.stop();
    await upstream?.close();
    tmp.cleanup();
  });

  /** `n` header fields in all, Host (and Connection: close when `close`) included. */
  function headWithFields(path: string, n: number, close = false): string {
    const fields = close ? ['Host: example.test', 'Connection: close'] : ['Host: example.test'];
    for (let i = fields.length; i < n; i++) fields.push(`X-Field-${i}: ${i}`);
    return `GET ${path} HTTP/1.1\r\n${fields.join('\r\n')}\r\n\r\n`;
  }

  it('forwards a 3 KB head (the control for the size refusal below)', async () => {
    const head = `GET /within HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\nX-Pad: ${'p'.repeat(3000)}\r\n\r\n`;
    const r = await rawRequest(gw.port, head);
    expect(r.status).toBe(200);
    expect(seen).toContain('/within');
  });

  it('answers a head larger than --max-header-size with 431 and closes the connection', async () => {
    const head = `GET /too-big HTTP/1.1\r\nHost: example.test\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`;
    const r = await rawRequest(gw.port, head);
    expect(r.status).toBe(431);
    expect(r.closed).toBe(true);
    expect(seen).not.toContain('/too-big');
  });

  it('answers a head with more than --max-header-count fields with 431', async () => {
    const r = await rawRequest(gw.port, headWithFields('/too-many', MAX_HEADER_COUNT + 1));
    expect(r.status).toBe(431);
    // A client error: the gateway does not keep the connection for another request.
    expect(parseHead(r.text).headers.connection).toEqual(['close']);
    expect(r.closed).toBe(true);
    expect(seen).not.toContain('/too-many');
  });

  it('forwards exactly --max-header-count fields (the control for the count refusal)', async () => {
    const r = await rawRequest(gw.port, headWithFields('/exactly', MAX_HEADER_COUNT, true));
    expect(r.status).toBe(200);
    expect(seen).toContain('/exactly');
  });
});
