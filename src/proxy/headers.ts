/**
 * Header decisions, free of I/O: what a front door refuses (checkRequest), what goes upstream
 * (upstreamHeaders) and what comes back (downstreamHeaders). Hop-by-hop fields are dropped both
 * ways, with every field the Connection header names (RFC 9110 7.6.1), before our own are added.
 */
import type { IncomingMessage } from 'node:http';
import { BlockList, isIP, isIPv4, isIPv6 } from 'node:net';
import type { GatewayConfig } from '../config/schema.js';
import { GatewayError } from './errors.js';
import { proxyHeaderOf } from './proxy-protocol.js';

/** RFC 9110 7.6.1 and the legacy ones nginx also drops. `expect` is answered by us (100-continue). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer', 'expect']);
/** The lengths of the HOP_BY_HOP names: a name of another length is not one. */
const HOP_LENGTHS = new Set([...HOP_BY_HOP].map((n) => n.length));
/** Fields we set from the connection; a client's own values are dropped or rewritten. */
const FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip', 'forwarded']);

export interface RequestLimits {
  maxHeaderCount: number;
  underscoresInHeaders: boolean;
}

/**
 * What Node's parser lets through but a front door must refuse. Returns the error, or undefined.
 * Called once per request; walks rawHeaders once.
 */
export function checkRequest(req: IncomingMessage, limits: RequestLimits): GatewayError | undefined {
  if (req.httpVersionMajor !== 1) {
    // HTTP/0.9 (no version) has no headers and no Host: nothing to route on. HTTP/2.0 in an
    // HTTP/1 request line is a client that does not speak our protocol (nginx: 505).
    return req.httpVersionMajor >= 2
      ? new GatewayError('GW_ERR_VERSION', `HTTP/${req.httpVersion}`)
      : new GatewayError('GW_ERR_BAD_REQUEST', 'request line without HTTP version');
  }
  const raw = req.rawHeaders;
  if (raw.length / 2 > limits.maxHeaderCount) return new GatewayError('GW_ERR_HEADERS_TOO_LARGE', `more than ${limits.maxHeaderCount} header fields`);
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') hosts++;
    else if (!limits.underscoresInHeaders && name.includes('_')) {
      // Rack turns both X_Foo and X-Foo into HTTP_X_FOO: an underscore lets a client shadow a header we set.
      return new GatewayError('GW_ERR_BAD_REQUEST', 'underscore in header name');
    }
  }
  if (hosts > 1) return new GatewayError('GW_ERR_BAD_REQUEST', 'duplicate Host');
  // Asterisk-form (`OPTIONS *`, RFC 9112 3.2.4) cannot be sent on by undici (a 500 before); nginx
  // refuses it with 400 too. Found by the adversarial suite.
  if (req.url === '*') return new GatewayError('GW_ERR_BAD_REQUEST', 'asterisk-form request target');
  if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) {
    // RFC 9112 6.1: chunked is not defined for HTTP/1.0; a message with it is a smuggling vector.
    return new GatewayError('GW_ERR_BAD_REQUEST', 'Transfer-Encoding on HTTP/1.0');
  }
  const te = req.headers['transfer-encoding'];
  if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
    // Node's parser refuses a coding list whose last is not chunked (RFC 9112 6.3: 400) but passes
    // `gzip, chunked`: the gateway only removes the chunking, so the app would get gzip bytes with
    // nothing saying so. RFC 9112 6.1 and nginx: 501 for a coding we do not understand.
    return new GatewayError('GW_ERR_NOT_IMPLEMENTED', `Transfer-Encoding: ${te}`);
  }
  return undefined;
}

const NONE: string[] = [];

