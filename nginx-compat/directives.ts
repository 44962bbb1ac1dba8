/**
 * The directives nginx-compat knows: where nginx allows each and how many arguments it takes, copied
 * from the ngx_command_t masks in nginx's sources (NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|..., TAKE12,
 * FLAG, 1MORE, NGX_CONF_BLOCK), as crossplane does. Knowing a directive here says nothing about
 * whether the gateway honours it: translate.ts decides that, and warns for what it does not.
 *
 * Contexts: `main` (top level), `events`, `http`, `server`, `location`, `upstream`, `if` (an `if`
 * inside a location, nginx's LIF) and `server_if` (an `if` directly in a server, nginx's SIF, where
 * only the rewrite module's directives are allowed). `limit_except` is not modelled.
 */

export type Context = 'main' | 'events' | 'http' | 'server' | 'location' | 'upstream' | 'if' | 'server_if';

/** nginx's argument masks: NOARGS, TAKE1, TAKE12, ..., FLAG (on|off), 1MORE, 2MORE. */
export type Arity = 'noargs' | 'take1' | 'take2' | 'take12' | 'take23' | 'flag' | '1more' | '2more';

export interface DirectiveSpec {
  contexts: readonly Context[];
  arity: Arity;
  /** Takes a `{ ... }` block (NGX_CONF_BLOCK); otherwise must end with `;`. */
  block?: true;
  /** The block holds data, not directives (`types`, `map`): its contents are not analysed. */
  opaque?: true;
}

const H = ['http'] as const;
const HS = ['http', 'server'] as const;
const S = ['server'] as const;
const L = ['location'] as const;
const SL = ['server', 'location'] as const;
/** NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF */
const HSL = ['http', 'server', 'location'] as const;
/** ... |NGX_HTTP_LIF_CONF */
const HSLI = ['http', 'server', 'location', 'if'] as const;
/** The rewrite module: NGX_HTTP_SRV_CONF|NGX_HTTP_SIF_CONF|NGX_HTTP_LOC_CONF|NGX_HTTP_LIF_CONF */
const REWRITE = ['server', 'server_if', 'location', 'if'] as const;
const ANY = ['main', 'events', 'http', 'server', 'location', 'upstream', 'if', 'server_if'] as const;

const one = (contexts: readonly Context[], arity: Arity, extra: Partial<DirectiveSpec> = {}): readonly DirectiveSpec[] => [{ contexts, arity, ...extra }];

