/**
 * After a translation: a warning for every known directive it did not use, saying what the gateway
 * does instead (unknown ones were already warned about by the analyzer). Nothing is ignored in
 * silence.
 */
import type { WarningCode } from './errors.js';
import type { Directive } from './parser.js';
import type { Report } from './report.js';
import { specsOf } from './analyzer.js';

type Reason = readonly [WarningCode, string];

const I = 'GW_WARN_NGINX_IGNORED' as const;
const D = 'GW_WARN_NGINX_DIFFERS' as const;
const TLS: Reason = [I, 'the gateway does not terminate TLS; terminate it in front of the gateway (the load balancer)'];
const TUNING: Reason = [I, "a tuning of nginx's own I/O with no visible effect; the gateway uses Node's defaults"];
const EVENTS: Reason = [I, 'the gateway is one process with no per-worker connection limit or event method to choose'];

const REASONS: Readonly<Record<string, Reason>> = {
  server_tokens: [D, "the gateway adds no Server header and passes the app's unchanged; nginx always sends its own (\"nginx\" with server_tokens off) and hides the app's"],
  worker_rlimit_nofile: [I, 'raise the open-file limit in the service manager (LimitNOFILE=) instead'],
  daemon: [I, 'the gateway runs in the foreground, under a service manager'],
  worker_connections: EVENTS,
  multi_accept: EVENTS,
  accept_mutex: EVENTS,
  types_hash_max_size: TUNING,
  log_not_found: [I, 'a missing static file is not written to an error log'],
  http2_idle_timeout: TLS,
  proxy_cache: [D, 'the gateway caches no responses: every request reaches the app'],
  proxy_cache_path: [D, 'the gateway caches no responses: every request reaches the app'],
  proxy_cache_valid: [D, 'the gateway caches no responses: every request reaches the app'],
  use: EVENTS,
  sendfile: TUNING,
  tcp_nopush: TUNING,
  tcp_nodelay: TUNING,
  client_body_buffer_size: TUNING,
  client_header_buffer_size: [I, 'the gateway bounds the request head as a whole (maxHeaderSize, from large_client_header_buffers)'],
  proxy_buffer_size: TUNING,
  proxy_buffers: TUNING,
  gzip_buffers: TUNING,
  server_names_hash_bucket_size: TUNING,
  types: [I, "MIME types of static files come from the gateway's own table"],
  default_type: [I, "MIME types of static files come from the gateway's own table"],
  keepalive_requests: [I, 'the gateway does not close a keep-alive connection after a number of requests'],
  keepalive: [I, 'the gateway keeps up to upstreamConnections connections to the app, idle ones for upstreamKeepaliveTimeout'],
  proxy_redirect: [D, 'Location and Refresh headers from the app are passed unchanged'],
  proxy_hide_header: [D, "the app's response headers are passed unchanged"],
  proxy_next_upstream: [D, 'the gateway retries by its own rules: a failed connect is held and retried (holdTimeout), a request is replayed only if its method is in replayMethods'],
  proxy_connect_timeout: [I, 'applies only where proxy_pass is'],
  proxy_read_timeout: [I, 'applies only where proxy_pass is'],
  proxy_send_timeout: [I, 'applies only where proxy_pass is'],
  alias: [I, 'alias is not translated; the location is served from root'],
  charset: [I, 'no charset is added to Content-Type'],
  etag: [I, 'ETag of static files is not configurable'],
  if: [I, 'conditions are not translated: the directives inside apply to no request'],
  set: [I, 'variables set by the rewrite module are not available'],
  break: [I, 'rewrite-module control flow is not translated'],
  map: [I, 'variables defined by map are not available'],
  allow: [D, 'access rules are not enforced: every client is let through'],
  deny: [D, 'access rules are not enforced: every client is let through'],
  log_format: [D, "the gateway writes nginx's combined format (or JSON, accessLogFormat) only"],
  error_log: [I, 'the gateway has one structured log, on stdout; only the main error_log level is read'],
  server_name: [I, 'the gateway serves one server for every Host'],
  ssl_certificate: TLS,
  ssl_certificate_key: TLS,
  ssl_protocols: TLS,
  ssl_ciphers: TLS,
  ssl_prefer_server_ciphers: TLS,
  ssl_session_cache: TLS,
  ssl_session_timeout: TLS,
};

/** Conditional cases: null when the gateway behaves the same for this value. */
function reasonFor(d: Directive): Reason | null {
  const v = (d.args[0] ?? '').toLowerCase();
  switch (d.directive) {
    case 'proxy_buffering':
      return v === 'off' ? null : [D, 'the gateway streams responses to the client as they come (as with proxy_buffering off): a slow client holds its app connection longer'];
    case 'proxy_request_buffering':
      return v === 'off' ? null : [D, 'the gateway streams request bodies to the app as they come (as with proxy_request_buffering off): the app sees a slow upload arrive slowly'];
    case 'proxy_redirect':
      return v === 'off' ? null : (REASONS.proxy_redirect as Reason);
    case 'proxy_http_version':
      return v === '1.1' ? null : [D, 'the gateway speaks HTTP/1.1 to the app'];
    default:
      return REASONS[d.directive] ?? [I, 'has no gateway equivalent yet'];
  }
}

/** Warn for every unused known directive of `levels`, not descending into blocks. */
export function sweep(report: Report, levels: readonly (readonly Directive[])[]): void {
  for (const level of levels) {
    for (const d of level) {
      if (report.isUsed(d) || specsOf(d.directive) === undefined) continue;
      const r = reasonFor(d);
      report.use(d);
      if (r === null) continue;
      report.warn(r[0], `"${d.directive}" ${r[0] === I ? 'is ignored' : 'differs'}: ${r[1]}`, d);
    }
  }
}
