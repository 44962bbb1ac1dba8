/**
 * An analysed nginx tree into the gateway's raw config (the keys of src/config/schema.ts, as a JSON
 * config file would give them, for validateConfig) and per-location specs for the proxy.
 *
 * - One server is translated: the `default_server`, else the first; others are warned about.
 * - Values follow nginx's inheritance (server overrides http); where nginx's default differs from
 *   the gateway's, nginx's is written out so that the gateway behaves as nginx did:
 *   clientMaxBodySize `1m` and keepaliveTimeout `75s` when the file does not set them.
 * - A tree with analyzer errors is not translated (nginx would not start with it either).
 */
import { analyze, type AnalyzeOptions } from './analyzer.js';
import { NginxConfigError, type Warning } from './errors.js';
import { buildLocation, type LocationSpec } from './location.js';
import type { Directive } from './parser.js';
import { named, Report, single, innermost, type Level } from './report.js';
import { chooseServer, listeners, upstreamSocket, type ListenSpec } from './server.js';
import { sweep } from './sweep.js';
import { durationString, parseNginxSize, parseNginxTime, sizeString } from './units.js';
import { compileRegex, parseLocationArgs } from './values.js';

export type TranslateOptions = AnalyzeOptions;

export interface TranslateResult {
  /** Raw gateway config keys; feed to validateConfig. Empty when there are errors. */
  config: Record<string, unknown>;
  listeners: ListenSpec[];
  /** The server's own settings: used when no location matches; its rewrite/return run first. */
  server: LocationSpec | null;
  /** The server's locations in file order, named ones included; see matchLocation. */
  locations: LocationSpec[];
  warnings: Warning[];
  errors: NginxConfigError[];
}

const TIMES = [
  ['keepalive_timeout', 'keepaliveTimeout'],
  ['client_header_timeout', 'clientHeaderTimeout'],
  ['client_body_timeout', 'clientBodyTimeout'],
  ['send_timeout', 'sendTimeout'],
] as const;
const PROXY_TIMES = [
  ['proxy_connect_timeout', 'proxyConnectTimeout'],
  ['proxy_read_timeout', 'proxyReadTimeout'],
  ['proxy_send_timeout', 'proxySendTimeout'],
] as const;
/** nginx's default for proxy_connect_timeout, proxy_read_timeout and proxy_send_timeout. */
const NGINX_PROXY_TIMEOUT_MS = 60_000;
/** Allowed in a location by nginx, but one value for all in the gateway. */
const SERVER_WIDE = ['keepalive_timeout', 'client_body_timeout', 'send_timeout', 'set_real_ip_from', 'real_ip_header', 'real_ip_recursive'];
const LOG_LEVELS: Record<string, string> = { debug: 'debug', info: 'info', notice: 'info', warn: 'warn', error: 'error', crit: 'fatal', alert: 'fatal', emerg: 'fatal' };