/** The names a Connection header lists, lowercased; empty when there is none (do not modify it). */
export function connectionTokens(value: string | string[] | undefined): string[] {
  if (value === undefined) return NONE;
  // The usual values name no field: answered without splitting (an app's every response says one).
  if (typeof value === 'string' && value.length <= 10) {
    const v = value.toLowerCase();
    if (v === 'keep-alive' || v === 'close') return NONE;
  }
  const text = Array.isArray(value) ? value.join(',') : value;
  const out: string[] = [];
  for (const t of text.split(',')) {
    const n = t.trim().toLowerCase();
    if (n !== '' && n !== 'close' && n !== 'keep-alive') out.push(n);
  }
  return out;
}

export class TrustedProxies {
  private readonly list = new BlockList();
  readonly empty: boolean;

  constructor(cidrs: readonly string[]) {
    this.empty = cidrs.length === 0;
    for (const c of cidrs) {
      const [addr, bits] = c.split('/') as [string, string | undefined];
      const type = isIPv4(addr) ? 'ipv4' : 'ipv6';
      if (bits === undefined) this.list.addAddress(addr, type);
      else this.list.addSubnet(addr, Number(bits), type);
    }
  }

  /** Answers by address, remembered: BlockList.check parses the address each time (about 3 us). */
  private readonly seen = new Map<string, boolean>();

  has(addr: string): boolean {
    if (this.empty || addr === '') return false;
    let yes = this.seen.get(addr);
    if (yes !== undefined) return yes;
    try {
      yes = this.list.check(addr, isIPv4(addr) ? 'ipv4' : 'ipv6');
    } catch {
      yes = false;
    }
    // Bounded: a flood of distinct addresses empties it rather than growing it.
    if (this.seen.size >= 10_000) this.seen.clear();
    this.seen.set(addr, yes);
    return yes;
  }
}

/** `::ffff:1.2.3.4` (a v4 client on a dual-stack listener) as `1.2.3.4`. */
export function peerAddress(addr: string | undefined): string {
  if (addr === undefined) return '';
  return addr.startsWith('::ffff:') && isIPv4(addr.slice(7)) ? addr.slice(7) : addr;
}

export interface ForwardContext {
  trusted: TrustedProxies;
  forwardedForUntrusted: 'replace' | 'append';
  /** `http` until listeners terminate TLS. */
  scheme: string;
  /** nginx's real_ip_header, lowercased: a header name, or `proxy_protocol`. */
  realIpHeader: string;
  /** nginx's real_ip_recursive. */
  realIpRecursive: boolean;
}

export function forwardContext(config: Pick<GatewayConfig, 'trustedProxies' | 'forwardedForUntrusted' | 'realIpHeader' | 'realIpRecursive'>): ForwardContext {
  return {
    trusted: new TrustedProxies(config.trustedProxies),
    forwardedForUntrusted: config.forwardedForUntrusted,
    scheme: 'http',
    realIpHeader: config.realIpHeader.toLowerCase(),
    realIpRecursive: config.realIpRecursive,
  };
}

export interface Client {
  /** The client address: nginx's $remote_addr after the realip module. */
  address: string;
  /** How it was found: the TCP peer, a header of a trusted peer, or the PROXY header of a trusted peer. */
  from: 'peer' | 'header' | 'proxy_protocol';
}

/**
 * nginx's realip module: only when the TCP peer is trusted (set_real_ip_from) is the address taken
 * from realIpHeader, or from the connection's PROXY header with `proxy_protocol`. On a PROXY
 * listener without that, the client address stays the TCP peer (the balancer), as nginx's
 * $remote_addr does; the PROXY source is then only nginx's $proxy_protocol_addr.
 */
export function resolveClient(req: IncomingMessage, ctx: ForwardContext): Client {
  const peer = peerAddress(req.socket?.remoteAddress);
  if (!ctx.trusted.has(peer)) return { address: peer, from: 'peer' };
  if (ctx.realIpHeader === 'proxy_protocol') {
    const source = proxyHeaderOf(req.socket)?.source;
    return source ? { address: source.address, from: 'proxy_protocol' } : { address: peer, from: 'peer' };
  }
  const value = realIpValue(req.rawHeaders, ctx.realIpHeader);
  if (value === undefined) return { address: peer, from: 'peer' };
  const address = forwardedAddress(peer, value, ctx.trusted, ctx.realIpRecursive);
  return address === undefined ? { address: peer, from: 'peer' } : { address, from: 'header' };
}

