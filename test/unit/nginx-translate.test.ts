import { describe, expect, it } from 'vitest';
import { parseText } from '../../nginx-compat/parser.js';
import { translate, type TranslateResult } from '../../nginx-compat/translate.js';
import { durationString, parseNginxSize, parseNginxTime, sizeString } from '../../nginx-compat/units.js';
import { validateConfig } from '../../src/config/validate.js';

const F = '/t/nginx.conf';
const run = (text: string, strict = false): TranslateResult => translate(parseText(text, F).tree, { strict });
/** A server with an app location, and `body` added to the server. */
const server = (body: string, http = ''): TranslateResult =>
  run(`http {\n${http}\nupstream app { server unix:/tmp/web_server.sock; }\nserver {\n${body}\nlocation / { proxy_pass http://app; }\n}\n}\n`);
const warned = (r: TranslateResult): string[] => r.warnings.map((w) => w.message);
const errored = (r: TranslateResult): string[] => r.errors.map((e) => e.message);

describe('nginx units', () => {
  it('reads nginx times as milliseconds', () => {
    expect(parseNginxTime('65')).toBe(65_000);
    expect(parseNginxTime('60s')).toBe(60_000);
    expect(parseNginxTime('500ms')).toBe(500);
    expect(parseNginxTime('1h')).toBe(3_600_000);
    expect(parseNginxTime('1h 30m')).toBe(5_400_000);
    expect(parseNginxTime('1d12h')).toBe(129_600_000);
    expect(parseNginxTime('1M')).toBe(30 * 86_400_000);
    expect(parseNginxTime('30m1h')).toBeUndefined();
    expect(parseNginxTime('10ms', true)).toBeUndefined();
    expect(parseNginxTime('soon')).toBeUndefined();
  });

  it('reads nginx sizes as bytes', () => {
    expect(parseNginxSize('50m')).toBe(50 * 1024 ** 2);
    expect(parseNginxSize('8K')).toBe(8192);
    expect(parseNginxSize('1g')).toBe(1024 ** 3);
    expect(parseNginxSize('512')).toBe(512);
    expect(parseNginxSize('1.5m')).toBeUndefined();
  });

  it('writes strings the gateway reads the same', () => {
    expect(durationString('65', 65_000)).toBe('65s');
    expect(durationString('60s', 60_000)).toBe('60s');
    expect(durationString('1h 30m', 5_400_000)).toBe('5400s');
    expect(durationString('1M', 2_592_000_000)).toBe('2592000s');
    expect(sizeString(50 * 1024 ** 2)).toBe('50m');
    expect(sizeString(4 * 8192)).toBe('32k');
    expect(sizeString(0)).toBe('0');
    expect(sizeString(1500)).toBe('1500');
  });
});

