import { describe, expect, it } from 'vitest';
import { connectionTokens, downstreamHeaders, peerAddress, realIp, TrustedProxies } from '../../src/proxy/headers.js';

describe('Connection header tokens (RFC 9110 7.6.1)', () => {
  it('lists the named fields, lowercased, without close/keep-alive', () => {
    expect(connectionTokens('close, X-Secret ,Keep-Alive, x-other')).toEqual(['x-secret', 'x-other']);
    expect(connectionTokens(undefined)).toEqual([]);
  });
});

describe('trusted proxies and the real client address', () => {
  const trusted = new TrustedProxies(['10.0.0.0/8', '192.168.1.7', 'fd00::/8']);
  it('matches CIDRs and single addresses of both families', () => {
    expect(trusted.has('10.2.3.4')).toBe(true);
    expect(trusted.has('192.168.1.7')).toBe(true);
    expect(trusted.has('192.168.1.8')).toBe(false);
    expect(trusted.has('fd00::1')).toBe(true);
    expect(trusted.has('not an ip')).toBe(false);
  });
  it('takes the rightmost untrusted address, as real_ip_recursive does', () => {
    expect(realIp('1.1.1.1, 2.2.2.2, 10.0.0.1', trusted)).toBe('2.2.2.2');
    expect(realIp('10.0.0.2, 10.0.0.1', trusted)).toBe('10.0.0.2');
  });
  it('unmaps IPv4-mapped IPv6 peers', () => {
    expect(peerAddress('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(peerAddress('::1')).toBe('::1');
  });
});

describe('response headers sent to the client', () => {
  it('drops hop-by-hop fields and those Connection names, keeps the rest', () => {
    const raw = ['Content-Type', 'text/plain', 'Connection', 'keep-alive, X-Internal', 'Keep-Alive', 'timeout=5', 'X-Internal', 'secret', 'Transfer-Encoding', 'chunked', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'].map((s) => Buffer.from(s));
    expect(downstreamHeaders(raw)).toEqual(['Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2']);
  });
});
