/**
 * Every configuration key: its type, its default and what it means. The CLI flag of key `fooBar` is
 * `--foo-bar`; a JSON config file (`--config FILE`) uses the key itself. Defaults follow nginx in
 * front of Rails on these hosts (client_max_body_size 50m, keepalive_timeout 65, 60 s timeouts).
 */

export type Kind = 'workers' | 'string' | 'path' | 'listen' | 'header' | 'hostport' | 'duration' | 'size' | 'count' | 'bool' | 'cidrs' | 'enum' | 'methods' | 'env' | 'ladder' | 'check';

export interface KeySpec {
  kind: Kind;
  default: unknown;
  doc: string;
  /** For `enum`; for `check`, the check's kind. */
  values?: readonly string[];
  /** May be given more than once on the command line; the values form a list. */
  repeatable?: boolean;
  /** `null` is an accepted value (the key is off). */
  nullable?: boolean;
}

export const SCHEMA = {
  listen: { kind: 'listen', default: ['0.0.0.0:80'], repeatable: true, doc: 'Public listeners, HOST:PORT, [V6]:PORT or PORT; with the suffix ` proxy_protocol` ("0.0.0.0:80 proxy_protocol") a listener first reads the PROXY protocol header (v1 or v2) of a load balancer and closes connections without one. Repeat the flag for more.' },
  workers: { kind: 'workers', default: 'auto', doc: "Worker processes that proxy (nginx's worker_processes): `auto` is one per core. The primary process binds the listeners, runs the supervisor, the control socket and the admin listener, and drives the workers; with `user`, only the workers drop to it. 0: one process does everything (and drops to `user` entirely)." },
  upstream: { kind: 'path', default: '/tmp/web_server.sock', doc: 'Unix socket of the app server.' },
  admin: { kind: 'hostport', default: '127.0.0.1:9145', nullable: true, doc: 'Admin listener for metrics and health checks, loopback by default; null turns it off. Validated now, served once the metrics work lands.' },
  accessLog: { kind: 'string', default: '-', doc: 'Access log file, `-` for stdout, `off` for none.' },
  accessLogFormat: { kind: 'enum', values: ['combined', 'json'], default: 'combined', doc: "nginx's `combined` line, or one JSON object per request." },
  logLevel: { kind: 'enum', values: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], default: 'info', doc: 'Level of the structured (pino) log on stdout.' },
  user: { kind: 'string', default: null, nullable: true, doc: 'Drop to this user (and its group) after binding the listeners.' },
  trustedProxies: { kind: 'cidrs', default: [], repeatable: true, doc: 'Peers (CIDRs) whose X-Forwarded-For and X-Forwarded-Proto are believed, like set_real_ip_from.' },
  realIpHeader: { kind: 'header', default: 'X-Forwarded-For', doc: "nginx's real_ip_header: where the client address of a trusted peer comes from: X-Forwarded-For, another header (X-Real-IP, CF-Connecting-IP), or proxy_protocol (the PROXY header of a listener with proxy_protocol)." },
  realIpRecursive: { kind: 'bool', default: true, doc: "nginx's real_ip_recursive: skip every trusted address from the right of the header; false takes the last address only (nginx's default)." },
  forwardedForUntrusted: { kind: 'enum', values: ['replace', 'append'], default: 'replace', doc: "What to do with an untrusted peer's X-Forwarded-For: replace it with the peer address, or append to it as nginx's $proxy_add_x_forwarded_for does." },
  clientMaxBodySize: { kind: 'size', default: '50m', doc: 'Largest request body; more is answered 413. 0 means no limit.' },
  maxHeaderSize: { kind: 'size', default: '32k', doc: 'Largest request head (line and headers); more is answered 431.' },
  maxHeaderCount: { kind: 'count', default: 100, doc: 'Most request header fields; more is answered 431.' },
  underscoresInHeaders: { kind: 'bool', default: false, doc: "Accept header names with `_` (nginx's underscores_in_headers). Off: 400, since Rack maps X_Foo and X-Foo to the same key." },
  maxConnections: { kind: 'count', default: 10000, doc: "Most client connections open at once in this process, on all listeners (nginx's worker_connections); one more is closed at accept, before any byte is read. Keep it below the open-file limit (ulimit -n) less the upstream connections." },
  maxConnectionsPerClient: { kind: 'count', default: 256, nullable: true, doc: "Most connections open at once from one client address (the TCP peer, before any PROXY header is read; nginx's limit_conn on $binary_remote_addr); one more is closed at accept. null turns it off. Behind a load balancer that connects from few addresses, list its subnets in connectionLimitExempt." },
  connectionLimitExempt: { kind: 'cidrs', default: [], repeatable: true, doc: 'Peers (CIDRs) not held to maxConnectionsPerClient, e.g. a load balancer\'s subnets; maxConnections still applies. Loopback and trustedProxies are not exempt unless listed here.' },
  clientHeaderTimeout: { kind: 'duration', default: '60s', doc: 'Time to receive the whole request head; then 408.' },
  clientBodyTimeout: { kind: 'duration', default: '60s', doc: 'Longest pause between two reads of the request body; then 408 (or the connection is closed).' },
  sendTimeout: { kind: 'duration', default: '60s', doc: 'Longest pause while the client does not read the response; then the connection is closed.' },
  keepaliveTimeout: { kind: 'duration', default: '65s', doc: 'Idle time a client keep-alive connection is kept open.' },
  proxyConnectTimeout: { kind: 'duration', default: '60s', doc: 'Time to connect to the upstream socket; then 504.' },
  proxyReadTimeout: { kind: 'duration', default: '60s', doc: 'Time to the upstream response head (504), and longest pause inside its body (connection aborted).' },
  proxySendTimeout: { kind: 'duration', default: '60s', doc: 'Longest pause while the upstream does not read the request body; then 504 / abort.' },
  upstreamKeepaliveTimeout: { kind: 'duration', default: '4s', doc: "Idle time a pooled upstream connection is kept. Keep it below the app server's own (Puma: 20 s)." },
  clientFastPath: { kind: 'bool', default: true, doc: "Serve the common request (HTTP/1.1, no body, no upgrade, its head in one read) on the gateway's own fast path, Node's C parser straight off the socket, and hand every other request, with its connection, to Node's HTTP server (docs/proxy.md). Off: Node's server takes every connection. Not used with an nginx.conf site or on a PROXY protocol listener. A reload applies it to the next request." },
  upstreamClient: { kind: 'enum', values: ['native', 'undici'], default: 'native', doc: "The HTTP client that talks to the app server: `native` (Node's own C parser, src/proxy/upstream.ts; the fastest) or `undici` (the client the gateway used first, kept as a fallback). Both behave the same; a reload switches." },
  upstreamConnections: { kind: 'count', default: 32, doc: "Most connections open to the upstream at once. Keep it below the app server's own limits: Thin keeps at most 100 persistent connections, and Puma waits on each idle keep-alive connection before serving others, so fewer connections drain held requests faster. With the native client, new connections to an app that keeps them alive open one at a time, each once the app answered on the one before (or after 250 ms): a busy Puma leaves new connections unaccepted (docs/proxy.md)." },
  shutdownTimeout: { kind: 'duration', default: '30s', doc: 'On QUIT/TERM, how long in-flight requests may take to finish before connections are cut.' },
  control: { kind: 'path', default: '/tmp/web_server_gateway.ctl', nullable: true, doc: 'Control socket (mode 0600) for `gateway pause`, `resume`, `status`; null turns it off.' },
  holdTimeout: { kind: 'duration', default: '30s', doc: 'While the app server cannot accept, a request waits this long (from its arrival) for it to come back, then gets 503. 0 turns holding off (502 at once, as nginx).' },
  holdMaxRequests: { kind: 'count', default: 10000, doc: 'Most requests held at once; more get 503 at once.' },
  holdMaxBytes: { kind: 'size', default: '64m', doc: 'Most request data (heads and what was already read of bodies) held at once; more gets 503 at once.' },
  holdRetryAfter: { kind: 'duration', default: '5s', doc: 'Retry-After sent with a 503 from the gate, rounded up to whole seconds.' },
  gatewayPidFile: { kind: 'path', default: null, nullable: true, doc: "The gateway's own PID file (nginx's `pid`), written at start and removed at exit; on USR2 it moves to `.oldbin` while the new gateway takes over, and back if the upgrade fails. null: none." },
  holdPage: { kind: 'path', default: null, nullable: true, doc: 'HTML file sent with a 503 from the gate (like public/503.html); null: a built-in page.' },
  replayMethods: { kind: 'methods', default: ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'], repeatable: true, doc: 'Methods replayed once if the app server dies after the request was sent (RFC 9110 idempotent methods). POST is never replayed unless listed.' },
  replayBufferSize: { kind: 'size', default: '64k', doc: 'A request body up to this size is kept while sent so the request can be replayed; a larger body makes it not replayable.' },
  appCommand: { kind: 'string', default: null, nullable: true, doc: 'Command that starts the app server in the foreground, as a Procfile line (e.g. "bundle exec puma -b unix:///tmp/web_server.sock --pidfile /tmp/web_server.pid"). Without it the gateway adopts the server named by the PID file.' },
  appCwd: { kind: 'path', default: null, nullable: true, doc: 'Working directory of the app server; a symlink (.../current) is kept as given, with PWD set, so a re-exec starts the new release.' },
  appEnv: { kind: 'env', default: [], repeatable: true, doc: 'Environment of the app server, K=V; repeat the flag for more.' },
  appUser: { kind: 'string', default: null, nullable: true, doc: 'Run the app server as this user (and its group).' },
  pidFile: { kind: 'path', default: '/tmp/web_server.pid', nullable: true, doc: "The app server's PID file. Read safely (no symlinks, owner and mode checked); written for a server that does not write it. null turns the supervisor off." },
  appRestart: { kind: 'enum', values: ['usr2', 'cold'], default: 'usr2', doc: 'How `restart` works: usr2 (Puma re-execs, Unicorn starts a new master; falls back to cold on failure) or cold (stop, then start: Thin).' },
  appRestartTimeout: { kind: 'duration', default: '60s', doc: 'How long a USR2 handoff may take before the supervisor falls back to a cold restart.' },
  appStartTimeout: { kind: 'duration', default: '60s', doc: 'How long a start may take until the socket answers.' },
  appStopSignals: { kind: 'ladder', default: 'QUIT/30s,TERM/11s,KILL/5s', doc: "Stop ladder: signal and how long to wait for the exit, in order (bluepill's for web servers on these hosts)." },
  drainTimeout: { kind: 'duration', default: '30s', doc: 'Before a restart or stop, how long in-flight requests may take to finish (new ones are held meanwhile).' },
  readyPath: { kind: 'string', default: '/', doc: 'Path requested through the socket to tell that a (new) app server answers; any HTTP status counts.' },
  checkMemory: { kind: 'check', values: ['memory'], default: null, nullable: true, doc: 'Restart when the RSS of the server and its workers is too high, bluepill style: "below=300m every=20s times=3/5".' },
  checkCpu: { kind: 'check', values: ['cpu'], default: null, nullable: true, doc: 'Restart on CPU use (percent of one core): "below=90 every=10s times=5".' },
  checkHttp: { kind: 'check', values: ['http'], default: null, nullable: true, doc: 'Restart when an HTTP check through the socket fails: "path=/up status=200 timeout=5s every=10s times=2/3".' },
  checkFlapping: { kind: 'check', values: ['flapping'], default: 'times=5 within=1m retry_in=5m', nullable: true, doc: 'A server that dies this often is not started again until retry_in (or never).' },
  checkMaxAge: { kind: 'check', values: ['maxAge'], default: null, nullable: true, doc: 'Restart the server after this age, e.g. "24h".' },
  upstreamOwner: { kind: 'string', default: null, nullable: true, doc: 'User (name or uid) that must own the upstream socket and the PID file. Default: the gateway\'s own user, root, and appUser.' },
} as const satisfies Record<string, KeySpec>;