describe('translate: listeners', () => {
  it('maps every listen form to HOST:PORT', () => {
    const r = server('listen 80; listen [::]:80; listen 127.0.0.1:8080; listen *:8000; listen 10.0.0.1; listen [::1];');
    expect(r.errors).toEqual([]);
    expect(r.config.listen).toEqual(['0.0.0.0:80', '[::]:80', '127.0.0.1:8080', '0.0.0.0:8000', '10.0.0.1:80', '[::1]:80']);
  });

  it('keeps default_server and proxy_protocol on the listener, which reads the PROXY protocol', () => {
    const r = server('listen 80 default_server proxy_protocol; listen 8080;');
    expect(r.listeners).toEqual([
      { address: '0.0.0.0:80', defaultServer: true, proxyProtocol: true, file: F, line: 5 },
      { address: '0.0.0.0:8080', defaultServer: false, proxyProtocol: false, file: F, line: 5 },
    ]);
    expect(r.config.listen).toEqual(['0.0.0.0:80 proxy_protocol', '0.0.0.0:8080']);
    expect(warned(r)).toEqual([]);
    expect(validateConfig(r.config).config?.listen).toEqual([
      { host: '0.0.0.0', port: 80, proxyProtocol: true },
      { host: '0.0.0.0', port: 8080, proxyProtocol: false },
    ]);
  });

  it('leaves a TLS listener out, warns for parameters without equivalent', () => {
    const r = server('listen 80 backlog=4096;\nlisten 443 ssl http2;');
    expect(r.config.listen).toEqual(['0.0.0.0:80']);
    expect(r.warnings.map((w) => [w.code, w.line])).toEqual([
      ['GW_WARN_NGINX_IGNORED', 5],
      ['GW_WARN_NGINX_IGNORED', 6],
      ['GW_WARN_NGINX_DIFFERS', 6],
    ]);
    expect(warned(r)[2]).toMatch(/"listen 443 ssl" is left out: the gateway does not terminate TLS/);
  });

  it('refuses what it cannot serve', () => {
    expect(errored(server('listen 443 ssl;'))).toEqual(['no listener the gateway can serve (TLS listeners are left out) in /t/nginx.conf:4']);
    expect(errored(server('listen unix:/run/gw.sock;'))).toEqual(['"listen unix:/run/gw.sock": the gateway listens on TCP addresses only in /t/nginx.conf:5']);
    expect(errored(server('listen 99999;'))).toEqual(['invalid port in "99999" of the "listen" directive in /t/nginx.conf:5']);
  });

  it('translates the default_server and warns about the other servers', () => {
    const r = run('http {\n server { listen 80; return 301 https://$host$request_uri; }\n server { listen 8080 default_server; location / { proxy_pass http://unix:/tmp/a.sock:; } }\n}');
    expect(r.config.listen).toEqual(['0.0.0.0:8080']);
    expect(warned(r)).toEqual(['"server" block is not translated: the gateway serves one server, the one at /t/nginx.conf:3 in /t/nginx.conf:2']);
  });
});

describe('translate: upstream', () => {
  it('follows proxy_pass to an upstream block with one unix server', () => {
    const r = server('listen 80;');
    expect(r.config.upstream).toBe('/tmp/web_server.sock');
    expect(r.warnings).toEqual([]);
  });

  it('takes proxy_pass http://unix:/path: directly', () => {
    const r = run('http { server { location / { proxy_pass http://unix:/var/run/app.sock:; } } }');
    expect(r.config.upstream).toBe('/var/run/app.sock');
  });

  it('refuses a TCP upstream, https, variables and a second socket', () => {
    expect(errored(run('http { server {\n location / { proxy_pass http://127.0.0.1:3000; } } }'))).toEqual([
      'proxy_pass to "http://127.0.0.1:3000" is not supported: the gateway proxies only to a Unix socket (http://unix:/path: or an upstream with "server unix:/path") in /t/nginx.conf:2',
    ]);
    expect(errored(run('http { upstream app {\n server 127.0.0.1:3000; }\n server { location / { proxy_pass http://app; } } }'))).toEqual([
      'upstream "app" server "127.0.0.1:3000" is not supported: the gateway proxies only to a Unix socket in /t/nginx.conf:2',
    ]);
    expect(run('http { server { location / { proxy_pass https://unix:/a.sock; } } }').errors[0]?.code).toBe('GW_ERR_NGINX_UNSUPPORTED');
    expect(run('http { server { location / { proxy_pass http://$backend; } } }').errors[0]?.code).toBe('GW_ERR_NGINX_UNSUPPORTED');
    expect(errored(run('http { server {\n location / { proxy_pass http://unix:/a.sock:; }\n location /b/ { proxy_pass http://unix:/b.sock:; } } }'))).toEqual([
      'proxy_pass to a second app server ("/b.sock"; "/a.sock" at /t/nginx.conf:2): the gateway has one upstream in /t/nginx.conf:3',
    ]);
    expect(errored(run('http { server {\n location / { proxy_pass app; } } }'))).toEqual(['invalid URL prefix in "app" in /t/nginx.conf:2']);
  });

  it('warns about a URI part, extra servers and parameters, an unused upstream, no proxy_pass', () => {
    const r = run('http {\n upstream app {\n  server unix:/a.sock backup;\n  server unix:/b.sock;\n }\n upstream old { server unix:/c.sock; }\n server { location /api/ { proxy_pass http://app/v1/; } }\n}');
    expect(r.config.upstream).toBe('/a.sock');
    expect(warned(r)).toEqual([
      '"server" parameter "backup" in upstream "app" is ignored: the gateway has one app server in /t/nginx.conf:3',
      '"server unix:/b.sock" in upstream "app" is not used: the gateway proxies to one socket, the first server\'s in /t/nginx.conf:4',
      '"upstream" "old" is not used by the translated server in /t/nginx.conf:6',
      '"proxy_pass" differs: its URI part "/v1/" is ignored; requests reach the app with their own URI (nginx replaces the location\'s prefix with it) in /t/nginx.conf:7',
    ]);
    expect(warned(run('http { server { listen 80; root /srv; } }'))).toEqual([expect.stringMatching(/^"server" has no proxy_pass/)]);
  });

  it('says nothing of a URI part that equals the location prefix', () => {
    expect(run('http { server { location / { proxy_pass http://unix:/a.sock:/; } } }').warnings).toEqual([]);
  });
});

