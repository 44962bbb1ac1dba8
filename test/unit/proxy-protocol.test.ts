import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { acceptProxyProtocol, parseProxyHeader, proxyHeaderOf, type ParseResult } from '../../src/proxy/proxy-protocol.js';

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const HTTP = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');

/** A v2 header: version/command byte, family/protocol byte, then the address block and TLVs. */
function v2(verCmd: number, famProto: number, body: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(body.length);
  return Buffer.concat([SIG, Buffer.from([verCmd, famProto]), len, body]);
}
function inet(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return b;
}
function inet6(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(36);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 16);
  b.writeUInt16BE(sport, 32);
  b.writeUInt16BE(dport, 34);
  return b;
}
const v6 = (...tail: number[]): number[] => [...new Array<number>(16 - tail.length).fill(0), ...tail];
const done = (r: ParseResult) => (r.state === 'done' ? r : expect.fail(`not done: ${JSON.stringify(r)}`));
const reason = (r: ParseResult) => (r.state === 'invalid' ? r.reason : expect.fail(`not invalid: ${JSON.stringify(r)}`));

describe('PROXY protocol v1', () => {
  it('reads TCP4 and says where HTTP begins', () => {
    const line = 'PROXY TCP4 203.0.113.7 10.0.0.5 56324 80\r\n';
    const r = done(parseProxyHeader(Buffer.concat([Buffer.from(line), HTTP])));
    expect(r.length).toBe(line.length);
    expect(r.header).toEqual({ version: 1, source: { address: '203.0.113.7', port: 56324 }, destination: { address: '10.0.0.5', port: 80 } });
  });

  it('reads TCP6, an IPv4-mapped source as IPv4', () => {
    expect(done(parseProxyHeader(Buffer.from('PROXY TCP6 2001:DB8::1 2001:db8::2 1 443\r\n'))).header.source).toEqual({ address: '2001:db8::1', port: 1 });
    expect(done(parseProxyHeader(Buffer.from('PROXY TCP6 ::ffff:198.51.100.1 ::1 1 2\r\n'))).header.source?.address).toBe('198.51.100.1');
  });

  it('reads UNKNOWN with or without addresses: the TCP peer stands', () => {
    expect(done(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))).header).toEqual({ version: 1 });
    const line = 'PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n';
    const r = done(parseProxyHeader(Buffer.from(`${line}GET`)));
    expect(r.header.source).toBeUndefined();
    expect(r.length).toBe(line.length);
  });

  it('takes the longest valid line, 107 bytes, and refuses one byte more', () => {
    const a = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    const longest = `PROXY UNKNOWN ${a} ${a} 65535 65535\r\n`;
    expect(longest.length).toBe(107);
    expect(done(parseProxyHeader(Buffer.from(longest))).length).toBe(107);
    expect(done(parseProxyHeader(Buffer.from(`PROXY TCP6 ${a} ${a} 65535 65535\r\n`))).header.source?.port).toBe(65535);
    expect(reason(parseProxyHeader(Buffer.from(`PROXY UNKNOWN ${'x'.repeat(92)}\r\n`)))).toMatch(/longer than 107/);
    expect(reason(parseProxyHeader(Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`)))).toMatch(/longer than 107/);
  });

  it('waits for more while the line may still be complete', () => {
    for (const part of ['P', 'PROXY', 'PROXY ', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r']) {
      expect(parseProxyHeader(Buffer.from(part)).state, part).toBe('incomplete');
    }
  });

  it('refuses malformed lines', () => {
    const bad = [
      'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n',
      'PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n',
      'PROXY TCP4 ::1 5.6.7.8 1 2\r\n',
      'PROXY TCP6 1.2.3.4 ::1 1 2\r\n',
      'PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n',
      'PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n',
      'PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n',
      'PROXY \r\n',
    ];
    for (const line of bad) expect(parseProxyHeader(Buffer.from(line)).state, JSON.stringify(line)).toBe('invalid');
  });

  it('refuses plain HTTP and garbage at the first byte that cannot start a header', () => {
    expect(reason(parseProxyHeader(HTTP))).toBe('no PROXY protocol header');
    expect(parseProxyHeader(Buffer.from('PRI * HTTP/2.0')).state).toBe('invalid');
    expect(parseProxyHeader(Buffer.from([0x16, 0x03, 0x01])).state).toBe('invalid');
    expect(parseProxyHeader(Buffer.from('proxy tcp4')).state).toBe('invalid');
  });
});

describe('PROXY protocol v2', () => {
  it('reads AF_INET over TCP', () => {
    const h = v2(0x21, 0x11, inet([192, 0, 2, 10], [10, 0, 0, 5], 40000, 80));
    const r = done(parseProxyHeader(Buffer.concat([h, HTTP])));
    expect(r.length).toBe(28);
    expect(r.header).toEqual({ version: 2, source: { address: '192.0.2.10', port: 40000 }, destination: { address: '10.0.0.5', port: 80 } });
  });

  it('reads AF_INET6, written as RFC 5952 text; a v4-mapped source as IPv4', () => {
    const src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const r = done(parseProxyHeader(v2(0x21, 0x21, inet6(src, v6(1), 1234, 443))));
    expect(r.header.source).toEqual({ address: '2001:db8::1', port: 1234 });
    expect(r.header.destination?.address).toBe('::1');
    expect(done(parseProxyHeader(v2(0x21, 0x21, inet6(v6(0xff, 0xff, 198, 51, 100, 9), v6(1), 1, 2)))).header.source?.address).toBe('198.51.100.9');
    const mid = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    expect(done(parseProxyHeader(v2(0x21, 0x21, inet6(mid, v6(1), 1, 2)))).header.source?.address).toBe('2001:db8::1:0:0:1');
    expect(done(parseProxyHeader(v2(0x21, 0x21, inet6(v6(), v6(), 1, 2)))).header.source?.address).toBe('::');
  });

  it('skips TLVs after the addresses', () => {
    // PP2_TYPE_AUTHORITY "example.com", then AWS's PP2_TYPE_AWS (0xEA) with a VPC endpoint id.
    const authority = Buffer.concat([Buffer.from([0x02, 0x00, 0x0b]), Buffer.from('example.com')]);
    const aws = Buffer.concat([Buffer.from([0xea, 0x00, 0x17, 0x01]), Buffer.from('vpce-08d2bf15fac5001c9')]);
    const h = v2(0x21, 0x11, Buffer.concat([inet([198, 51, 100, 22], [10, 0, 0, 5], 1, 80), authority, aws]));
    const r = done(parseProxyHeader(Buffer.concat([h, HTTP])));
    expect(r.length).toBe(h.length);
    expect(r.header.source?.address).toBe('198.51.100.22');
  });

  it('uses the TCP peer for LOCAL, UNSPEC and AF_UNIX', () => {
    expect(done(parseProxyHeader(v2(0x20, 0x00, Buffer.alloc(0)))).header).toEqual({ version: 2 });
    // LOCAL may still carry addresses (health checks from some balancers): ignored.
    expect(done(parseProxyHeader(v2(0x20, 0x11, inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)))).header.source).toBeUndefined();
    expect(done(parseProxyHeader(v2(0x21, 0x00, Buffer.alloc(0)))).header.source).toBeUndefined();
    expect(done(parseProxyHeader(v2(0x21, 0x31, Buffer.alloc(216)))).header.source).toBeUndefined();
  });

  it('waits for the signature, the fixed part and the whole length', () => {
    const h = v2(0x21, 0x11, inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    for (let n = 1; n < h.length; n++) expect(parseProxyHeader(h.subarray(0, n)).state, `${n} bytes`).toBe('incomplete');
    expect(parseProxyHeader(h).state).toBe('done');
  });

  it('refuses a bad version, command, family, or a length shorter than the addresses', () => {
    expect(reason(parseProxyHeader(v2(0x11, 0x11, inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2))))).toMatch(/version 1/);
    expect(reason(parseProxyHeader(v2(0x22, 0x11, inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2))))).toMatch(/command 2/);
    expect(reason(parseProxyHeader(v2(0x21, 0x41, Buffer.alloc(12))))).toMatch(/family/);
    expect(reason(parseProxyHeader(v2(0x21, 0x13, Buffer.alloc(12))))).toMatch(/family/);
    expect(reason(parseProxyHeader(v2(0x21, 0x11, Buffer.alloc(11))))).toMatch(/shorter than its addresses/);
    expect(reason(parseProxyHeader(v2(0x21, 0x21, Buffer.alloc(12))))).toMatch(/shorter than its addresses/);
    // A bad version is refused from the fixed part, before the announced length arrives.
    const partial = Buffer.concat([SIG, Buffer.from([0x31, 0x11, 0xff, 0xff])]);
    expect(parseProxyHeader(partial).state).toBe('invalid');
  });

  it('refuses a broken signature', () => {
    const h = v2(0x21, 0x11, inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    h[7] = 0x71;
    expect(reason(parseProxyHeader(h))).toBe('no PROXY protocol header');
  });
});

describe('acceptProxyProtocol on a real server', () => {
  const open: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of open.splice(0)) await close();
  });

  async function serve(timeout = 2000): Promise<{ port: number; refused: string[]; seen: string[] }> {
    const refused: string[] = [];
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      const src = proxyHeaderOf(req.socket)?.source;
      seen.push(`${req.url} ${src ? `${src.address}:${src.port}` : 'peer'}`);
      res.end(`${req.url}\n`);
    });
    acceptProxyProtocol(server, { timeout: () => timeout, onInvalid: (_peer, why) => refused.push(why) });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    open.push(() => new Promise<void>((r) => server.close(() => r())));
    return { port: (server.address() as AddressInfo).port, refused, seen };
  }

  /** Writes the parts with a pause between them; resolves with all the server sent and whether it closed. */
  function talk(port: number, parts: Buffer[], waitMs = 300): Promise<{ text: string; closed: boolean }> {
    return new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let text = '';
      let closed = false;
      s.on('data', (d) => (text += d.toString('latin1')));
      s.on('error', () => undefined);
      s.on('close', () => (closed = true));
      void (async () => {
        for (const p of parts) {
          if (!s.destroyed) s.write(p);
          await new Promise((r) => setTimeout(r, 20));
        }
        await new Promise((r) => setTimeout(r, waitMs));
        s.destroy();
        resolve({ text, closed });
      })();
    });
  }

  const get = (path: string) => Buffer.from(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);

  it('hands the bytes after the header to HTTP in order, the header split across reads', async () => {
    const { port, seen } = await serve();
    const header = Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.5 56324 80\r\n');
    const first = Buffer.concat([header.subarray(20), get('/a'), get('/b').subarray(0, 5)]);
    const r = await talk(port, [header.subarray(0, 20), first, get('/b').subarray(5), get('/c')]);
    expect(r.text.match(/^\/[abc]$/gm)).toEqual(['/a', '/b', '/c']);
    expect(seen).toEqual(['/a 203.0.113.7:56324', '/b 203.0.113.7:56324', '/c 203.0.113.7:56324']);
  });

  it('keeps pipelined requests that came in one packet with a v2 header', async () => {
    const { port, seen } = await serve();
    const h = v2(0x21, 0x11, inet([192, 0, 2, 1], [10, 0, 0, 5], 7, 80));
    const r = await talk(port, [Buffer.concat([h, get('/1'), get('/2')]), get('/3')]);
    expect(r.text.match(/^\/\d$/gm)).toEqual(['/1', '/2', '/3']);
    expect(seen[0]).toBe('/1 192.0.2.1:7');
  });

  it('closes a connection that sends plain HTTP, with no response and one reason', async () => {
    const { port, refused, seen } = await serve();
    const r = await talk(port, [get('/')]);
    expect(r).toEqual({ text: '', closed: true });
    expect(refused).toEqual(['no PROXY protocol header']);
    expect(seen).toEqual([]);
  });

  it('closes a connection whose header does not come in time', async () => {
    const { port, refused } = await serve(150);
    const r = await talk(port, [Buffer.from('PROXY TCP4 1.2.3.4')], 400);
    expect(r).toEqual({ text: '', closed: true });
    expect(refused).toEqual(['no complete PROXY protocol header in time']);
  });

  it('closes a connection that ends inside the header', async () => {
    const { port, refused } = await serve();
    await new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.end('PROXY TCP4 1.2.3.4 '));
      s.on('close', () => resolve());
      s.resume();
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(refused).toEqual(['connection closed before the PROXY protocol header']);
  });

  it('cuts connections still waiting for their header when the server closes', async () => {
    const { port } = await serve(10_000);
    const s = net.connect(port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.write('PROXY ');
    await new Promise((r) => setTimeout(r, 50));
    const closed = new Promise((r) => s.once('close', r));
    s.on('error', () => undefined);
    const stop = open.pop() as () => Promise<void>;
    const t0 = Date.now();
    await stop();
    await closed;
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});