/** The client address before any request is read (bad requests, timeouts): the PROXY source of a trusted peer with `proxy_protocol`. */
export function connectionClient(socket: { remoteAddress?: string | undefined }, ctx: ForwardContext): string {
  const peer = peerAddress(socket.remoteAddress);
  if (ctx.realIpHeader !== 'proxy_protocol' || !ctx.trusted.has(peer)) return peer;
  return proxyHeaderOf(socket)?.source?.address ?? peer;
}

/** X-Forwarded-For: every field, in order, as one list; any other header: its first field (nginx). */
function realIpValue(raw: readonly string[], name: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() !== name) continue;
    const v = raw[i + 1] as string;
    if (name !== 'x-forwarded-for') return v;
    out = out === undefined ? v : `${out}, ${v}`;
  }
  return out;
}

/**
 * nginx's ngx_http_get_forwarded_addr: from the right of `list`, take an address while the one
 * taken last (the peer first) is trusted; without `recursive`, take one only. Stops at an entry
 * that is not an address and keeps the last good one; undefined when none was taken.
 */
export function forwardedAddress(peer: string, list: string, trusted: TrustedProxies, recursive: boolean): string | undefined {
  const parts = list.split(',');
  let current = peer;
  let found: string | undefined;
  for (let i = parts.length - 1; i >= 0; i--) {
    const text = (parts[i] as string).trim();
    if (text === '') continue;
    if (!trusted.has(current)) break;
    const a = addressOf(text);
    if (a === undefined) break;
    current = found = a;
    if (!recursive) break;
  }
  return found;
}

/** An address as a forwarding header gives it: bare, `1.2.3.4:port` or `[v6]:port` (ngx_parse_addr_port). */
function addressOf(text: string): string | undefined {
  if (isIP(text) !== 0) return peerAddress(text.toLowerCase());
  const v6 = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(text);
  if (v6 && isIPv6(v6[1] as string)) return peerAddress((v6[1] as string).toLowerCase());
  const v4 = /^([\d.]+):\d{1,5}$/.exec(text);
  if (v4 && isIPv4(v4[1] as string)) return v4[1];
  return undefined;
}

export interface Upstream {
  /** Flat [name, value, ...] list for undici. */
  headers: string[];
  /** The client address as resolved through trusted proxies (nginx's realip module, recursive). */
  clientIp: string;
}

/**
 * The request headers sent upstream. Host is kept. X-Real-IP is the client address resolveClient
 * finds. X-Forwarded-For is appended to when the peer is a trusted proxy, and by default replaced
 * otherwise (a client cannot forge its address). When the address came from another header or the
 * PROXY header, the request goes on as if that client had connected to us itself: X-Forwarded-For
 * names it (Rails' remote_ip then agrees with X-Real-IP), and with the PROXY protocol the client's
 * own X-Forwarded-Proto/Host are believed only if it is trusted (the balancer added none).
 */