describe('translate: sizes, times and limits', () => {
  it('maps the server-wide keys, server overriding http', () => {
    const r = server(
      'client_max_body_size 100m; keepalive_timeout 30s 25; client_header_timeout 10; client_body_timeout 1m; send_timeout 500ms; underscores_in_headers on;',
      'client_max_body_size 50m; keepalive_timeout 65; proxy_connect_timeout 5s; proxy_read_timeout 1h; proxy_send_timeout 90;',
    );
    expect(r.errors).toEqual([]);
    expect(r.config).toMatchObject({
      clientMaxBodySize: '100m',
      keepaliveTimeout: '30s',
      clientHeaderTimeout: '10s',
      clientBodyTimeout: '1m',
      sendTimeout: '500ms',
      proxyConnectTimeout: '5s',
      proxyReadTimeout: '1h',
      proxySendTimeout: '90s',
      underscoresInHeaders: true,
    });
    expect(warned(r)).toEqual([expect.stringMatching(/^"keepalive_timeout" header timeout "25" is ignored/)]);
  });

  it("writes nginx's own defaults where the gateway's differ (body 1m, keep-alive 75s)", () => {
    expect(server('listen 80;').config).toEqual({ listen: ['0.0.0.0:80'], upstream: '/tmp/web_server.sock', clientMaxBodySize: '1m', keepaliveTimeout: '75s' });
  });

  it('takes proxy timeouts from the location that proxies', () => {
    const r = run('http { server { location @app { proxy_read_timeout 120; proxy_pass http://unix:/a.sock:; } } }');
    expect(r.config.proxyReadTimeout).toBe('120s');
  });

  it('warns when locations disagree on a value the gateway has once', () => {
    const r = run('http { keepalive_timeout 65; server {\n location / { proxy_read_timeout 10s; proxy_pass http://unix:/a.sock:; }\n location /slow/ { keepalive_timeout 5; proxy_read_timeout 5m; proxy_pass http://unix:/a.sock:; } } }');
    expect(r.config.proxyReadTimeout).toBe('10s');
    expect(warned(r)).toEqual([
      '"keepalive_timeout" in a location differs: the gateway applies one value to every location, the server\'s (65) in /t/nginx.conf:3',
      '"proxy_read_timeout" differs between locations: the gateway applies one value, 10s (/t/nginx.conf:2) in /t/nginx.conf:3',
    ]);
  });

  // Regression: a WebSocket location's proxy_read_timeout 1h became the gateway's one value while
  // the app location, which sets none, runs with nginx's 60s: no warning said so.
  it('warns for a proxying location left at nginx\'s default 60s when another value is taken', () => {
    const r = run('http { server {\n location /cable { proxy_read_timeout 1h; proxy_pass http://unix:/a.sock:; }\n location @app { proxy_pass http://unix:/a.sock:; }\n location /api { proxy_read_timeout 1m; proxy_pass http://unix:/a.sock:; } } }');
    expect(r.config.proxyReadTimeout).toBe('1h');
    expect(warned(r)).toEqual([
      '"proxy_read_timeout" differs between locations: the gateway applies one value, 1h (/t/nginx.conf:2); nginx\'s default 60s applies in this location in /t/nginx.conf:3',
      '"proxy_read_timeout" differs between locations: the gateway applies one value, 1h (/t/nginx.conf:2) in /t/nginx.conf:4',
    ]);
    // Equal times written differently, and a taken value equal to the default, are no difference.
    expect(run('http { server {\n location / { proxy_read_timeout 60s; proxy_pass http://unix:/a.sock:; }\n location @app { proxy_read_timeout 1m; proxy_pass http://unix:/a.sock:; }\n location /x { proxy_pass http://unix:/a.sock:; } } }').warnings).toEqual([]);
  });

  it('maps large_client_header_buffers to maxHeaderSize, saying how the limits differ', () => {
    const r = server('large_client_header_buffers 4 16k;');
    expect(r.config.maxHeaderSize).toBe('64k');
    expect(warned(r)[0]).toMatch(/bounds the whole request head to 4 x 16k = 64k and answers 431; nginx bounds each line to 16k/);
  });

  it('refuses invalid values and duplicates with nginx words', () => {
    expect(errored(server('proxy_read_timeout forever;'))).toEqual(['"proxy_read_timeout" directive invalid value in /t/nginx.conf:5']);
    expect(errored(server('client_max_body_size 1.5m;'))).toEqual(['"client_max_body_size" directive invalid value in /t/nginx.conf:5']);
    expect(errored(server('root /a;\nroot /b;'))).toEqual(['"root" directive is duplicate in /t/nginx.conf:6']);
  });

  it('does not translate keepalive_timeout 0, which the gateway cannot do', () => {
    const r = server('keepalive_timeout 0;');
    expect(r.config.keepaliveTimeout).toBeUndefined();
    expect(warned(r)).toEqual([expect.stringMatching(/^"keepalive_timeout 0" differs/)]);
  });
});