export function translate(tree: Directive[], options: TranslateOptions = {}): TranslateResult {
  const analysis = analyze(tree, options);
  if (analysis.errors.length > 0) return { config: {}, listeners: [], server: null, locations: [], ...analysis };
  const report = new Report();
  report.warnings.push(...analysis.warnings);
  const config: Record<string, unknown> = {};
  const done = (server: LocationSpec | null, locations: LocationSpec[], listen: ListenSpec[]): TranslateResult =>
    report.errors.length > 0
      ? { config: {}, listeners: [], server: null, locations: [], warnings: inReadingOrder(tree, report.warnings), errors: report.errors }
      : { config, listeners: listen, server, locations, warnings: inReadingOrder(tree, report.warnings), errors: [] };

  mainLevel(report, tree, config);
  const [httpBlock, ...extraHttp] = named(tree, 'http');
  for (const d of extraHttp) report.error('GW_ERR_NGINX_VALUE', '"http" directive is duplicate', d);
  const servers = named(httpBlock?.block ?? [], 'server');
  const chosen = chooseServer(servers);
  if (httpBlock === undefined || chosen === undefined) {
    report.errors.push(new NginxConfigError('GW_ERR_NGINX_UNSUPPORTED', 'no "server" block in "http": nothing to translate', tree[0]?.file, tree[0]?.line));
    return done(null, [], []);
  }
  report.use(httpBlock);
  report.use(chosen);
  const http = httpBlock.block ?? [];
  const own = chosen.block ?? [];
  for (const s of servers) {
    if (s !== chosen) report.warn('GW_WARN_NGINX_IGNORED', `"server" block is not translated: the gateway serves one server, the one at ${chosen.file}:${chosen.line}`, s);
  }
  const levels = [http, own];

  const listen = listeners(report, own);
  if (listen.length > 0) config.listen = listen.map((l) => (l.proxyProtocol ? `${l.address} proxy_protocol` : l.address));
  else if (named(own, 'listen').length > 0 && report.errors.length === 0) report.error('GW_ERR_NGINX_UNSUPPORTED', 'no listener the gateway can serve (TLS listeners are left out)', chosen);
  if (servers.length === 1) for (const d of named(own, 'server_name')) report.use(d);

  const server = buildLocation(report, levels, { match: 'server', pattern: '', file: chosen.file, line: chosen.line });
  const located = serverLocations(report, levels);
  const locations = located.map((l) => l.spec);
  config.clientMaxBodySize = server.clientMaxBodySize;
  serverWide(report, levels, config);
  proxyTimes(report, levels, config);
  accessLog(report, levels, config);

  const proxies = located.flatMap(({ spec, block }) =>
    named(block, 'proxy_pass').slice(0, 1).map((d) => ({ d, prefix: spec.match === 'prefix' || spec.match === 'noregex' ? spec.pattern : '' })),
  );
  const socket = upstreamSocket(report, http, proxies);
  if (socket !== undefined) config.upstream = socket;
  else if (proxies.length === 0) report.warn('GW_WARN_NGINX_DIFFERS', '"server" has no proxy_pass: requests not answered otherwise go to the gateway\'s upstream (default /tmp/web_server.sock)', chosen);

  const [used, unused] = [named(http, 'upstream').filter((u) => report.isUsed(u)), named(http, 'upstream').filter((u) => !report.isUsed(u))];
  for (const u of unused) report.warn('GW_WARN_NGINX_IGNORED', `"upstream" "${u.args[0] ?? ''}" is not used by the translated server`, u);
  sweep(report, [tree, ...named(tree, 'events').map((e) => e.block ?? []), http, own, ...named(own, 'location').map((l) => l.block ?? [])]);
  sweep(report, used.map((u) => u.block ?? []));
  return done(server, locations, listen);
}

/** Warnings in the order nginx reads the directives they are about, includes where they are included. */
function inReadingOrder(tree: Level, warnings: Warning[]): Warning[] {
  const order = new Map<string, number>();
  const walk = (level: Level): void => {
    for (const d of level) {
      const key = `${d.file}:${d.line}`;
      if (!order.has(key)) order.set(key, order.size);
      if (d.block) walk(d.block);
    }
  };
  walk(tree);
  const at = (w: Warning): number => order.get(`${w.file}:${w.line}`) ?? order.size;
  return [...warnings].sort((a, b) => at(a) - at(b));
}

function mainLevel(report: Report, tree: Level, config: Record<string, unknown>): void {
  const user = single(report, [tree], 'user');
  if (user) {
    config.user = user.args[0];
    if (user.args[1] !== undefined) report.warn('GW_WARN_NGINX_DIFFERS', `"user" group "${user.args[1]}" is ignored: the gateway takes the user's own group`, user);
  }
  // worker_processes: the gateway's worker processes, `auto` one per core as nginx's.
  const wp = single(report, [tree], 'worker_processes');
  if (wp) {
    const v = wp.args[0] ?? '';
    if (v === 'auto') config.workers = 'auto';
    else if (/^\d+$/.test(v) && Number(v) >= 1) config.workers = Number(v);
    else report.warn('GW_WARN_NGINX_DIFFERS', `"worker_processes ${v}" is not a number or auto; the gateway's default (auto) applies`, wp);
  }
  // nginx's own PID file: logrotate's `kill -USR1 $(cat /run/nginx.pid)` reaches the gateway.
  const pid = single(report, [tree], 'pid');
  if (pid && pid.args[0] !== undefined && pid.args[0] !== 'off') {
    if (pid.args[0].startsWith('/')) config.gatewayPidFile = pid.args[0];
    else report.warn('GW_WARN_NGINX_DIFFERS', `"pid ${pid.args[0]}" differs: a relative path is nginx's -p prefix's; the gateway writes no PID file unless gatewayPidFile names an absolute path`, pid);
  }
  for (const e of named(tree, 'events')) report.use(e);
  const log = single(report, [tree], 'error_log');
  if (log) {
    const level = log.args[1] === undefined ? undefined : LOG_LEVELS[log.args[1]];
    if (level !== undefined) config.logLevel = level;
    report.warn('GW_WARN_NGINX_DIFFERS', `"error_log" differs: the gateway logs structured lines to stdout, not to "${log.args[0] ?? ''}"${level ? `; its level ${log.args[1]} is kept` : ''}`, log);
  }
}

