/** nginx's realip module: set_real_ip_from (trustedProxies), real_ip_header, real_ip_recursive. */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { connectionClient, forwardContext, forwardedAddress, resolveClient, TrustedProxies, upstreamHeaders } from '../../src/proxy/headers.js';
import { setProxyHeader } from '../../src/proxy/proxy-protocol.js';

type Opts = { trusted?: string[]; header?: string; recursive?: boolean; append?: boolean };
const ctx = (o: Opts = {}) =>
  forwardContext({ trustedProxies: o.trusted ?? ['10.0.0.0/8'], realIpHeader: o.header ?? 'X-Forwarded-For', realIpRecursive: o.recursive ?? true, forwardedForUntrusted: o.append ? 'append' : 'replace' });

/** A request as the header code sees it: the peer, its raw fields, and a PROXY source if any. */
function request(peer: string, raw: string[], proxySource?: string): IncomingMessage {
  const socket = { remoteAddress: peer };
  if (proxySource !== undefined) setProxyHeader(socket, { version: 1, source: { address: proxySource, port: 1234 } });
  const headers: Record<string, string> = { host: 'example.com' };
  for (let i = 0; i < raw.length; i += 2) headers[(raw[i] as string).toLowerCase()] = raw[i + 1] as string;
  return { socket, rawHeaders: ['Host', 'example.com', ...raw], headers } as unknown as IncomingMessage;
}
const sent = (req: IncomingMessage, c: ReturnType<typeof ctx>) => {
  const { headers, clientIp } = upstreamHeaders(req, c);
  const get = (n: string) => headers[headers.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === n) + 1];
  return { clientIp, xff: get('x-forwarded-for'), realIp: get('x-real-ip'), proto: get('x-forwarded-proto') };
};

describe('forwardedAddress (ngx_http_get_forwarded_addr)', () => {
  const trusted = new TrustedProxies(['10.0.0.0/8', '192.168.0.0/16']);
  it('recursive: skips trusted addresses from the right; the leftmost when all are trusted', () => {
    expect(forwardedAddress('10.0.0.1', '1.1.1.1, 2.2.2.2, 192.168.1.1', trusted, true)).toBe('2.2.2.2');
    expect(forwardedAddress('10.0.0.1', '10.1.1.1, 192.168.1.1', trusted, true)).toBe('10.1.1.1');
  });
  it('not recursive: the last address only, trusted or not', () => {
    expect(forwardedAddress('10.0.0.1', '1.1.1.1, 2.2.2.2, 192.168.1.1', trusted, false)).toBe('192.168.1.1');
  });
  it('reads ports and brackets as nginx does, and stops at what is not an address', () => {
    expect(forwardedAddress('10.0.0.1', '1.1.1.1:5555', trusted, true)).toBe('1.1.1.1');
    expect(forwardedAddress('10.0.0.1', '[2001:DB8::1]:443', trusted, true)).toBe('2001:db8::1');
    expect(forwardedAddress('10.0.0.1', '::ffff:1.2.3.4', trusted, true)).toBe('1.2.3.4');
    expect(forwardedAddress('10.0.0.1', 'unknown, 192.168.1.1', trusted, true)).toBe('192.168.1.1');
    expect(forwardedAddress('10.0.0.1', 'garbage', trusted, true)).toBeUndefined();
    expect(forwardedAddress('10.0.0.1', ' , ', trusted, true)).toBeUndefined();
  });
});