describe('translate: real IP, logs, user', () => {
  it('maps set_real_ip_from, real_ip_header and real_ip_recursive to trustedProxies, realIpHeader and realIpRecursive', () => {
    const r = server('set_real_ip_from 10.0.0.0/8; set_real_ip_from 2001:db8::/32; real_ip_header X-Forwarded-For; real_ip_recursive on;');
    expect(r.config).toMatchObject({ trustedProxies: ['10.0.0.0/8', '2001:db8::/32'], realIpHeader: 'X-Forwarded-For', realIpRecursive: true });
    expect(r.warnings).toEqual([]);
    expect(server('set_real_ip_from 10.0.0.0/8; real_ip_header CF-Connecting-IP;').config).toMatchObject({ realIpHeader: 'CF-Connecting-IP', realIpRecursive: false });
  });

  it("writes nginx's realip defaults (X-Real-IP, not recursive) where the gateway's differ", () => {
    const r = server('set_real_ip_from 10.0.0.0/8;');
    expect(r.config).toMatchObject({ trustedProxies: ['10.0.0.0/8'], realIpHeader: 'X-Real-IP', realIpRecursive: false });
    expect(r.warnings).toEqual([]);
    expect(validateConfig(r.config).problems).toEqual([]);
  });

  it('leaves real_ip_header and real_ip_recursive out without set_real_ip_from, where nginx changes no address', () => {
    const r = server('real_ip_header X-Real-IP; real_ip_recursive on;');
    expect(r.config).not.toHaveProperty('realIpHeader');
    expect(r.config).not.toHaveProperty('realIpRecursive');
    expect(r.warnings).toEqual([]);
  });

  // Regression: real_ip_header proxy_protocol (AWS NLB) was also told that real_ip_recursive off
  // differs, but the PROXY protocol header carries one address: recursion changes nothing.
  it('takes the client address from the PROXY protocol header of a proxy_protocol listener', () => {
    const r = server('listen 80 proxy_protocol; set_real_ip_from 10.0.0.0/8; real_ip_header proxy_protocol;');
    expect(warned(r)).toEqual([]);
    expect(r.config).toMatchObject({ listen: ['0.0.0.0:80 proxy_protocol'], trustedProxies: ['10.0.0.0/8'], realIpHeader: 'proxy_protocol' });
    expect(validateConfig(r.config).problems).toEqual([]);
  });

  it('warns about real_ip_header proxy_protocol when no listener has proxy_protocol (nginx changes no address)', () => {
    const r = server('listen 80; set_real_ip_from 10.0.0.0/8; real_ip_header proxy_protocol;');
    expect(warned(r)).toEqual([expect.stringMatching(/^"real_ip_header proxy_protocol" differs: no "listen" of this server has proxy_protocol/)]);
    expect(r.config).not.toHaveProperty('realIpHeader');
    expect(validateConfig(r.config).problems).toEqual([]);
  });

  it('maps access_log to accessLog and accessLogFormat', () => {
    expect(server('access_log /var/log/nginx/access.log;').config).toMatchObject({ accessLog: '/var/log/nginx/access.log', accessLogFormat: 'combined' });
    expect(server('access_log /dev/stdout combined;').config).toMatchObject({ accessLog: '-', accessLogFormat: 'combined' });
    expect(server('access_log off;').config.accessLog).toBe('off');
    const custom = run('http {\n log_format main "$remote_addr $status";\n access_log /var/log/a.log main buffer=32k;\n server { location / { proxy_pass http://unix:/a.sock:; } } }');
    expect(custom.config.accessLog).toBe('/var/log/a.log');
    expect(warned(custom)).toEqual([expect.stringMatching(/^"access_log" format "main" differs/), expect.stringMatching(/^"access_log" parameter "buffer=32k" is ignored/)]);
  });

  it('maps user, worker_processes, pid and the main error_log level', () => {
    const r = run('user deploy deploy;\nworker_processes auto;\npid /run/nginx.pid;\nerror_log /var/log/nginx/error.log notice;\nhttp { server { location / { proxy_pass http://unix:/a.sock:; } } }');
    expect(r.config).toMatchObject({ user: 'deploy', logLevel: 'info', gatewayPidFile: '/run/nginx.pid', workers: 'auto' });
    expect(r.warnings.map((w) => [w.directive, w.code])).toEqual([
      ['user', 'GW_WARN_NGINX_DIFFERS'],
      ['error_log', 'GW_WARN_NGINX_DIFFERS'],
    ]);
    expect(run('worker_processes 4;\nhttp { server { location / { proxy_pass http://unix:/a.sock:; } } }').config.workers).toBe(4);
  });

  it('leaves a relative pid path out, with a warning (nginx resolves it against its -p prefix)', () => {
    const r = run('pid nginx.pid;\nhttp { server { location / { proxy_pass http://unix:/a.sock:; } } }');
    expect(r.config.gatewayPidFile).toBeUndefined();
    expect(r.warnings.map((w) => [w.directive, w.code, w.message])).toEqual([['pid', 'GW_WARN_NGINX_DIFFERS', expect.stringContaining('absolute') as string]]);
  });
});