function serverLocations(report: Report, levels: readonly Level[]): { spec: LocationSpec; block: Level }[] {
  const out: { spec: LocationSpec; block: Level }[] = [];
  const seen = new Set<string>();
  for (const d of named(levels[levels.length - 1] ?? [], 'location')) {
    report.use(d);
    const parsed = parseLocationArgs(d.args);
    if ('reason' in parsed) {
      report.error('GW_ERR_NGINX_VALUE', parsed.reason, d);
      continue;
    }
    const { match, pattern } = parsed.value;
    if (match === 'regex' || match === 'iregex') {
      const re = compileRegex(pattern, match === 'iregex');
      if ('reason' in re) report.error('GW_ERR_NGINX_VALUE', re.reason, d);
    } else {
      // nginx: a prefix and a ^~ of one URI are the same location; = is apart.
      const key = `${match === 'noregex' ? 'prefix' : match}:${pattern}`;
      if (seen.has(key)) report.error('GW_ERR_NGINX_VALUE', `duplicate location "${pattern}"`, d);
      seen.add(key);
    }
    const block = d.block ?? [];
    for (const nested of named(block, 'location')) {
      report.warn('GW_WARN_NGINX_IGNORED', `nested "location" is not translated: requests it would take are served by the location at ${d.file}:${d.line}`, nested);
    }
    for (const name of SERVER_WIDE) {
      for (const x of named(block, name)) {
        const outer = innermost(report, levels, name).map((o) => o.args.join(' ')).join('; ');
        report.use(x);
        if (x.args.join(' ') !== outer) report.warn('GW_WARN_NGINX_DIFFERS', `"${name}" in a location differs: the gateway applies one value to every location, the server's${outer ? ` (${outer})` : ''}`, x);
      }
    }
    for (const x of named(block, 'access_log')) {
      if (x.args[0] !== 'off') report.warn('GW_WARN_NGINX_DIFFERS', '"access_log" in a location differs: the gateway writes one access log; these requests go to the server\'s', x);
    }
    out.push({ spec: buildLocation(report, [...levels, block], { match, pattern, file: d.file, line: d.line }), block });
  }
  return out;
}

function time(report: Report, d: Directive): string | undefined {
  const text = d.args[0] ?? '';
  const ms = parseNginxTime(text);
  if (ms === undefined) report.invalid(d);
  return ms === undefined ? undefined : durationString(text, ms);
}

function serverWide(report: Report, levels: readonly Level[], config: Record<string, unknown>): void {
  for (const [name, key] of TIMES) {
    const d = single(report, levels, name);
    if (d === undefined) continue;
    const value = time(report, d);
    if (name === 'keepalive_timeout' && d.args[1] !== undefined) report.warn('GW_WARN_NGINX_IGNORED', `"keepalive_timeout" header timeout "${d.args[1]}" is ignored: no Keep-Alive response header is sent`, d);
    if (name === 'keepalive_timeout' && value !== undefined && parseNginxTime(d.args[0] ?? '') === 0) {
      report.warn('GW_WARN_NGINX_DIFFERS', '"keepalive_timeout 0" differs: the gateway cannot turn client keep-alive off; it keeps idle connections for its default', d);
      continue;
    }
    if (value !== undefined) config[key] = value;
  }
  if (single(report, levels, 'keepalive_timeout') === undefined) config.keepaliveTimeout = '75s';

  const buffers = single(report, levels, 'large_client_header_buffers');
  if (buffers) {
    const [n = '', size = ''] = buffers.args;
    const bytes = parseNginxSize(size);
    if (!/^\d+$/.test(n) || bytes === undefined) report.invalid(buffers);
    else {
      config.maxHeaderSize = sizeString(Number(n) * bytes);
      report.warn('GW_WARN_NGINX_DIFFERS', `"large_client_header_buffers" differs: the gateway bounds the whole request head to ${n} x ${size} = ${config.maxHeaderSize as string} and answers 431; nginx bounds each line to ${size} and answers 414 (request line) or 400 (header)`, buffers);
    }
  }
  const underscores = single(report, levels, 'underscores_in_headers');
  if (underscores) config.underscoresInHeaders = (underscores.args[0] ?? '').toLowerCase() === 'on';

  const from = innermost(report, levels, 'set_real_ip_from');
  const trusted = from.filter((d) => {
    if (d.args[0] !== 'unix:') return true;
    report.warn('GW_WARN_NGINX_IGNORED', '"set_real_ip_from unix:" is ignored: the gateway listens on TCP only', d);
    return false;
  });
  if (trusted.length > 0) config.trustedProxies = trusted.map((d) => d.args[0]);
  const header = single(report, levels, 'real_ip_header');
  const recursive = single(report, levels, 'real_ip_recursive');
  // Without set_real_ip_from nginx's realip changes no address: the two below mean nothing then.
  if (trusted.length === 0) return;
  // nginx's defaults (X-Real-IP, off) are not the gateway's (X-Forwarded-For, on): written out.
  const h = header?.args[0] ?? 'X-Real-IP';
  const proxied = ((config.listen as string[] | undefined) ?? []).some((l) => l.endsWith(' proxy_protocol'));
  if (h.toLowerCase() === 'proxy_protocol' && !proxied) {
    report.warn('GW_WARN_NGINX_DIFFERS', '"real_ip_header proxy_protocol" differs: no "listen" of this server has proxy_protocol, so nginx changes no address; the gateway reads X-Forwarded-For of the trusted peers instead', header as Directive);
  } else {
    config.realIpHeader = h;
  }
  config.realIpRecursive = (recursive?.args[0] ?? 'off').toLowerCase() === 'on';
}

