/**
 * Header decisions, free of I/O: what a front door refuses (checkRequest), what goes upstream
 * (upstreamHeaders) and what comes back (downstreamHeaders). Hop-by-hop fields are dropped both
 * ways, with every field the Connection header names (RFC 9110 7.6.1), before our own are added.
 */
import type { IncomingMessage } from 'node:http';
import { BlockList, isIPv4 } from 'node:net';
import { GatewayError } from './errors.js';

/** RFC 9110 7.6.1 and the legacy ones nginx also drops. `expect` is answered by us (100-continue). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer', 'expect']);
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
  if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) {
    // RFC 9112 6.1: chunked is not defined for HTTP/1.0; a message with it is a smuggling vector.
    return new GatewayError('GW_ERR_BAD_REQUEST', 'Transfer-Encoding on HTTP/1.0');
  }
  return undefined;
}

/** The names a Connection header lists, lowercased; empty when there is none. */
export function connectionTokens(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
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

  has(addr: string): boolean {
    if (this.empty || addr === '') return false;
    try {
      return this.list.check(addr, isIPv4(addr) ? 'ipv4' : 'ipv6');
    } catch {
      return false;
    }
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
}

export interface Upstream {
  /** Flat [name, value, ...] list for undici. */
  headers: string[];
  /** The client address as resolved through trusted proxies (nginx's realip module, recursive). */
  clientIp: string;
}

/**
 * The request headers sent upstream. Host is kept. X-Forwarded-For is appended to when the peer is a
 * trusted proxy, and by default replaced otherwise (a client cannot forge its address). X-Real-IP is
 * the rightmost untrusted address, as nginx's `real_ip_recursive on` finds it.
 */
export function upstreamHeaders(req: IncomingMessage, ctx: ForwardContext): Upstream {
  const raw = req.rawHeaders;
  const peer = peerAddress(req.socket.remoteAddress);
  const trustedPeer = ctx.trusted.has(peer);
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
    if (drop.length > 0 && drop.includes(lower)) continue;
    out.push(name, raw[i + 1] as string);
  }

  let chain: string;
  let clientIp = peer;
  if (trustedPeer) {
    chain = xff === undefined ? peer : `${xff}, ${peer}`;
    clientIp = realIp(chain, ctx.trusted);
    // A trusted proxy in front (a load balancer terminating TLS) tells us the scheme and host.
    if (forwarded !== undefined) out.push('Forwarded', forwarded);
  } else {
    chain = xff !== undefined && ctx.forwardedForUntrusted === 'append' ? `${xff}, ${peer}` : peer;
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
  const parts = chain.split(',');
  for (let i = parts.length - 1; i >= 0; i--) {
    const a = (parts[i] as string).trim();
    if (!trusted.has(a)) return a;
  }
  return (parts[0] as string).trim();
}

/**
 * The response headers sent to the client, from undici's raw [name, value] buffers. Framing headers
 * are dropped: Node frames the body itself (Content-Length kept, else chunked for HTTP/1.1).
 */
export function downstreamHeaders(raw: Buffer[]): string[] {
  let drop: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as Buffer;
    if (name.length === 10 && name.toString('latin1').toLowerCase() === 'connection') {
      drop = connectionTokens((raw[i + 1] as Buffer).toString('latin1'));
      break;
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as Buffer).toString('latin1');
    const lower = name.toLowerCase();
    // Trailer is kept: it announces the trailers we forward after a chunked body.
    if (lower !== 'trailer' && HOP_BY_HOP.has(lower)) continue;
    if (drop !== undefined && drop.includes(lower)) continue;
    out.push(name, (raw[i + 1] as Buffer).toString('latin1'));
  }
  return out;
}