describe('translate: locations', () => {
  const text = String.raw`http {
  root /srv/public;
  add_header X-Frame-Options SAMEORIGIN;
  error_page 404 /404.html;
  gzip on;
  server {
    listen 80;
    error_page 500 502 503 504 /50x.html;
    rewrite ^/old/(.*)$ /new/$1 permanent;
    location ^~ /assets/ {
      expires max;
      add_header Cache-Control public always;
      gzip_static on;
      access_log off;
    }
    location = /up { return 200 "ok"; }
    location /legacy/ { return https://example.com$request_uri; }
    location /files/ { expires modified 30d; root /data; internal; }
    location ~* \.(png|jpg)$ { expires -1; error_page 404 =200 /empty.gif; client_max_body_size 0; }
    location / { try_files $uri @app; }
    location @app {
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_pass http://unix:/tmp/web_server.sock:;
    }
  }
}`;
  const r = run(text);
  const loc = (pattern: string) => r.locations.find((l) => l.pattern === pattern);

  it('translates without errors or warnings', () => {
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.locations.map((l) => l.match)).toEqual(['noregex', 'exact', 'prefix', 'prefix', 'iregex', 'prefix', 'named']);
  });

  it("resolves the server level: its rewrites, error pages and inherited values", () => {
    expect(r.server).toMatchObject({
      match: 'server',
      root: '/srv/public',
      rewrite: [{ regex: '^/old/(.*)$', replacement: '/new/$1', flag: 'permanent' }],
      errorPage: [{ codes: [500, 502, 503, 504], status: null, uri: '/50x.html' }],
      addHeader: [{ name: 'X-Frame-Options', value: 'SAMEORIGIN', always: false }],
      clientMaxBodySize: '1m',
      gzip: { enabled: true, types: ['text/html'] },
    });
  });

  it('inherits add_header only into a location that has none of its own', () => {
    expect(loc('/assets/')?.addHeader).toEqual([{ name: 'Cache-Control', value: 'public', always: true }]);
    expect(loc('/')?.addHeader).toEqual([{ name: 'X-Frame-Options', value: 'SAMEORIGIN', always: false }]);
  });

  it('reads expires, gzip_static, access_log off, root, internal per location', () => {
    expect(loc('/assets/')).toMatchObject({ expires: { kind: 'max' }, gzipStatic: 'on', accessLog: false, root: '/srv/public' });
    expect(loc('/files/')).toMatchObject({ expires: { kind: 'after', seconds: 2_592_000, modified: true }, root: '/data', internal: true, accessLog: true });
    expect(loc('\\.(png|jpg)$')).toMatchObject({ expires: { kind: 'after', seconds: -1, modified: false }, clientMaxBodySize: '0' });
  });

  it('inherits error_page only into a location that has none of its own', () => {
    expect(loc('\\.(png|jpg)$')?.errorPage).toEqual([{ codes: [404], status: 200, uri: '/empty.gif' }]);
    expect(loc('/')?.errorPage).toEqual([{ codes: [500, 502, 503, 504], status: null, uri: '/50x.html' }]);
  });

  it('reads return in its forms, try_files, proxy_pass and proxy_set_header', () => {
    expect(loc('/up')?.return).toEqual({ status: 200, text: 'ok' });
    expect(loc('/legacy/')?.return).toEqual({ status: 302, text: 'https://example.com$request_uri' });
    expect(loc('/')?.tryFiles).toEqual(['$uri', '@app']);
    expect(loc('/')?.rewrite).toEqual([]);
    expect(loc('@app')).toMatchObject({
      proxyPass: 'http://unix:/tmp/web_server.sock:',
      proxySetHeader: [
        { name: 'Host', value: '$http_host' },
        { name: 'X-Forwarded-Proto', value: '$scheme' },
      ],
    });
  });

  it('refuses bad location modifiers, regexes, duplicates and values with nginx words', () => {
    const bad = (body: string) => errored(run(`http { server {\n${body}\n} }`));
    expect(bad('location == /x { }')).toEqual(['invalid location modifier "==" in /t/nginx.conf:2']);
    expect(bad('location ~ ^/(a { }')).toEqual([expect.stringMatching(/^regex "\^\/\(a" is invalid: .* in \/t\/nginx.conf:2$/)]);
    expect(bad('location /a/ { }\nlocation ^~ /a/ { }')).toEqual(['duplicate location "/a/" in /t/nginx.conf:3']);
    expect(bad(String.raw`location ~ \A/x { }`)).toEqual([String.raw`regex "\A/x" is invalid: PCRE's \A is not supported in /t/nginx.conf:2`]);
    expect(bad('location ~ (?i)^/x { }')).toEqual([expect.stringMatching(/^regex "\(\?i\)\^\/x" is invalid: /)]);
    expect(bad('location ~ ^/a++ { }')).toEqual([expect.stringMatching(/^regex "\^\/a\+\+" is invalid: /)]);
    expect(bad('error_page 200 /x.html;')).toEqual(['value "200" must be between 300 and 599 in /t/nginx.conf:2']);
    expect(bad('return abc;')).toEqual(['invalid return code "abc" in /t/nginx.conf:2']);
    expect(bad('rewrite ^/a /b forever;')).toEqual(['invalid parameter "forever" in /t/nginx.conf:2']);
    expect(bad('location / { expires soon; }')).toEqual(['invalid value "soon" in /t/nginx.conf:2']);
    expect(bad('location / { gzip_static maybe; }')).toEqual(['invalid value "maybe" in /t/nginx.conf:2']);
    expect(bad('location / { add_header X-A b sometimes; }')).toEqual(['invalid parameter "sometimes" in /t/nginx.conf:2']);
  });

  it('warns about nested locations and if blocks, which are not translated', () => {
    const n = run('http { server {\n location / {\n  location /a/ { }\n  if ($x) { return 403; }\n  proxy_pass http://unix:/a.sock:;\n } } }');
    expect(warned(n)).toEqual([
      'nested "location" is not translated: requests it would take are served by the location at /t/nginx.conf:2 in /t/nginx.conf:3',
      '"if" is ignored: conditions are not translated: the directives inside apply to no request in /t/nginx.conf:4',
    ]);
  });
});

