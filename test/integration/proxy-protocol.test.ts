/**
 * The PROXY protocol on a listener that asks for it (`--listen "HOST:PORT proxy_protocol"`) and the
 * client address as nginx's realip module computes it: a raw TCP client plays the load balancer,
 * the app is a real upstream on a Unix socket that answers with the headers it received.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

let tmp: ReturnType<typeof tempDir>;
let echo: Upstream;
/** Trusts 127.0.0.1 and takes the address from the PROXY header. */
let balanced: RunningGateway;
/** Trusts 127.0.0.1 and takes the address from X-Real-IP. */
let realIpHeader: RunningGateway;
/** Trusts only 10.0.0.0/8: our 127.0.0.1 is an untrusted peer. */
let untrusted: RunningGateway;

/** Ports of a gateway's listeners, in --listen order (startGateway's plain one first). */
function ports(gw: RunningGateway): number[] {
  const m = /"listen":\[([^\]]*)\]/.exec(gw.output());
  return [...(m?.[1] ?? '').matchAll(/:(\d+)"/g)].map((x) => Number(x[1]));
}
const proxied = (gw: RunningGateway): number => ports(gw)[1] as number;

/** Every response in `text` (Content-Length framed): status and the upstream's view of the request. */
function responses(text: string): { status: number; seen?: IncomingHttpHeaders }[] {
  const out: { status: number; seen?: IncomingHttpHeaders }[] = [];
  let rest = text;
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const head = rest.slice(0, end);
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
    const body = rest.slice(end + 4, end + 4 + length);
    const status = Number(head.slice(9, 12));
    out.push(status === 200 ? { status, seen: (JSON.parse(body) as { headers: IncomingHttpHeaders }).headers } : { status });
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

const get = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: app.example\r\n${extra}\r\n`;
const last = (path: string, extra = '') => get(path, `${extra}Connection: close\r\n`);

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** A v2 PROXY header for TCP over IPv4, with one TLV (PP2_TYPE_AUTHORITY) after the addresses. */
function v2(src: [number, number, number, number], sport: number): Buffer {
  const addrs = Buffer.alloc(12);
  Buffer.from(src).copy(addrs, 0);
  Buffer.from([127, 0, 0, 1]).copy(addrs, 4);
  addrs.writeUInt16BE(sport, 8);
  addrs.writeUInt16BE(80, 10);
  const tlv = Buffer.concat([Buffer.from([0x02, 0x00, 0x0b]), Buffer.from('app.example')]);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(addrs.length + tlv.length);
  return Buffer.concat([SIG, Buffer.from([0x21, 0x11]), len, addrs, tlv]);
}

beforeAll(async () => {
  tmp = tempDir();
  echo = await httpUpstream(join(tmp.dir, 'echo.sock'), (req, res) => {
    req.resume();
    req.on('end', () => {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ headers: req.headers }));
    });
  });
  const common = ['--upstream', echo.socketPath, '--listen', '127.0.0.1:0 proxy_protocol', '--client-header-timeout', '1s'];
  [balanced, realIpHeader, untrusted] = await Promise.all([
    startGateway([...common, '--trusted-proxies', '127.0.0.1', '--real-ip-header', 'proxy_protocol', '--access-log', join(tmp.dir, 'access.log'), '--access-log-format', 'json']),
    startGateway([...common, '--trusted-proxies', '127.0.0.1', '--real-ip-header', 'X-Real-IP']),
    startGateway([...common, '--trusted-proxies', '10.0.0.0/8', '--real-ip-header', 'X-Real-IP']),
  ]);
});

afterAll(async () => {
  await Promise.all([balanced, realIpHeader, untrusted].map((g) => g?.stop()));
  await echo?.close();
  tmp?.cleanup();
});

describe('a listener with proxy_protocol, the balancer trusted, realIpHeader proxy_protocol', () => {
  it('passes the v1 source on as X-Forwarded-For and X-Real-IP, and logs it as remote_addr', async () => {
    const r = await rawRequest(proxied(balanced), ['PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\n', last('/v1', 'X-Forwarded-For: 6.6.6.6\r\n')]);
    expect(responses(r.text)).toEqual([{ status: 200, seen: expect.objectContaining({ 'x-forwarded-for': '203.0.113.7', 'x-real-ip': '203.0.113.7' }) }]);
    // The entry is written as the response ends, a moment after the client has it.
    let line: string | undefined;
    for (let i = 0; i < 100 && line === undefined; i++) {
      line = readFileSync(join(tmp.dir, 'access.log'), 'utf8').split('\n').find((l) => l.includes('"/v1"'));
      if (line === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    expect(JSON.parse(line ?? '{}')).toMatchObject({ remote_addr: '203.0.113.7', status: 200 });
  });

  it('passes the v2 source on, with TLVs skipped, header and request in one write', async () => {
    const r = await rawRequest(proxied(balanced), Buffer.concat([v2([198, 51, 100, 22], 4000), Buffer.from(last('/v2'))]));
    expect(responses(r.text)).toEqual([{ status: 200, seen: expect.objectContaining({ 'x-forwarded-for': '198.51.100.22', 'x-real-ip': '198.51.100.22' }) }]);
  });

  it('serves keep-alive requests after the header, each with the PROXY source', async () => {
    // The last request closes the connection; the wait is only a bound for a loaded machine.
    const r = await rawRequest(proxied(balanced), ['PROXY TCP6 2001:db8::7 ::1 1 80\r\n' + get('/a'), get('/b'), last('/c')], { waitMs: 10_000 });
    const all = responses(r.text);
    expect(all.map((x) => x.status)).toEqual([200, 200, 200]);
    expect(all.map((x) => x.seen?.['x-real-ip'])).toEqual(['2001:db8::7', '2001:db8::7', '2001:db8::7']);
  });

  it('keeps the TCP peer for v1 UNKNOWN and v2 LOCAL (the balancer speaking for itself)', async () => {
    const unknown = await rawRequest(proxied(balanced), ['PROXY UNKNOWN\r\n', last('/unknown')]);
    expect(responses(unknown.text)[0]?.seen?.['x-real-ip']).toBe('127.0.0.1');
    const local = Buffer.concat([SIG, Buffer.from([0x20, 0x00, 0x00, 0x00]), Buffer.from(last('/local'))]);
    expect(responses((await rawRequest(proxied(balanced), local)).text)[0]?.seen?.['x-real-ip']).toBe('127.0.0.1');
  });

  it('closes a connection that sends plain HTTP, answering nothing, with one warn line', async () => {
    const r = await rawRequest(proxied(balanced), last('/plain'));
    expect(r).toMatchObject({ text: '', closed: true });
    const out = await balanced.waitForOutput('PROXY protocol header refused');
    expect(out).toMatch(/"level":40.*"reason":"no PROXY protocol header".*PROXY protocol header refused/);
  });

  it('closes a connection whose header is malformed or does not come within the client header timeout', async () => {
    expect(await rawRequest(proxied(balanced), ['PROXY TCP4 1.2.3.4 nowhere 1 2\r\n', last('/bad')])).toMatchObject({ text: '', closed: true });
    const slow = await rawRequest(proxied(balanced), 'PROXY TCP4 1.2.3.4', { waitMs: 3000 });
    expect(slow).toMatchObject({ text: '', closed: true });
  });

  it('treats a PROXY line on a listener without proxy_protocol as a bad request (400)', async () => {
    const r = await rawRequest(ports(balanced)[0] as number, ['PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\n', last('/')]);
    expect(r.status).toBe(400);
  });
});

describe('realIpHeader and trust', () => {
  it('takes X-Real-IP from a trusted peer, and forwards as if that client had connected', async () => {
    const r = await rawRequest(ports(realIpHeader)[0] as number, last('/', 'X-Real-IP: 192.0.2.44\r\nX-Forwarded-For: 192.0.2.44\r\n'));
    expect(responses(r.text)[0]?.seen).toMatchObject({ 'x-real-ip': '192.0.2.44', 'x-forwarded-for': '192.0.2.44' });
  });

  it('ignores the PROXY source without realIpHeader proxy_protocol, as nginx keeps $remote_addr', async () => {
    const r = await rawRequest(proxied(realIpHeader), ['PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\n', last('/')]);
    expect(responses(r.text)[0]?.seen).toMatchObject({ 'x-real-ip': '127.0.0.1', 'x-forwarded-for': '127.0.0.1' });
  });

  it("ignores an untrusted peer's X-Real-IP and X-Forwarded-For", async () => {
    const r = await rawRequest(ports(untrusted)[0] as number, last('/', 'X-Real-IP: 192.0.2.44\r\nX-Forwarded-For: 192.0.2.45\r\n'));
    expect(responses(r.text)[0]?.seen).toMatchObject({ 'x-real-ip': '127.0.0.1', 'x-forwarded-for': '127.0.0.1' });
  });

  it("reads an untrusted balancer's PROXY header, but keeps its address as the client's", async () => {
    const r = await rawRequest(proxied(untrusted), ['PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\n', last('/', 'X-Real-IP: 192.0.2.44\r\n')]);
    expect(responses(r.text)[0]?.seen).toMatchObject({ 'x-real-ip': '127.0.0.1', 'x-forwarded-for': '127.0.0.1' });
  });
});
