import { describe, expect, it } from 'vitest';
import { parseFlags } from '../../src/config/load.js';
import { validateConfig } from '../../src/config/validate.js';

describe('validateConfig', () => {
  it('applies the documented defaults and freezes the result', () => {
    const { config, problems } = validateConfig({});
    expect(problems).toEqual([]);
    expect(config?.listen).toEqual([{ host: '0.0.0.0', port: 80, proxyProtocol: false }]);
    expect(config?.realIpHeader).toBe('X-Forwarded-For');
    expect(config?.realIpRecursive).toBe(true);
    expect(config?.upstream).toBe('/tmp/web_server.sock');
    expect(config?.admin).toEqual({ host: '127.0.0.1', port: 9145 });
    expect(config?.clientMaxBodySize).toBe(50 * 1024 * 1024);
    expect(config?.keepaliveTimeout).toBe(65_000);
    expect(config?.proxyReadTimeout).toBe(60_000);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config?.listen)).toBe(true);
  });

  it('collects every problem with key, value and fix', () => {
    const { config, problems } = validateConfig({
      listn: ['0.0.0.0:80'],
      proxyReadTimeout: 'forever',
      clientMaxBodySize: 'huge',
      upstream: 'tmp/web.sock',
      trustedProxies: ['10.0.0.0/33'],
      listen: ['nowhere'],
    });
    expect(config).toBeUndefined();
    const byKey = Object.fromEntries(problems.map((p) => [p.key, p]));
    expect(Object.keys(byKey).sort()).toEqual(['clientMaxBodySize', 'listen', 'listn', 'proxyReadTimeout', 'trustedProxies', 'upstream']);
    expect(byKey.listn?.fix).toContain('"listen"');
    expect(byKey.proxyReadTimeout?.fix).toMatch(/60s/);
    expect(byKey.clientMaxBodySize?.fix).toMatch(/50m/);
    expect(byKey.upstream?.message).toMatch(/absolute/);
    expect(byKey.trustedProxies?.message).toMatch(/10\.0\.0\.0\/33/);
  });

  it('turns flags into keys, repeatable ones into lists', () => {
    const parsed = parseFlags(['--listen', '127.0.0.1:1', '--listen=127.0.0.1:2', '--upstream', '/s.sock', '--underscores-in-headers', '--admin', 'null']);
    expect(parsed.problems).toEqual([]);
    const { config } = validateConfig(parsed.raw);
    expect(config?.listen.map((l) => l.port)).toEqual([1, 2]);
    expect(config?.upstream).toBe('/s.sock');
    expect(config?.underscoresInHeaders).toBe(true);
    expect(config?.admin).toBeNull();
  });

  it('reads the proxy_protocol suffix of a listener, from flags and from a JSON config', () => {
    const parsed = parseFlags(['--listen', '0.0.0.0:80 proxy_protocol', '--listen', '[::]:8080', '--real-ip-header', 'proxy_protocol', '--trusted-proxies', '10.0.0.0/8']);
    const { config, problems } = validateConfig(parsed.raw);
    expect(problems).toEqual([]);
    expect(config?.listen).toEqual([
      { host: '0.0.0.0', port: 80, proxyProtocol: true },
      { host: '::', port: 8080, proxyProtocol: false },
    ]);
    expect(validateConfig({ listen: ['127.0.0.1:81  proxy_protocol', 8080] }).config?.listen).toEqual([
      { host: '127.0.0.1', port: 81, proxyProtocol: true },
      { host: '0.0.0.0', port: 8080, proxyProtocol: false },
    ]);
  });

  it('refuses an unknown listen parameter, naming the key, the value and the fix', () => {
    const { problems } = validateConfig({ listen: ['0.0.0.0:443 ssl'] });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ key: 'listen', value: ['0.0.0.0:443 ssl'], message: '"0.0.0.0:443 ssl" has the unknown parameter "ssl"' });
    expect(problems[0]?.fix).toMatch(/proxy_protocol/);
  });

  it('takes any header name for realIpHeader, and proxy_protocol only with a listener that reads it', () => {
    expect(validateConfig({ realIpHeader: 'CF-Connecting-IP', realIpRecursive: 'off' }).config).toMatchObject({ realIpHeader: 'CF-Connecting-IP', realIpRecursive: false });
    expect(validateConfig({ realIpHeader: 'X Real IP' }).problems.map((p) => p.key)).toEqual(['realIpHeader']);
    const { problems } = validateConfig({ realIpHeader: 'proxy_protocol' });
    expect(problems).toMatchObject([{ key: 'realIpHeader', value: 'proxy_protocol', message: 'no listener reads the PROXY protocol' }]);
  });
});