describe('translate: never silent, strict, and errors first', () => {
  it('warns for every known directive it does not use, saying why', () => {
    const r = server('sendfile on;\ntcp_nodelay on;\nproxy_buffering on;\nproxy_http_version 1.1;\nallow 10.0.0.0/8;');
    expect(r.warnings.map((w) => [w.directive, w.line, w.code])).toEqual([
      ['sendfile', 5, 'GW_WARN_NGINX_IGNORED'],
      ['tcp_nodelay', 6, 'GW_WARN_NGINX_IGNORED'],
      ['proxy_buffering', 7, 'GW_WARN_NGINX_DIFFERS'],
      ['allow', 9, 'GW_WARN_NGINX_DIFFERS'],
    ]);
    expect(warned(r)[3]).toBe('"allow" differs: access rules are not enforced: every client is let through in /t/nginx.conf:9');
  });

  it('passes unknown directives through as warnings, or errors in strict mode with no config', () => {
    expect(warned(server('passenger_enabled on;'))).toEqual(['unknown directive "passenger_enabled" ignored in /t/nginx.conf:5']);
    const strict = run('http { server {\n passenger_enabled on;\n location / { proxy_pass http://unix:/a.sock:; } } }', true);
    expect(errored(strict)).toEqual(['unknown directive "passenger_enabled" in /t/nginx.conf:2']);
    expect(strict.config).toEqual({});
  });

  it('translates nothing when the analyzer finds errors', () => {
    const r = run('http { server {\n proxy_pass http://unix:/a.sock:;\n listen 80; } }');
    expect(errored(r)).toEqual(['"proxy_pass" directive is not allowed here in /t/nginx.conf:2']);
    expect(r).toMatchObject({ config: {}, listeners: [], server: null, locations: [] });
  });

  it('produces a config that validateConfig accepts', () => {
    const r = server('listen 8080; client_max_body_size 20m; keepalive_timeout "1h 30m"; large_client_header_buffers 4 8k; set_real_ip_from 10.0.0.0/8; real_ip_header X-Forwarded-For; real_ip_recursive on; access_log /dev/stdout;');
    const v = validateConfig(r.config);
    expect(v.problems).toEqual([]);
    expect(v.config).toMatchObject({ clientMaxBodySize: 20 * 1024 ** 2, keepaliveTimeout: 5_400_000, maxHeaderSize: 32 * 1024, listen: [{ host: '0.0.0.0', port: 8080 }] });
  });
});