export function upstreamHeaders(req: IncomingMessage, ctx: ForwardContext, known?: Client): Upstream {
  const raw = req.rawHeaders;
  const tcpPeer = peerAddress(req.socket.remoteAddress);
  const client = known ?? resolveClient(req, ctx);
  // The hop X-Forwarded-For ends with: the TCP peer; or the client, when its address came from
  // elsewhere than X-Forwarded-For, as if it had connected to us itself.
  const hop = client.from === 'proxy_protocol' || (client.from === 'header' && ctx.realIpHeader !== 'x-forwarded-for') ? client.address : tcpPeer;
  // Whose X-Forwarded-Proto/Host are believed: the TCP peer's, but behind the PROXY protocol the
  // request's fields are the client's own (a TCP balancer adds none).
  const believed = ctx.trusted.has(client.from === 'proxy_protocol' ? client.address : tcpPeer);
  const drop = connectionTokens(req.headers.connection);
  const out: string[] = [];
  let xff: string | undefined;
  let xfProto: string | undefined;
  let xfHost: string | undefined;
  let forwarded: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) continue;
    if (FORWARDED.has(lower)) {
      const v = raw[i + 1] as string;
      if (lower === 'x-forwarded-for') xff = xff === undefined ? v : `${xff}, ${v}`;
      else if (lower === 'x-forwarded-proto') xfProto ??= v;
      else if (lower === 'x-forwarded-host') xfHost ??= v;
      else if (lower === 'forwarded') forwarded = forwarded === undefined ? v : `${forwarded}, ${v}`;
      continue;
    }
    if (lower === 'host') {
      // Never a connection option (RFC 9112 3.2: HTTP/1.1 requires it; `Connection: Host` made the
      // app see undici's `localhost`), and an absolute-form target's authority replaces it
      // (RFC 9112 3.2.2; server.ts sets it in req.headers). Both found by the adversarial suite.
      out.push(name, req.headers.host ?? (raw[i + 1] as string));
      continue;
    }
    if (drop.length > 0 && drop.includes(lower)) continue;
    out.push(name, raw[i + 1] as string);
  }

  const clientIp = client.address;
  const chain = xff !== undefined && (ctx.trusted.has(hop) || ctx.forwardedForUntrusted === 'append') ? `${xff}, ${hop}` : hop;
  if (believed) {
    // A trusted proxy in front (a load balancer terminating TLS) tells us the scheme and host.
    if (forwarded !== undefined) out.push('Forwarded', forwarded);
  } else {
    xfProto = undefined;
    xfHost = undefined;
  }
  const host = req.headers.host;
  out.push('X-Forwarded-For', chain, 'X-Real-IP', clientIp, 'X-Forwarded-Proto', xfProto ?? ctx.scheme);
  if (xfHost !== undefined || host !== undefined) out.push('X-Forwarded-Host', (xfHost ?? host) as string);
  return { headers: out, clientIp };
}

/** Rightmost address of the chain that is not a trusted proxy; the leftmost if all are. */
export function realIp(chain: string, trusted: TrustedProxies): string {
  const i = chain.lastIndexOf(',');
  const last = chain.slice(i + 1).trim();
  return i === -1 ? last : (forwardedAddress(last, chain.slice(0, i), trusted, true) ?? last);
}

/**
 * The response headers sent to the client, from the upstream client's raw [name, value] list. Framing headers
 * are dropped: Node frames the body itself (Content-Length kept, else chunked for HTTP/1.1).
 */
export function downstreamHeaders(raw: (Buffer | string)[]): string[] {
  let drop = NONE;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as Buffer | string;
    if (name.length === 10 && latin1(name).toLowerCase() === 'connection') {
      drop = connectionTokens(latin1(raw[i + 1] as Buffer | string));
      break;
    }
  }
  const out: string[] = [];
  const dropping = drop.length > 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = latin1(raw[i] as Buffer | string);
    // Only names as long as a hop-by-hop one are lowercased and looked up (Trailer is kept: it
    // announces the trailers we forward after a chunked body).
    if (dropping || HOP_LENGTHS.has(name.length)) {
      const lower = name.toLowerCase();
      if (lower !== 'trailer' && HOP_BY_HOP.has(lower)) continue;
      if (dropping && drop.includes(lower)) continue;
    }
    out.push(name, latin1(raw[i + 1] as Buffer | string));
  }
  return out;
}

/** The native client hands strings (Node's parser reads bytes as latin1); undici hands Buffers. */
const latin1 = (v: Buffer | string): string => (typeof v === 'string' ? v : v.toString('latin1'));