/**
 * proxy_*_timeout apply where proxy_pass is: take them from the proxying locations. A proxying
 * location that sets none (at no level) runs with nginx's default, 60s: when another location's
 * value is taken, that location differs too (a WebSocket location's 1h would otherwise apply to
 * every app request in silence).
 */
function proxyTimes(report: Report, levels: readonly Level[], config: Record<string, unknown>): void {
  const own = levels[levels.length - 1] ?? [];
  const proxying = named(own, 'location').filter((d) => named(d.block ?? [], 'proxy_pass').length > 0);
  const scopes: Level[][] = proxying.length > 0 ? proxying.map((d) => [...levels, d.block ?? []]) : [[...levels]];
  for (const [name, key] of PROXY_TIMES) {
    let chosen: { value: string; ms: number; at: Directive } | undefined;
    const unset: Directive[] = [];
    for (const [i, scope] of scopes.entries()) {
      const d = single(report, scope, name);
      const value = d && time(report, d);
      const location = proxying[i];
      if (d === undefined && location !== undefined) unset.push(location);
      if (d === undefined || value === undefined) continue;
      const ms = parseNginxTime(d.args[0] ?? '') ?? 0;
      if (chosen === undefined) chosen = { value, ms, at: d };
      else if (chosen.ms !== ms) report.warn('GW_WARN_NGINX_DIFFERS', `"${name}" differs between locations: the gateway applies one value, ${chosen.value} (${chosen.at.file}:${chosen.at.line})`, d);
    }
    if (chosen === undefined) continue;
    config[key] = chosen.value;
    const { value, ms, at } = chosen;
    if (ms !== NGINX_PROXY_TIMEOUT_MS) {
      for (const l of unset) report.warn('GW_WARN_NGINX_DIFFERS', `"${name}" differs between locations: the gateway applies one value, ${value} (${at.file}:${at.line}); nginx's default 60s applies in this location`, l);
    }
  }
}

function accessLog(report: Report, levels: readonly Level[], config: Record<string, unknown>): void {
  const logs = innermost(report, levels, 'access_log');
  const on = logs.filter((d) => d.args[0] !== 'off');
  const [first, ...more] = on;
  if (logs.length > 0 && first === undefined) config.accessLog = 'off';
  if (first === undefined) return;
  const [path = '', format = 'combined', ...params] = first.args;
  if (path.startsWith('syslog:')) report.warn('GW_WARN_NGINX_DIFFERS', '"access_log syslog:" differs: the gateway writes its access log to a file or stdout', first);
  else config.accessLog = path === '/dev/stdout' ? '-' : path;
  if (!path.startsWith('/') && !path.startsWith('syslog:')) report.warn('GW_WARN_NGINX_DIFFERS', `"access_log ${path}" differs: nginx opens a relative path under its prefix; the gateway under its working directory`, first);
  if (format === 'combined') config.accessLogFormat = 'combined';
  else {
    report.warn('GW_WARN_NGINX_DIFFERS', `"access_log" format "${format}" differs: the gateway writes nginx's combined format (or JSON, accessLogFormat)`, first);
    for (const f of named(levels[0] ?? [], 'log_format')) if (f.args[0] === format) report.use(f);
  }
  for (const p of params) report.warn('GW_WARN_NGINX_IGNORED', `"access_log" parameter "${p}" is ignored: the gateway writes each line as the request ends`, first);
  for (const m of more) report.warn('GW_WARN_NGINX_DIFFERS', `"access_log" differs: the gateway writes one access log, ${config.accessLog as string}`, m);
}