export const DIRECTIVES: Readonly<Record<string, readonly DirectiveSpec[]>> = {
  // core (src/core/nginx.c, ngx_log.c, ngx_conf_file.c)
  user: one(['main'], 'take12'),
  worker_processes: one(['main'], 'take1'),
  worker_rlimit_nofile: one(['main'], 'take1'),
  pid: one(['main'], 'take1'),
  daemon: one(['main'], 'flag'),
  error_log: one(['main', 'http', 'server', 'location'], '1more'),
  include: one(ANY, 'take1'),
  events: one(['main'], 'noargs', { block: true }),
  worker_connections: one(['events'], 'take1'),
  multi_accept: one(['events'], 'flag'),
  accept_mutex: one(['events'], 'flag'),
  use: one(['events'], 'take1'),
  http: one(['main'], 'noargs', { block: true }),

  // ngx_http_core_module
  server: [
    { contexts: H, arity: 'noargs', block: true },
    { contexts: ['upstream'], arity: '1more' },
  ],
  listen: one(S, '1more'),
  server_name: one(S, '1more'),
  server_names_hash_bucket_size: one(H, 'take1'),
  types_hash_max_size: one(H, 'take1'),
  log_not_found: one(HSL, 'flag'),
  http2_idle_timeout: one(HS, 'take1'),
  proxy_request_buffering: one(HSL, 'flag'),
  proxy_cache: one(HSL, 'take1'),
  proxy_cache_path: one(H, '1more'),
  proxy_cache_valid: one(HSL, '1more'),
  location: one(SL, 'take12', { block: true }),
  types: one(HSL, 'noargs', { block: true, opaque: true }),
  default_type: one(HSL, 'take1'),
  root: one(HSLI, 'take1'),
  alias: one(L, 'take1'),
  internal: one(L, 'noargs'),
  sendfile: one(HSLI, 'flag'),
  tcp_nopush: one(HSL, 'flag'),
  tcp_nodelay: one(HSL, 'flag'),
  send_timeout: one(HSL, 'take1'),
  client_max_body_size: one(HSL, 'take1'),
  client_body_timeout: one(HSL, 'take1'),
  client_body_buffer_size: one(HSL, 'take1'),
  client_header_timeout: one(HS, 'take1'),
  client_header_buffer_size: one(HS, 'take1'),
  large_client_header_buffers: one(HS, 'take2'),
  underscores_in_headers: one(HS, 'flag'),
  keepalive_timeout: one(HSL, 'take12'),
  keepalive_requests: one(HSL, 'take1'),
  server_tokens: one(HSL, 'take1'),
  try_files: one(SL, '2more'),
  error_page: one(HSLI, '2more'),
  etag: one(HSL, 'flag'),
  gzip_vary: one(HSL, 'flag'),
  gzip_disable: one(HSL, '1more'),
  gzip_proxied: one(HSL, '1more'),
  gzip_http_version: one(HSL, 'take1'),

  // ngx_http_index_module, ngx_http_headers_filter_module, ngx_http_charset_filter_module
  index: one(HSL, '1more'),
  expires: one(HSLI, 'take12'),
  add_header: one(HSLI, 'take23'),
  charset: one(HSLI, 'take1'),

  // ngx_http_rewrite_module
  return: one(REWRITE, 'take12'),
  rewrite: one(REWRITE, 'take23'),
  set: one(REWRITE, 'take2'),
  break: one(REWRITE, 'noargs'),
  if: one(SL, '1more', { block: true }),

  // ngx_http_proxy_module
  proxy_pass: one(['location', 'if'], 'take1'),
  proxy_set_header: one(HSL, 'take2'),
  proxy_connect_timeout: one(HSL, 'take1'),
  proxy_read_timeout: one(HSL, 'take1'),
  proxy_send_timeout: one(HSL, 'take1'),
  proxy_buffering: one(HSL, 'flag'),
  proxy_buffer_size: one(HSL, 'take1'),
  proxy_buffers: one(HSL, 'take2'),
  proxy_next_upstream: one(HSL, '1more'),
  proxy_http_version: one(HSL, 'take1'),
  proxy_redirect: one(HSL, 'take12'),
  proxy_intercept_errors: one(HSL, 'flag'),
  proxy_hide_header: one(HSL, 'take1'),

  // ngx_http_upstream_module, ngx_http_upstream_keepalive_module
  upstream: one(H, 'take1', { block: true }),
  keepalive: one(['upstream'], 'take1'),

  // ngx_http_gzip_filter_module, ngx_http_gzip_static_module
  gzip: one(HSLI, 'flag'),
  gzip_types: one(HSL, '1more'),
  gzip_comp_level: one(HSL, 'take1'),
  gzip_min_length: one(HSL, 'take1'),
  gzip_buffers: one(HSL, 'take2'),
  gzip_static: one(HSL, 'take1'),

  // ngx_http_log_module
  access_log: one(HSLI, '1more'),
  log_format: one(H, '2more'),

  // ngx_http_realip_module, ngx_http_access_module, ngx_http_map_module
  set_real_ip_from: one(HSL, 'take1'),
  real_ip_header: one(HSL, 'take1'),
  real_ip_recursive: one(HSL, 'flag'),
  allow: one(HSL, 'take1'),
  deny: one(HSL, 'take1'),
  map: one(H, 'take2', { block: true, opaque: true }),

  // ngx_http_ssl_module: known so that a TLS server is reported as such, not as unknown words
  ssl_certificate: one(HS, 'take1'),
  ssl_certificate_key: one(HS, 'take1'),
  ssl_protocols: one(HS, '1more'),
  ssl_ciphers: one(HS, 'take1'),
  ssl_prefer_server_ciphers: one(HS, 'flag'),
  ssl_session_cache: one(HS, 'take12'),
  ssl_session_timeout: one(HS, 'take1'),
};

/** ngx_conf_handler's argument check. */
export function arityAllows(arity: Arity, count: number): boolean {
  switch (arity) {
    case 'noargs':
      return count === 0;
    case 'take1':
    case 'flag':
      return count === 1;
    case 'take2':
      return count === 2;
    case 'take12':
      return count === 1 || count === 2;
    case 'take23':
      return count === 2 || count === 3;
    case '1more':
      return count >= 1;
    case '2more':
      return count >= 2;
  }
}

/** The context of the block a block directive opens, from the context it appears in. */
export function innerContext(directive: string, outer: Context): Context | undefined {
  switch (directive) {
    case 'events':
      return 'events';
    case 'http':
      return 'http';
    case 'server':
      return 'server';
    case 'location':
      return 'location';
    case 'upstream':
      return 'upstream';
    case 'if':
      return outer === 'server' ? 'server_if' : 'if';
    default:
      return undefined;
  }
}
