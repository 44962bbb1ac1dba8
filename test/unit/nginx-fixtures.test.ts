/**
 * Golden tests over nginx-compat/fixtures: a folder per case holding an nginx.conf (and what it
 * includes) with the expected translation (expected.json) or the expected errors
 * (expected-error.txt: one `CODE message` per line, paths relative to the folder).
 *
 * Every folder with an expected.json is checked the same way first; then each case has its own
 * routing checks (matchLocation/findNamed), since a config can be right while its locations are not.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findNamed, importNginxConfig, matchLocation } from '../../nginx-compat/index.js';
import { validateConfig } from '../../src/config/validate.js';

const FIXTURES = resolve('nginx-compat/fixtures');
const relative = (dir: string, text: string): string => text.split(`${dir}/`).join('');

interface Expected {
  config: Record<string, unknown>;
  warnings: string[];
}

/** Every fixture folder (not broken/*) with an expected translation. */
const GOLDEN = readdirSync(FIXTURES)
  .filter((name) => existsSync(join(FIXTURES, name, 'expected.json')))
  .sort();

function load(name: string): { dir: string; result: ReturnType<typeof importNginxConfig>; expected: Expected } {
  const dir = join(FIXTURES, name);
  return {
    dir,
    result: importNginxConfig(join(dir, 'nginx.conf')),
    expected: JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected,
  };
}

describe('every fixture with an expected.json', () => {
  it('includes the real-world Rails cases', () => {
    expect(GOLDEN).toEqual(expect.arrayContaining(['cloud66', 'rails-actioncable-nlb', 'rails-behind-alb', 'rails-discourse-socketed', 'rails-gitlab-omnibus', 'rails-puma-ubuntu', 'rails-unicorn-classic']));
  });

  describe.each(GOLDEN)('%s', (name) => {
    const { dir, result, expected } = load(name);

    it('translates with no errors to the expected config and warnings', () => {
      expect(result.errors.map((e) => relative(dir, e.message))).toEqual([]);
      expect(result.config).toEqual(expected.config);
      expect(result.warnings.map((w) => `${w.code} ${relative(dir, w.message)}`)).toEqual(expected.warnings);
    });

    it('gives a config that validateConfig accepts with no problems', () => {
      expect(validateConfig(result.config).problems).toEqual([]);
    });
  });
});

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

describe('fixture rails-puma-ubuntu: Ubuntu\'s stock nginx.conf with the app in sites-enabled (Puma guide)', () => {
  const { dir, result } = load('rails-puma-ubuntu');
  const { locations, server } = result;

  it('reads conf.d/*.conf and sites-enabled/* from the conf prefix, in nginx\'s order', () => {
    expect(result.files.map((f) => relative(dir, f))).toEqual(['nginx.conf', 'mime.types', 'conf.d/upstream.conf', 'sites-enabled/default']);
  });

  it('listens on IPv4 and IPv6, both default_server', () => {
    expect(result.listeners.map((l) => [l.address, l.defaultServer, l.proxyProtocol])).toEqual([
      ['0.0.0.0:80', true, false],
      ['[::]:80', true, false],
    ]);
  });

  it('serves precompiled assets from the ^~ location, gzip_static and cached forever', () => {
    expect(matchLocation(locations, '/assets/application-9f2c.js')).toMatchObject({
      match: 'noregex',
      pattern: '/assets/',
      gzipStatic: 'on',
      expires: { kind: 'max' },
      addHeader: [{ name: 'Cache-Control', value: 'public', always: false }],
      root: '/home/deploy/appname/current/public',
    });
  });

  it('keeps favicon.ico and robots.txt out of the access log', () => {
    expect(matchLocation(locations, '/favicon.ico')).toMatchObject({ match: 'exact', accessLog: false });
    expect(matchLocation(locations, '/robots.txt')).toMatchObject({ match: 'exact', accessLog: false });
  });

  it('sends everything else through the server\'s try_files to @app with the usual headers', () => {
    expect(matchLocation(locations, '/users/sign_in')).toBeUndefined();
    expect(server).toMatchObject({ tryFiles: ['$uri/index.html', '$uri', '@app'], errorPage: [{ codes: [500, 502, 503, 504], status: null, uri: '/500.html' }], clientMaxBodySize: '10m' });
    expect(server?.gzip).toMatchObject({ enabled: true, types: ['text/html'], disable: ['msie6'], proxied: ['off'] });
    expect(findNamed(locations, '@app')).toMatchObject({
      proxyPass: 'http://app',
      proxySetHeader: [
        { name: 'Host', value: '$http_host' },
        { name: 'X-Real-IP', value: '$remote_addr' },
        { name: 'X-Forwarded-For', value: '$proxy_add_x_forwarded_for' },
        { name: 'X-Forwarded-Proto', value: '$scheme' },
      ],
      clientMaxBodySize: '10m',
    });
  });

  it('keeps the server\'s keepalive_timeout over the http one', () => {
    expect(validateConfig(result.config).config).toMatchObject({ keepaliveTimeout: 10_000, clientMaxBodySize: 10 * 1024 ** 2, upstream: '/tmp/web_server.sock' });
  });
});

