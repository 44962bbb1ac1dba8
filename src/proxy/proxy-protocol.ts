/**
 * The PROXY protocol (HAProxy's spec, versions 1 and 2): a load balancer that forwards TCP tells
 * us, before any HTTP byte, whom the connection came from. A listener that asks for it (`listen
 * "0.0.0.0:80 proxy_protocol"`) reads the header first; anything malformed, missing or late closes
 * the connection with no HTTP parsed, as nginx does ("broken header").
 *
 * parseProxyHeader is pure (bytes in, a verdict out); acceptProxyProtocol does the socket work.
 */
import type { Server } from 'node:http';
import { isIPv4, isIPv6, type Socket } from 'node:net';

/** v1: the spec's longest line, "PROXY UNKNOWN <39> <39> 65535 65535\r\n", is 107 bytes. */
export const V1_MAX = 107;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Signature, version/command, family/protocol, two length bytes. */
const V2_FIXED = 16;

export interface ProxyAddress {
  address: string;
  port: number;
}

export interface ProxyHeader {
  version: 1 | 2;
  /**
   * The addresses the balancer saw. Undefined when the header carries none we can use: v1
   * UNKNOWN, v2 LOCAL (the balancer's own health check), v2 UNSPEC or AF_UNIX; then the TCP peer
   * stands, as the spec asks.
   */
  source?: ProxyAddress;
  destination?: ProxyAddress;
}

export type ParseResult =
  | { state: 'incomplete' }
  | { state: 'invalid'; reason: string }
  | { state: 'done'; header: ProxyHeader; /** Bytes the header took; what follows is HTTP. */ length: number };

const INCOMPLETE: ParseResult = { state: 'incomplete' };

