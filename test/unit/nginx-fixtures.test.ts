/**
 * Golden tests over nginx-compat/fixtures: a folder per case holding an nginx.conf (and what it
 * includes) with the expected translation (expected.json) or the expected errors
 * (expected-error.txt: one `CODE message` per line, paths relative to the folder).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findNamed, importNginxConfig, matchLocation } from '../../nginx-compat/index.js';
import { validateConfig } from '../../src/config/validate.js';

const FIXTURES = resolve('nginx-compat/fixtures');
const relative = (dir: string, text: string): string => text.split(`${dir}/`).join('');

describe('fixture cloud66: the hosts\' default nginx.conf for a Rails app', () => {
  const dir = join(FIXTURES, 'cloud66');
  const result = importNginxConfig(join(dir, 'nginx.conf'));
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { config: Record<string, unknown>; warnings: string[] };

  it('reads the main file, mime.types and the conf.d/*.conf glob in order', () => {
    expect(result.files.map((f) => relative(dir, f))).toEqual(['nginx.conf', 'mime.types', 'conf.d/realip.conf', 'conf.d/timeouts.conf']);
  });

  it('translates to the expected raw config, warning about what differs', () => {
    expect(result.errors).toEqual([]);
    expect(result.config).toEqual(expected.config);
    expect(result.warnings.map((w) => `${w.code} ${relative(dir, w.message)}`)).toEqual(expected.warnings);
  });

  it('gives a config that validateConfig accepts with no problems', () => {
    const { config, problems } = validateConfig(result.config);
    expect(problems).toEqual([]);
    expect(config).toMatchObject({
      listen: [{ host: '0.0.0.0', port: 80 }],
      upstream: '/tmp/web_server.sock',
      clientMaxBodySize: 50 * 1024 * 1024,
      keepaliveTimeout: 65_000,
      proxyReadTimeout: 120_000,
      underscoresInHeaders: true,
      trustedProxies: ['10.0.0.0/8'],
      user: 'nginx',
    });
  });

  it('routes assets, the error page and app requests as nginx does', () => {
    const { locations, server } = result;
    const assets = matchLocation(locations, '/assets/application-3f2a.css');
    expect(assets).toMatchObject({ match: 'noregex', gzipStatic: 'on', expires: { kind: 'max' }, addHeader: [{ name: 'Cache-Control', value: 'public', always: false }], root: '/var/deploy/app/current/public' });
    expect(matchLocation(locations, '/50x.html')).toMatchObject({ match: 'exact', root: '/var/deploy/app/current/public' });
    // No location takes /users/1: the server level's try_files falls through to @app.
    expect(matchLocation(locations, '/users/1')).toBeUndefined();
    expect(server?.tryFiles).toEqual(['$uri/index.html', '$uri', '@app']);
    expect(server?.errorPage).toEqual([{ codes: [500, 502, 503, 504], status: null, uri: '/50x.html' }]);
    expect(server?.gzip).toEqual({
      enabled: true,
      types: ['text/html', 'text/plain', 'text/css', 'application/xml', 'application/javascript'],
      minLength: 500,
      compLevel: 2,
      proxied: ['any'],
      vary: false,
      disable: ['MSIE [1-6]\\.'],
      httpVersion: '1.0',
    });
    expect(findNamed(locations, '@app')).toMatchObject({
      proxyPass: 'http://app_server',
      proxySetHeader: [
        { name: 'X-Forwarded-For', value: '$proxy_add_x_forwarded_for' },
        { name: 'X-Forwarded-Proto', value: '$scheme' },
        { name: 'Host', value: '$http_host' },
      ],
      clientMaxBodySize: '50m',
    });
  });

  it('is strict-clean: every directive in it is known', () => {
    expect(importNginxConfig(join(dir, 'nginx.conf'), { strict: true }).errors).toEqual([]);
  });
});

describe('broken fixtures: one per error class, nginx words with file:line', () => {
  const broken = join(FIXTURES, 'broken');
  const cases = readdirSync(broken).sort();

  it('cover every error code', () => {
    const codes = new Set(cases.flatMap((c) => readFileSync(join(broken, c, 'expected-error.txt'), 'utf8').trim().split('\n').map((l) => l.split(' ')[0])));
    expect([...codes].sort()).toEqual(['GW_ERR_NGINX_ARGS', 'GW_ERR_NGINX_CONTEXT', 'GW_ERR_NGINX_INCLUDE', 'GW_ERR_NGINX_SYNTAX', 'GW_ERR_NGINX_UNKNOWN', 'GW_ERR_NGINX_UNSUPPORTED', 'GW_ERR_NGINX_VALUE']);
  });

  it.each(cases)('%s', (name) => {
    const dir = join(broken, name);
    const optionsFile = join(dir, 'options.json');
    const options = existsSync(optionsFile) ? (JSON.parse(readFileSync(optionsFile, 'utf8')) as { strict?: boolean }) : {};
    const result = importNginxConfig(join(dir, 'nginx.conf'), options);
    const got = result.errors.map((e) => `${e.code} ${relative(dir, e.message)}`);
    expect(got.join('\n')).toBe(readFileSync(join(dir, 'expected-error.txt'), 'utf8').trim());
    expect(result.config).toEqual({});
  });
});