describe('fixture rails-unicorn-classic: the single-file nginx.conf of Unicorn guides', () => {
  const { result } = load('rails-unicorn-classic');
  const { locations, server } = result;

  it('tries page caches ($uri.html) before @app, and serves the 500 page from public/', () => {
    expect(matchLocation(locations, '/about')).toBeUndefined();
    expect(server?.tryFiles).toEqual(['$uri/index.html', '$uri.html', '$uri', '@app']);
    expect(matchLocation(locations, '/500.html')).toMatchObject({ match: 'exact', root: '/var/www/app/current/public' });
    expect(findNamed(locations, '@app')).toMatchObject({ proxyPass: 'http://app_server', clientMaxBodySize: '4g' });
  });

  it('compresses proxied responses as the gzip block says', () => {
    expect(findNamed(locations, '@app')?.gzip).toEqual({
      enabled: true,
      types: ['text/html', 'text/plain', 'text/xml', 'text/css', 'text/comma-separated-values', 'text/javascript', 'application/x-javascript', 'application/atom+xml', 'application/json'],
      minLength: 500,
      compLevel: 1,
      proxied: ['any'],
      vary: true,
      disable: ['MSIE [1-6]\\.'],
      httpVersion: '1.0',
    });
  });

  it('takes the proxy timeouts of @app; the custom log format is left for combined', () => {
    expect(validateConfig(result.config).config).toMatchObject({ proxyReadTimeout: 65_000, proxyConnectTimeout: 5_000, clientMaxBodySize: 4 * 1024 ** 3, keepaliveTimeout: 5_000, accessLogFormat: 'combined' });
  });
});

describe('fixture rails-behind-alb: TLS at an ALB, real IP from X-Forwarded-For, a redirect-only server', () => {
  const { result } = load('rails-behind-alb');
  const { locations, server } = result;

  it('translates the default_server, not the redirect server on 8080', () => {
    expect(result.listeners.map((l) => l.address)).toEqual(['0.0.0.0:80']);
    expect(server?.return).toBeNull();
  });

  it('strips a trailing slash with a 301 before choosing a location', () => {
    expect(server?.rewrite).toEqual([{ regex: '^/(.*)/$', replacement: '/$1', flag: 'permanent' }]);
  });

  it('prefers the ^~ assets location over the image regex', () => {
    expect(matchLocation(locations, '/assets/logo-1a2b.png')).toMatchObject({ match: 'noregex', gzipStatic: 'on', expires: { kind: 'max' } });
  });

  it('matches other images with the case-insensitive regex, cached for 30 days', () => {
    expect(matchLocation(locations, '/uploads/photo/1/Cover.JPG')).toMatchObject({
      match: 'iregex',
      expires: { kind: 'after', seconds: 30 * 86_400, modified: false },
      tryFiles: ['$uri', '@app'],
      gzipStatic: 'off',
    });
  });

  it('proxies the health check without logging it; other paths go to @app', () => {
    expect(matchLocation(locations, '/health_check')).toMatchObject({ match: 'exact', accessLog: false, proxyPass: 'http://rails_app' });
    expect(matchLocation(locations, '/orders/7')).toBeUndefined();
    expect(server?.tryFiles).toEqual(['$uri/index.html', '$uri', '@app']);
    expect(findNamed(locations, '@app')?.proxySetHeader).toContainEqual({ name: 'X-Forwarded-Proto', value: 'https' });
    expect(server?.errorPage).toEqual([
      { codes: [500, 502, 503, 504], status: null, uri: '/500.html' },
      { codes: [404], status: null, uri: '/404.html' },
    ]);
  });

  it('trusts the ALB subnets and bounds the request head', () => {
    expect(validateConfig(result.config).config).toMatchObject({ trustedProxies: ['172.31.0.0/16', '10.0.0.0/8'], maxHeaderSize: 64 * 1024, proxyReadTimeout: 90_000, proxyConnectTimeout: 10_000 });
    expect(server?.gzip).toMatchObject({ enabled: true, vary: true, proxied: ['any'], compLevel: 6, minLength: 1024 });
  });
});