/** Reads a PROXY header from the start of what the connection sent so far. */
export function parseProxyHeader(buf: Buffer): ParseResult {
  if (buf.length === 0) return INCOMPLETE;
  if (isPrefix(buf, V2_SIGNATURE)) return buf.length < V2_FIXED ? INCOMPLETE : parseV2(buf);
  if (isPrefix(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? INCOMPLETE : parseV1(buf);
  return { state: 'invalid', reason: 'no PROXY protocol header' };
}

/** The shorter of the two is a prefix of the longer: a partial signature still may become one. */
function isPrefix(buf: Buffer, sig: Buffer): boolean {
  const n = Math.min(buf.length, sig.length);
  return buf.compare(sig, 0, n, 0, n) === 0;
}

function parseV1(buf: Buffer): ParseResult {
  const lf = buf.indexOf(0x0a);
  if (lf === -1) return buf.length >= V1_MAX ? { state: 'invalid', reason: `v1 header longer than ${V1_MAX} bytes` } : INCOMPLETE;
  if (lf + 1 > V1_MAX) return { state: 'invalid', reason: `v1 header longer than ${V1_MAX} bytes` };
  if (buf[lf - 1] !== 0x0d) return { state: 'invalid', reason: 'v1 header not ended by CRLF' };
  const line = buf.toString('latin1', V1_PREFIX.length, lf - 1);
  const length = lf + 1;
  // The spec: after UNKNOWN the receiver ignores the rest of the line.
  if (line === 'UNKNOWN' || line.startsWith('UNKNOWN ')) return { state: 'done', header: { version: 1 }, length };
  const parts = line.split(' ');
  const [proto, src, dst, sport, dport] = parts;
  if (parts.length !== 5 || (proto !== 'TCP4' && proto !== 'TCP6')) return { state: 'invalid', reason: 'v1 header is not "TCP4|TCP6|UNKNOWN src dst sport dport"' };
  const valid = proto === 'TCP4' ? isIPv4 : isIPv6;
  if (!valid(src as string) || !valid(dst as string)) return { state: 'invalid', reason: `v1 header has an address that is not ${proto === 'TCP4' ? 'IPv4' : 'IPv6'}` };
  const sp = port(sport as string);
  const dp = port(dport as string);
  if (sp === undefined || dp === undefined) return { state: 'invalid', reason: 'v1 header has an invalid port' };
  return { state: 'done', header: { version: 1, source: { address: unmapped(src as string), port: sp }, destination: { address: unmapped(dst as string), port: dp } }, length };
}

function port(text: string): number | undefined {
  // nginx's parser: decimal digits up to 65535.
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

function parseV2(buf: Buffer): ParseResult {
  const verCmd = buf[12] as number;
  const famProto = buf[13] as number;
  const length = V2_FIXED + buf.readUInt16BE(14);
  if (verCmd >> 4 !== 2) return { state: 'invalid', reason: `v2 header has version ${verCmd >> 4}` };
  const command = verCmd & 0x0f;
  if (command > 1) return { state: 'invalid', reason: `v2 header has unknown command ${command}` };
  const family = famProto >> 4;
  const transport = famProto & 0x0f;
  if (family > 3 || transport > 2) return { state: 'invalid', reason: `v2 header has unknown family/protocol 0x${famProto.toString(16)}` };
  if (buf.length < length) return INCOMPLETE;
  const need = family === 1 ? 12 : family === 2 ? 36 : family === 3 ? 216 : 0;
  if (length - V2_FIXED < need) return { state: 'invalid', reason: 'v2 header shorter than its addresses' };
  // LOCAL: the balancer speaks for itself (health checks); UNSPEC and AF_UNIX carry no IP.
  // TLVs after the addresses are skipped: the spec lets a receiver ignore those it does not use.
  if (command === 0 || family === 0 || family === 3) return { state: 'done', header: { version: 2 }, length };
  const at = V2_FIXED;
  const header: ProxyHeader =
    family === 1
      ? {
          version: 2,
          source: { address: ipv4(buf, at), port: buf.readUInt16BE(at + 8) },
          destination: { address: ipv4(buf, at + 4), port: buf.readUInt16BE(at + 10) },
        }
      : {
          version: 2,
          source: { address: ipv6(buf, at), port: buf.readUInt16BE(at + 32) },
          destination: { address: ipv6(buf, at + 16), port: buf.readUInt16BE(at + 34) },
        };
  return { state: 'done', header, length };
}

function ipv4(buf: Buffer, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
}

/** RFC 5952 text: lower case, the longest run of two or more zero groups as `::`. */
function ipv6(buf: Buffer, at: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(at + 2 * i));
  // An IPv4 client through a dual-stack balancer: written as that IPv4 address, as peerAddress does.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return ipv4(buf, at + 12);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best === -1) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

function unmapped(addr: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  return m ? (m[1] as string) : addr.toLowerCase();
}

const headers = new WeakMap<object, ProxyHeader>();

/** Records the header a connection began with (acceptProxyProtocol; tests of header decisions). */
export function setProxyHeader(socket: object, header: ProxyHeader): void {
  headers.set(socket, header);
}

/** The PROXY header a connection began with, if its listener reads one. */
export function proxyHeaderOf(socket: object | null | undefined): ProxyHeader | undefined {
  return socket ? headers.get(socket) : undefined;
}

export interface ProxyProtocolOptions {
  /** Milliseconds the whole header may take (nginx: client_header_timeout); read per connection, so a reload applies. */
  timeout(): number;
  /** One call per refused connection. */
  onInvalid(peer: string, reason: string): void;
}

/**
 * Makes `server` read a PROXY header before its HTTP parser sees the connection. Node's own
 * connection handling is taken off the 'connection' event and run once the header is read, with
 * the bytes after it put back; listeners added later (connection counting) run at accept, so a
 * connection is counted, and cut by a stop, while its header is awaited.
 */
export function acceptProxyProtocol(server: Server, opts: ProxyProtocolOptions): void {
  const http = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  const pending = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    pending.add(socket);
    let buf: Buffer = Buffer.alloc(0);
    const fail = (reason: string) => {
      done();
      opts.onInvalid(socket.remoteAddress ?? '', reason);
      socket.destroy();
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const r = parseProxyHeader(buf);
      if (r.state === 'incomplete') return;
      if (r.state === 'invalid') return fail(r.reason);
      done();
      setProxyHeader(socket, r.header);
      socket.pause();
      if (buf.length > r.length) socket.unshift(buf.subarray(r.length));
      for (const l of http) l.call(server, socket);
      // Node's HTTP parser reads a TCP socket's handle directly, around the stream's buffer: the
      // bytes put back would wait there while later ones were parsed first. Flowing the buffer
      // now delivers them on the next tick, before any further read from the handle.
      socket.resume();
    };
    const onEnd = () => fail('connection closed before the PROXY protocol header');
    const onError = () => {
      done();
      socket.destroy();
    };
    const timer = setTimeout(() => fail('no complete PROXY protocol header in time'), opts.timeout());
    const done = () => {
      clearTimeout(timer);
      pending.delete(socket);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
  });
  // A stop closes the listener: connections still in their header have sent no request to finish.
  const close = server.close.bind(server);
  server.close = (callback?: (err?: Error) => void) => {
    for (const s of pending) s.destroy();
    pending.clear();
    return close(callback);
  };
}
