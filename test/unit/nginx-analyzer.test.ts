import { describe, expect, it } from 'vitest';
import { analyze } from '../../nginx-compat/analyzer.js';
import { DIRECTIVES, arityAllows } from '../../nginx-compat/directives.js';
import { parseText } from '../../nginx-compat/parser.js';

const F = '/t/nginx.conf';
const check = (text: string, strict = false) => analyze(parseText(text, F).tree, { strict });
const messages = (text: string, strict = false): string[] => check(text, strict).errors.map((e) => e.message);

describe('nginx analyzer: contexts', () => {
  it.each([
    ['proxy_pass in a server', 'http {\n  server {\n    proxy_pass http://app;\n  }\n}', '"proxy_pass" directive is not allowed here in /t/nginx.conf:3'],
    ['listen in http', 'http {\n  listen 80;\n}', '"listen" directive is not allowed here in /t/nginx.conf:2'],
    ['location at the top level', 'location / { }', '"location" directive is not allowed here in /t/nginx.conf:1'],
    ['worker_connections outside events', 'worker_connections 1024;', '"worker_connections" directive is not allowed here in /t/nginx.conf:1'],
    ['client_header_timeout in a location', 'http { server { location / {\n client_header_timeout 10s; } } }', '"client_header_timeout" directive is not allowed here in /t/nginx.conf:2'],
    ['proxy_pass in an if of a server', 'http { server {\n if ($host = a) {\n  proxy_pass http://app;\n } } }', '"proxy_pass" directive is not allowed here in /t/nginx.conf:3'],
    ['a server line outside an upstream, without a block', 'http {\n  server unix:/tmp/a.sock;\n}', 'directive "server" has no opening "{" in /t/nginx.conf:2'],
  ])('refuses %s', (_what, text, message) => {
    expect(messages(text)).toEqual([message]);
  });

  it('accepts the same directive where nginx allows it, server meaning two things', () => {
    const text = `
user www-data;
events { worker_connections 1024; }
http {
  upstream app_server { server unix:/tmp/web_server.sock fail_timeout=0; }
  server {
    listen 80 default_server;
    if ($request_method = TRACE) { return 405; }
    location / {
      if ($http_x_legacy) { proxy_pass http://app_server; }
      proxy_pass http://app_server;
    }
  }
}`;
    expect(check(text)).toEqual({ errors: [], warnings: [] });
  });

  it('does not read the data inside types and map as directives', () => {
    expect(check('http {\n types { text/html html htm; application/javascript js; }\n map $uri $x { default 0; ~^/a 1; }\n}')).toEqual({ errors: [], warnings: [] });
  });
});