describe('fixture rails-actioncable-nlb: ActionCable behind an NLB with the PROXY protocol', () => {
  const { result } = load('rails-actioncable-nlb');
  const { locations, server } = result;

  it('keeps proxy_protocol on the listener', () => {
    expect(result.listeners).toMatchObject([{ address: '0.0.0.0:80', defaultServer: true, proxyProtocol: true }]);
  });

  it('proxies /cable as a WebSocket upgrade', () => {
    const cable = matchLocation(locations, '/cable');
    expect(cable).toMatchObject({ match: 'prefix', pattern: '/cable', proxyPass: 'http://puma', tryFiles: null });
    expect(cable?.proxySetHeader).toEqual(expect.arrayContaining([
      { name: 'Upgrade', value: '$http_upgrade' },
      { name: 'Connection', value: 'upgrade' },
    ]));
  });

  it('serves webpacker packs and assets statically, the rest through location / to @puma', () => {
    expect(matchLocation(locations, '/packs/js/application-77aa.js')).toMatchObject({ match: 'noregex', gzipStatic: 'on' });
    expect(matchLocation(locations, '/assets/app.css')).toMatchObject({ match: 'noregex', pattern: '/assets/' });
    expect(matchLocation(locations, '/dashboard')).toMatchObject({ match: 'prefix', pattern: '/', tryFiles: ['$uri', '@puma'], proxyPass: null });
    expect(findNamed(locations, '@puma')?.proxySetHeader).toContainEqual({ name: 'Connection', value: '' });
    expect(server?.errorPage).toEqual([{ codes: [502, 503, 504], status: null, uri: '/503.html' }]);
    expect(matchLocation(locations, '/503.html')).toMatchObject({ match: 'exact', internal: true });
  });
});

describe('fixture rails-gitlab-omnibus: a generated omnibus-style config, TLS at the balancer', () => {
  const { result } = load('rails-gitlab-omnibus');
  const { locations } = result;

  it('sends git pushes through the first matching regex', () => {
    expect(matchLocation(locations, '/group/project.git/git-receive-pack')).toMatchObject({ match: 'regex', proxyPass: 'http://app-workhorse' });
    expect(matchLocation(locations, '/group/project.git/info/lfs/objects/batch')).toMatchObject({ match: 'regex' });
  });

  it('serves error pages from the internal regex location, assets and the rest by prefix', () => {
    expect(matchLocation(locations, '/502.html')).toMatchObject({ match: 'regex', internal: true, root: '/opt/app/embedded/service/app-rails/public' });
    expect(matchLocation(locations, '/assets/application.css')).toMatchObject({ match: 'prefix', pattern: '/assets' });
    const root = matchLocation(locations, '/explore/projects');
    expect(root).toMatchObject({ match: 'prefix', pattern: '/', clientMaxBodySize: '0', proxyPass: 'http://app-workhorse' });
    // The server's proxy_set_header list is inherited by locations that set none.
    expect(root?.proxySetHeader.map((h) => h.name)).toEqual(['Host', 'X-Real-IP', 'X-Forwarded-For', 'Upgrade', 'Connection', 'X-Forwarded-Proto']);
  });

  it('has no body limit and the server-wide proxy timeouts', () => {
    expect(validateConfig(result.config).config).toMatchObject({ clientMaxBodySize: 0, proxyReadTimeout: 3_600_000, proxyConnectTimeout: 300_000, trustedProxies: ['10.0.0.0/8', '192.168.0.0/16'] });
  });
});

describe('fixture rails-discourse-socketed: TLS at nginx, port 80 only redirects', () => {
  const { result } = load('rails-discourse-socketed');
  const { locations } = result;

  // nginx answers port 80 with the first server, the redirect; the app server is TLS-only, which
  // the gateway leaves out. The translation says so rather than guess (see the README).
  it('translates the port 80 server: a redirect to https and the ACME challenge', () => {
    expect(result.listeners.map((l) => l.address)).toEqual(['0.0.0.0:80', '[::]:80']);
    expect(matchLocation(locations, '/t/welcome/1')).toMatchObject({ match: 'prefix', pattern: '/', return: { status: 301, text: 'https://$host$request_uri' } });
    expect(matchLocation(locations, '/.well-known/acme-challenge/tok')).toMatchObject({ root: '/var/www/letsencrypt', return: null });
    expect(result.config.upstream).toBeUndefined();
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
