/** nginx's gzip decision (src/proxy/gzip.ts), without sockets. */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { acceptsGzip, flatGetter, gzipHeaders, gzipPlan, type GzipRule } from '../../src/proxy/gzip.js';

const rule = (over: Partial<GzipRule> = {}): GzipRule => ({
  types: new Set(['text/html', 'text/css']),
  minLength: 20,
  level: 1,
  proxied: new Set(['off']),
  vary: true,
  disable: [],
  msie6: true,
  http10: false,
  ...over,
});
const req = (headers: Record<string, string>, method = 'GET', minor = 1): IncomingMessage =>
  ({ method, headers: { 'accept-encoding': 'gzip', ...headers }, httpVersionMajor: 1, httpVersionMinor: minor }) as unknown as IncomingMessage;
const res = (headers: Record<string, string>) => (name: string) => headers[name];

describe('gzip plan', () => {
  const html = res({ 'content-type': 'text/html; charset=utf-8' });
  it('compresses 200, 403 and 404 only, never HEAD', () => {
    for (const status of [200, 403, 404]) expect(gzipPlan(rule(), req({}), status, html)).toBe('gzip');
    for (const status of [201, 206, 301, 500, 502]) expect(gzipPlan(rule(), req({}), status, html)).toBe('none');
    expect(gzipPlan(rule(), req({}, 'HEAD'), 200, html)).toBe('none');
  });
  it('needs a listed type, no encoding, a long enough body; * takes any type', () => {
    expect(gzipPlan(rule(), req({}), 200, res({ 'content-type': 'image/png' }))).toBe('none');
    expect(gzipPlan(rule({ types: '*' }), req({}), 200, res({}))).toBe('gzip');
    expect(gzipPlan(rule(), req({}), 200, res({ 'content-type': 'text/html', 'content-encoding': 'br' }))).toBe('none');
    expect(gzipPlan(rule(), req({}), 200, res({ 'content-type': 'text/html', 'content-length': '19' }))).toBe('none');
    expect(gzipPlan(rule(), req({}), 200, res({ 'content-type': 'text/html', 'content-length': '20' }))).toBe('gzip');
  });
  it('sends plain (with Vary) to clients that refuse it, old MSIE, disabled agents and HTTP/1.0', () => {
    expect(gzipPlan(rule(), req({ 'accept-encoding': 'br' }), 200, html)).toBe('vary');
    expect(gzipPlan(rule(), req({ 'user-agent': 'Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)' }), 200, html)).toBe('vary');
    expect(gzipPlan(rule(), req({ 'user-agent': 'Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)' }), 200, html)).toBe('gzip');
    expect(gzipPlan(rule({ disable: [/bot/i] }), req({ 'user-agent': 'SomeBOT/1' }), 200, html)).toBe('vary');
    expect(gzipPlan(rule(), req({}, 'GET', 0), 200, html)).toBe('vary');
    expect(gzipPlan(rule({ http10: true }), req({}, 'GET', 0), 200, html)).toBe('gzip');
  });
  it('follows gzip_proxied for requests with Via, in nginx order', () => {
    const via = { via: '1.1 cdn' };
    expect(gzipPlan(rule(), req(via), 200, html)).toBe('vary');
    expect(gzipPlan(rule({ proxied: new Set(['any']) }), req(via), 200, html)).toBe('gzip');
    expect(gzipPlan(rule({ proxied: new Set(['auth']) }), req({ ...via, authorization: 'Basic x' }), 200, res({ 'content-type': 'text/html', 'cache-control': 'public' }))).toBe('gzip');
    const p = rule({ proxied: new Set(['private', 'no_etag']) });
    expect(gzipPlan(p, req(via), 200, res({ 'content-type': 'text/html', 'cache-control': 'private, max-age=0' }))).toBe('gzip');
    expect(gzipPlan(p, req(via), 200, res({ 'content-type': 'text/html', 'cache-control': 'public' }))).toBe('vary');
    expect(gzipPlan(p, req(via), 200, res({ 'content-type': 'text/html', etag: '"x"' }))).toBe('vary');
    expect(gzipPlan(p, req(via), 200, html)).toBe('gzip');
  });
  it('reads Accept-Encoding q-values', () => {
    expect(acceptsGzip('gzip, deflate')).toBe(true);
    expect(acceptsGzip('deflate, gzip;q=0.5')).toBe(true);
    expect(acceptsGzip('gzip;q=0')).toBe(false);
    expect(acceptsGzip('*')).toBe(false);
  });
});

describe('gzip response head', () => {
  it('drops the length, marks the encoding, weakens a strong ETag, adds Vary once', () => {
    const head = ['Content-Type', 'text/html', 'Content-Length', '500', 'ETag', '"abc"', 'Vary', 'Cookie'];
    const out = gzipHeaders(head, 'gzip', rule());
    const get = flatGetter(out);
    expect(get('content-length')).toBeUndefined();
    expect(get('content-encoding')).toBe('gzip');
    expect(get('etag')).toBe('W/"abc"');
    expect(out.filter((h) => h === 'Vary')).toHaveLength(2);
    expect(gzipHeaders(['Vary', 'Accept-Encoding'], 'vary', rule())).toEqual(['Vary', 'Accept-Encoding']);
    expect(gzipHeaders(['ETag', 'bogus'], 'gzip', rule({ vary: false }))).toEqual(['Content-Encoding', 'gzip']);
  });
});