describe('resolveClient: only a trusted peer is believed', () => {
  it('keeps an untrusted peer whatever it says', () => {
    expect(resolveClient(request('203.0.113.9', ['X-Forwarded-For', '1.1.1.1']), ctx())).toEqual({ address: '203.0.113.9', from: 'peer' });
    expect(resolveClient(request('203.0.113.9', [], '1.1.1.1'), ctx({ header: 'proxy_protocol' })).address).toBe('203.0.113.9');
  });
  it('joins every X-Forwarded-For field; takes the first field of another header', () => {
    expect(resolveClient(request('10.0.0.1', ['X-Forwarded-For', '1.1.1.1', 'X-Forwarded-For', '2.2.2.2']), ctx({ recursive: false })).address).toBe('2.2.2.2');
    const twice = request('10.0.0.1', ['X-Real-IP', '3.3.3.3', 'X-Real-IP', '4.4.4.4']);
    expect(resolveClient(twice, ctx({ header: 'X-Real-IP' }))).toEqual({ address: '3.3.3.3', from: 'header' });
  });
  it('falls back to the peer when the header is missing or bad', () => {
    expect(resolveClient(request('10.0.0.1', []), ctx({ header: 'CF-Connecting-IP' })).address).toBe('10.0.0.1');
    expect(resolveClient(request('10.0.0.1', ['X-Forwarded-For', 'nonsense']), ctx()).address).toBe('10.0.0.1');
  });
  it('takes the PROXY source with proxy_protocol, the peer on a connection without one', () => {
    expect(resolveClient(request('10.0.0.1', ['X-Forwarded-For', '6.6.6.6'], '198.51.100.7'), ctx({ header: 'proxy_protocol' }))).toEqual({ address: '198.51.100.7', from: 'proxy_protocol' });
    expect(resolveClient(request('10.0.0.1', []), ctx({ header: 'proxy_protocol' })).address).toBe('10.0.0.1');
  });
  // nginx: $remote_addr stays the TCP peer unless real_ip_header proxy_protocol; the PROXY source
  // alone is only $proxy_protocol_addr.
  it('ignores the PROXY source unless realIpHeader is proxy_protocol', () => {
    expect(resolveClient(request('10.0.0.1', [], '198.51.100.7'), ctx()).address).toBe('10.0.0.1');
    expect(resolveClient(request('10.0.0.1', [], '198.51.100.7'), ctx({ trusted: [], header: 'proxy_protocol' })).address).toBe('10.0.0.1');
  });
  it('gives the connection-level address for answers before a request (400, 408)', () => {
    const socket = request('10.0.0.1', [], '198.51.100.7').socket;
    expect(connectionClient(socket, ctx({ header: 'proxy_protocol' }))).toBe('198.51.100.7');
    expect(connectionClient(socket, ctx())).toBe('10.0.0.1');
  });
});

describe('what goes upstream', () => {
  it('X-Forwarded-For mode: the chain grows by the peer, X-Real-IP is the resolved client', () => {
    expect(sent(request('10.0.0.1', ['X-Forwarded-For', '1.1.1.1, 10.2.2.2', 'X-Forwarded-Proto', 'https']), ctx())).toEqual({ clientIp: '1.1.1.1', xff: '1.1.1.1, 10.2.2.2, 10.0.0.1', realIp: '1.1.1.1', proto: 'https' });
    expect(sent(request('10.0.0.1', ['X-Forwarded-For', '1.1.1.1, 10.2.2.2']), ctx({ recursive: false })).realIp).toBe('10.2.2.2');
  });
  it('another header: forwarded as if the client had connected itself; the trusted peer still tells the scheme', () => {
    const req = request('10.0.0.1', ['CF-Connecting-IP', '1.1.1.1', 'X-Forwarded-For', '1.1.1.1', 'X-Forwarded-Proto', 'https']);
    expect(sent(req, ctx({ header: 'CF-Connecting-IP' }))).toEqual({ clientIp: '1.1.1.1', xff: '1.1.1.1', realIp: '1.1.1.1', proto: 'https' });
    expect(sent(req, ctx({ header: 'CF-Connecting-IP', append: true })).xff).toBe('1.1.1.1, 1.1.1.1');
  });
  it("proxy_protocol: the PROXY source is the client; its own X-Forwarded-* are not believed", () => {
    const req = request('10.0.0.1', ['X-Forwarded-For', '6.6.6.6', 'X-Forwarded-Proto', 'https'], '198.51.100.7');
    expect(sent(req, ctx({ header: 'proxy_protocol' }))).toEqual({ clientIp: '198.51.100.7', xff: '198.51.100.7', realIp: '198.51.100.7', proto: 'http' });
  });
  it('an untrusted peer: its headers replaced, as before', () => {
    const req = request('203.0.113.9', ['X-Real-IP', '1.1.1.1', 'X-Forwarded-For', '6.6.6.6', 'X-Forwarded-Proto', 'https']);
    expect(sent(req, ctx({ header: 'X-Real-IP' }))).toEqual({ clientIp: '203.0.113.9', xff: '203.0.113.9', realIp: '203.0.113.9', proto: 'http' });
  });
});