describe('nginx analyzer: arguments', () => {
  it.each([
    ['listen with none', 'http { server {\n listen;\n} }', 'invalid number of arguments in "listen" directive in /t/nginx.conf:2'],
    ['server_tokens with two', 'http {\n server_tokens off on;\n}', 'invalid number of arguments in "server_tokens" directive in /t/nginx.conf:2'],
    ['a server in an upstream with none', 'http { upstream app {\n server;\n} }', 'invalid number of arguments in "server" directive in /t/nginx.conf:2'],
    ['try_files with one', 'http { server {\n try_files $uri;\n} }', 'invalid number of arguments in "try_files" directive in /t/nginx.conf:2'],
    ['add_header with one', 'http {\n add_header X-A;\n}', 'invalid number of arguments in "add_header" directive in /t/nginx.conf:2'],
    ['events with an argument', 'events on { }', 'invalid number of arguments in "events" directive in /t/nginx.conf:1'],
    ['http without a block', 'http;', 'directive "http" has no opening "{" in /t/nginx.conf:1'],
    ['gzip with a block', 'http {\n gzip on { }\n}', 'directive "gzip" is not terminated by ";" in /t/nginx.conf:2'],
    ['a flag that is neither on nor off', 'http {\n gzip yes;\n}', 'invalid value "yes" in "gzip" directive, it must be "on" or "off" in /t/nginx.conf:2'],
  ])('refuses %s', (_what, text, message) => {
    expect(messages(text)).toEqual([message]);
  });

  it('reads flags without case, as nginx does', () => {
    expect(messages('http { gzip ON; sendfile Off; }')).toEqual([]);
  });

  it('collects every error in file order and still checks inside a block with an error', () => {
    const text = 'http {\n  listen 80;\n  server {\n    listen;\n    location / {\n      server_name x;\n    }\n  }\n}\n';
    expect(messages(text)).toEqual([
      '"listen" directive is not allowed here in /t/nginx.conf:2',
      'invalid number of arguments in "listen" directive in /t/nginx.conf:4',
      '"server_name" directive is not allowed here in /t/nginx.conf:6',
    ]);
    expect(check(text).errors.map((e) => e.code)).toEqual(['GW_ERR_NGINX_CONTEXT', 'GW_ERR_NGINX_ARGS', 'GW_ERR_NGINX_CONTEXT']);
  });

  it('implements nginx argument masks', () => {
    expect([0, 1, 2, 3].map((n) => arityAllows('take12', n))).toEqual([false, true, true, false]);
    expect([1, 2, 3, 4].map((n) => arityAllows('take23', n))).toEqual([false, true, true, false]);
    expect([0, 1, 9].map((n) => arityAllows('1more', n))).toEqual([false, true, true]);
    expect([1, 2, 9].map((n) => arityAllows('2more', n))).toEqual([false, true, true]);
  });

  it('knows every directive the hosts use', () => {
    const used = ['listen', 'server_name', 'upstream', 'server', 'location', 'proxy_pass', 'proxy_set_header', 'proxy_connect_timeout', 'proxy_read_timeout', 'proxy_send_timeout', 'proxy_buffering', 'proxy_next_upstream', 'proxy_http_version', 'client_max_body_size', 'client_header_timeout', 'client_body_timeout', 'keepalive_timeout', 'send_timeout', 'large_client_header_buffers', 'underscores_in_headers', 'server_tokens', 'root', 'try_files', 'expires', 'add_header', 'error_page', 'return', 'rewrite', 'gzip', 'gzip_types', 'gzip_static', 'gzip_comp_level', 'gzip_min_length', 'gzip_proxied', 'gzip_vary', 'gzip_disable', 'log_format', 'access_log', 'error_log', 'set_real_ip_from', 'real_ip_header', 'real_ip_recursive', 'user', 'worker_processes', 'pid', 'events', 'worker_connections', 'http', 'include', 'types', 'default_type', 'sendfile', 'tcp_nopush', 'tcp_nodelay', 'index'];
    expect(used.filter((d) => !Object.hasOwn(DIRECTIVES, d))).toEqual([]);
  });
});

describe('nginx analyzer: unknown directives', () => {
  const text = 'http {\n  server {\n    passenger_enabled on;\n    more_set_headers {\n      listen 80;\n    }\n  }\n}\n';

  it('warns, naming the directive and its line, and skips its block', () => {
    const { errors, warnings } = check(text);
    expect(errors).toEqual([]);
    expect(warnings).toEqual([
      { code: 'GW_WARN_NGINX_UNKNOWN', directive: 'passenger_enabled', file: F, line: 3, message: 'unknown directive "passenger_enabled" ignored in /t/nginx.conf:3' },
      { code: 'GW_WARN_NGINX_UNKNOWN', directive: 'more_set_headers', file: F, line: 4, message: 'unknown directive "more_set_headers" and its block ignored in /t/nginx.conf:4' },
    ]);
  });

  it('is an error in strict mode, worded as nginx words it', () => {
    const { errors, warnings } = check(text, true);
    expect(warnings).toEqual([]);
    expect(errors.map((e) => [e.code, e.message])).toEqual([
      ['GW_ERR_NGINX_UNKNOWN', 'unknown directive "passenger_enabled" in /t/nginx.conf:3'],
      ['GW_ERR_NGINX_UNKNOWN', 'unknown directive "more_set_headers" in /t/nginx.conf:4'],
    ]);
  });

  it('is not fooled by names on Object.prototype', () => {
    expect(check('http { constructor 1; }').warnings.map((w) => w.directive)).toEqual(['constructor']);
  });
});