import type { Checks } from '../supervisor/checks.js';

export type ConfigKey = keyof typeof SCHEMA;
export const CONFIG_KEYS = Object.keys(SCHEMA) as ConfigKey[];

/** The validated configuration, with units resolved: durations in ms, sizes in bytes. */
export interface GatewayConfig {
  listen: { host: string; port: number; proxyProtocol: boolean }[];
  /** Worker processes; 0: the primary proxies itself. */
  workers: number;
  upstream: string;
  admin: { host: string; port: number } | null;
  accessLog: string;
  accessLogFormat: 'combined' | 'json';
  logLevel: string;
  user: string | null;
  trustedProxies: string[];
  realIpHeader: string;
  realIpRecursive: boolean;
  forwardedForUntrusted: 'replace' | 'append';
  clientMaxBodySize: number;
  maxHeaderSize: number;
  maxHeaderCount: number;
  underscoresInHeaders: boolean;
  maxConnections: number;
  maxConnectionsPerClient: number | null;
  connectionLimitExempt: string[];
  clientHeaderTimeout: number;
  clientBodyTimeout: number;
  sendTimeout: number;
  keepaliveTimeout: number;
  proxyConnectTimeout: number;
  proxyReadTimeout: number;
  proxySendTimeout: number;
  upstreamKeepaliveTimeout: number;
  clientFastPath: boolean;
  upstreamClient: 'native' | 'undici';
  upstreamConnections: number;
  shutdownTimeout: number;
  control: string | null;
  holdTimeout: number;
  holdMaxRequests: number;
  holdMaxBytes: number;
  holdRetryAfter: number;
  gatewayPidFile: string | null;
  holdPage: string | null;
  replayMethods: string[];
  replayBufferSize: number;
  appCommand: string | null;
  appCwd: string | null;
  appEnv: Record<string, string>;
  appUser: string | null;
  pidFile: string | null;
  appRestart: 'usr2' | 'cold';
  appRestartTimeout: number;
  appStartTimeout: number;
  appStopSignals: { signal: NodeJS.Signals; waitMs: number }[];
  drainTimeout: number;
  readyPath: string;
  checkMemory: Checks['memory'] | null;
  checkCpu: Checks['cpu'] | null;
  checkHttp: Checks['http'] | null;
  checkFlapping: Checks['flapping'] | null;
  checkMaxAge: Checks['maxAge'] | null;
  upstreamOwner: string | null;
}

export function flagOf(key: string): string {
  return '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

export function keyOfFlag(flag: string): string {
  return flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
