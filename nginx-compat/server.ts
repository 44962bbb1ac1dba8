/**
 * The parts of a server block that become listeners and the upstream: which server is translated,
 * its `listen` lines, and the Unix socket that its proxy_pass lines name (directly as
 * `http://unix:/path:` or through an `upstream` block with `server unix:/path`).
 */
import { formatHostPort, parseHostPort } from '../src/config/address.js';
import type { Directive } from './parser.js';
import { named, type Level, type Report } from './report.js';

export interface ListenSpec {
  /** HOST:PORT; the config's `listen` value adds ` proxy_protocol` when proxyProtocol is set. */
  address: string;
  defaultServer: boolean;
  /** The listener expects the PROXY protocol header (from a load balancer). */
  proxyProtocol: boolean;
  file: string;
  line: number;
}

const isDefault = (s: Directive): boolean => named(s.block ?? [], 'listen').some((l) => l.args.includes('default_server') || l.args.includes('default'));

/** nginx picks the `default_server` for requests no server_name claims, else the first server. */
export function chooseServer(servers: readonly Directive[]): Directive | undefined {
  return servers.find(isDefault) ?? servers[0];
}

function listenAddress(text: string): string | undefined {
  let candidate = text;
  if (/^\d+$/.test(text)) candidate = `0.0.0.0:${text}`;
  else if (/^\*(:\d+)?$/.test(text)) candidate = `0.0.0.0:${text.slice(2) || '80'}`;
  else if (/^\[[^\]]+\]$/.test(text) || !text.includes(':')) candidate = `${text}:80`;
  const hp = parseHostPort(candidate);
  return hp === undefined ? undefined : formatHostPort(hp);
}

export function listeners(report: Report, server: Level): ListenSpec[] {
  const out: ListenSpec[] = [];
  for (const d of named(server, 'listen')) {
    report.use(d);
    const [addr = '', ...params] = d.args;
    if (addr.startsWith('unix:')) {
      report.error('GW_ERR_NGINX_UNSUPPORTED', `"listen ${addr}": the gateway listens on TCP addresses only`, d);
      continue;
    }
    const address = listenAddress(addr);
    if (address === undefined) {
      report.error('GW_ERR_NGINX_VALUE', `invalid port in "${addr}" of the "listen" directive`, d);
      continue;
    }
    const spec: ListenSpec = { address, defaultServer: false, proxyProtocol: false, file: d.file, line: d.line };
    let tls = false;
    for (const p of params) {
      if (p === 'default_server' || p === 'default') spec.defaultServer = true;
      else if (p === 'proxy_protocol') spec.proxyProtocol = true;
      else if (p === 'ssl') tls = true;
      else if (p === 'http2' || p === 'quic' || p === 'http3') report.warn('GW_WARN_NGINX_IGNORED', `"listen" parameter "${p}" is ignored: the gateway speaks HTTP/1.1 only`, d);
      else report.warn('GW_WARN_NGINX_IGNORED', `"listen" parameter "${p}" is ignored: no gateway equivalent`, d);
    }
    if (tls) {
      report.warn('GW_WARN_NGINX_DIFFERS', `"listen ${addr} ssl" is left out: the gateway does not terminate TLS; terminate it in front of the gateway`, d);
      continue;
    }
    if (!out.some((l) => l.address === address)) out.push(spec);
  }
  return out;
}

interface Target {
  socket: string;
  at: Directive;
}

/**
 * The socket every proxy_pass of the translated server names. Each `proxies` entry is a proxy_pass
 * directive and the prefix of its location (a URI part equal to that prefix changes nothing).
 */
export function upstreamSocket(report: Report, http: Level, proxies: readonly { d: Directive; prefix: string }[]): string | undefined {
  const blocks = new Map(named(http, 'upstream').map((u) => [u.args[0] ?? '', u]));
  const cache = new Map<Directive, string | undefined>();
  const targets: Target[] = [];
  for (const { d, prefix } of proxies) {
    const target = d.args[0] ?? '';
    if (target.includes('$')) {
      report.error('GW_ERR_NGINX_UNSUPPORTED', `proxy_pass with variables ("${target}") is not supported: the gateway proxies to one fixed socket`, d);
      continue;
    }
    if (target.startsWith('https://')) {
      report.error('GW_ERR_NGINX_UNSUPPORTED', `proxy_pass to "${target}" is not supported: the gateway speaks plain HTTP to the app's Unix socket`, d);
      continue;
    }
    let socket: string | undefined;
    let uri = '';
    const unix = /^http:\/\/unix:([^:]+)(?::(.*))?$/.exec(target);
    const url = /^(https?):\/\/([^/:]+)(:\d+)?(\/.*)?$/.exec(target);
    if (unix) {
      socket = unix[1];
      uri = unix[2] ?? '';
    } else if (!url) {
      report.error('GW_ERR_NGINX_VALUE', `invalid URL prefix in "${target}"`, d);
      continue;
    } else {
      const block = url[1] === 'http' && url[3] === undefined ? blocks.get(url[2] ?? '') : undefined;
      if (block === undefined) {
        report.error('GW_ERR_NGINX_UNSUPPORTED', `proxy_pass to "${target}" is not supported: the gateway proxies only to a Unix socket (http://unix:/path: or an upstream with "server unix:/path")`, d);
        continue;
      }
      if (!cache.has(block)) cache.set(block, socketOf(report, block));
      socket = cache.get(block);
      uri = url[4] ?? '';
    }
    if (socket === undefined) continue;
    if (uri !== '' && uri !== prefix) {
      report.warn('GW_WARN_NGINX_DIFFERS', `"proxy_pass" differs: its URI part "${uri}" is ignored; requests reach the app with their own URI (nginx replaces the location's prefix with it)`, d);
    }
    const first = targets[0];
    if (first !== undefined && first.socket !== socket) {
      report.error('GW_ERR_NGINX_UNSUPPORTED', `proxy_pass to a second app server ("${socket}"; "${first.socket}" at ${first.at.file}:${first.at.line}): the gateway has one upstream`, d);
      continue;
    }
    targets.push({ socket, at: d });
  }
  return targets[0]?.socket;
}

function socketOf(report: Report, block: Directive): string | undefined {
  report.use(block);
  const name = block.args[0] ?? '';
  const servers = named(block.block ?? [], 'server');
  for (const s of servers) report.use(s);
  const [first, ...others] = servers;
  if (first === undefined) {
    report.error('GW_ERR_NGINX_VALUE', 'no servers are inside upstream', block);
    return undefined;
  }
  const [addr = '', ...params] = first.args;
  if (!addr.startsWith('unix:')) {
    report.error('GW_ERR_NGINX_UNSUPPORTED', `upstream "${name}" server "${addr}" is not supported: the gateway proxies only to a Unix socket`, first);
    return undefined;
  }
  for (const p of params) {
    // With one server, nginx itself ignores max_fails and fail_timeout; a weight means nothing.
    if (/^(max_fails|fail_timeout|weight)=/.test(p) && others.length === 0) continue;
    report.warn('GW_WARN_NGINX_IGNORED', `"server" parameter "${p}" in upstream "${name}" is ignored: the gateway has one app server`, first);
  }
  for (const o of others) report.warn('GW_WARN_NGINX_DIFFERS', `"server ${o.args[0] ?? ''}" in upstream "${name}" is not used: the gateway proxies to one socket, the first server's`, o);
  return addr.slice('unix:'.length);
}
