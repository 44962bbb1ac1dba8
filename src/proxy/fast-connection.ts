/**
 * The client side's fast path: the common request (HTTP/1.1, no body, no upgrade, its head in one
 * read) parsed with Node's native parser (llhttp, the one upstream.ts uses) straight off the socket,
 * and answered without Node's http module. Everything else, and every connection after it, goes to
 * Node's HTTP server, which gets the bytes exactly as they came (docs/proxy.md, "The client fast path").
 *
 * The request and response objects carry what the gateway reads and calls of Node's (server.ts,
 * forward.ts, respond.ts), and the response writes the bytes Node's ServerResponse writes for the
 * same calls: the app's fields in order, then Date, Connection (and Keep-Alive), Transfer-Encoding.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { FastRequest } from './fast-request.js';
import { FastResponse, type ResponseConnection } from './fast-response.js';

interface RequestParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  [key: number]: unknown;
  conn: FastConnection | null;
}

const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common') as {
  HTTPParser: { new (): RequestParser; REQUEST: number; kOnHeaders: number; kOnHeadersComplete: number; kOnBody: number; kOnMessageComplete: number };
  methods: string[];
};

/** The limits a fast connection reads (server.ts keeps one object, replaced on a reload). */
export interface FastLimits {
  /** Fixed at a listener's creation, as Node's server has it. */
  readonly maxHeaderSize: number;
  readonly maxHeaderCount: number;
  readonly clientHeaderTimeout: number;
  readonly keepaliveTimeout: number;
  readonly sendTimeout: number;
}

/** What the fast path needs from the listener that owns the connection (server.ts). */
export interface FastOwner {
  /** The fast path is on (`clientFastPath`, no nginx.conf site): asked per request, a reload changes it. */
  fastPath(): boolean;
  /** The limits now. */
  limits(): FastLimits;
  /** Answers a parsed request, as for Node's 'request' event. */
  serve(req: FastRequest, res: FastResponse): void;
  /** Gives the socket to Node's HTTP server; its first bytes were put back on the socket. */
  handOff(socket: Socket): void;
  /** No request head came within clientHeaderTimeout: answered as Node's server does (408). */
  headerTimeout(socket: Socket): void;
}

/** A Node socket with the internals the fast path uses. */
type RawSocket = Socket & { destroySoon(): void };

/**
 * One parser for every fast connection: the fast path parses a whole head in one call, so no state
 * is kept between reads, and an idle keep-alive connection holds no parser (Node's native parser
 * object is a few KB; at 10,000 connections that counted). After a clean keep-alive message llhttp
 * is ready for the next; after anything else it is initialized again.
 */
let shared: RequestParser | null = null;
let sharedMax = -1;
/** The shared parser must be initialized before its next use. */
let sharedDirty = true;

function requestParser(maxHeaderSize: number): RequestParser {
  let p = shared;
  if (p === null) {
    p = shared = new HTTPParser();
    p.conn = null;
    p[HTTPParser.kOnHeaders] = onHeaders;
    p[HTTPParser.kOnHeadersComplete] = onHeadersComplete;
    p[HTTPParser.kOnBody] = onBody;
    // No kOnMessageComplete: each callback from the parser costs a call into JS, and a head the
    // fast path keeps has no body, so its message is complete once the head is (a body would have
    // been announced by Content-Length or Transfer-Encoding, which send it to Node's server).
  }
  if (sharedDirty || sharedMax !== maxHeaderSize) {
    // Marked clean by parse(), once a head parsed cleanly.
    p.initialize(HTTPParser.REQUEST, PARSER_RESOURCE, maxHeaderSize, 0);
    sharedMax = maxHeaderSize;
  }
  return p;
}
const PARSER_RESOURCE = {};

/** More header fields than llhttp hands over at once (32): rare; Node's server takes the request. */
function onHeaders(this: RequestParser): void {
  if (this.conn) this.conn.refuse = true;
}

function onHeadersComplete(this: RequestParser, major: number, minor: number, headers: string[] | undefined, method: number, url: string | undefined, _status: unknown, _text: unknown, upgrade: boolean, keepAlive: boolean): number {
  const conn = this.conn;
  if (conn) conn.headersComplete(major, minor, headers, method, url, upgrade, keepAlive);
  return 0;
}

function onBody(this: RequestParser): void {
  if (this.conn) this.conn.refuse = true;
}

const BLANK_LINE = Buffer.from('\r\n\r\n', 'latin1');

/** The one head the fast path takes: a read that ends with the head's blank line and holds nothing else. */
function oneHead(chunk: Buffer): boolean {
  const n = chunk.length;
  return n > 16 && chunk[n - 1] === 10 && chunk[n - 2] === 13 && chunk[n - 3] === 10 && chunk[n - 4] === 13 && chunk.indexOf(BLANK_LINE) === n - 4;
}

/**
 * One client connection on the fast path: one request at a time; bytes that come while a request
 * is in flight wait (the socket paused) until its response is done, then are served or handed off.
 */
export class FastConnection implements ResponseConnection {
  /** Set by the parser callbacks for the read being parsed. */
  refuse = false;
  private req: FastRequest | null = null;
  private keepAlive = false;
  /** The response in flight. */
  private res: FastResponse | null = null;
  /** Bytes that came while a response was in flight. */
  private pending: Buffer | null = null;
  private requests = 0;
  /** The client sent its FIN. */
  private ended = false;
  private gone = false;
  /** The last response closes the connection. */
  private closing = false;
  readonly keepAliveFields: string;
  /** The limits when the connection was accepted: a reload applies to the next connections. */
  private readonly limits: FastLimits;

  constructor(
    private readonly socket: RawSocket,
    private readonly owner: FastOwner,
  ) {
    const limits = owner.limits();
    this.limits = limits;
    this.keepAliveFields = keepAliveFields(limits.keepaliveTimeout);
    // Listeners shared by every connection (no closures per connection): they find it on the socket.
    (socket as ConnSocket)[kConn] = this;
    socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('close', onSocketClose);
    socket.on('error', noop);
    socket.on('timeout', onSocketTimeout);
    this.arm(limits.clientHeaderTimeout);
  }

  /** The socket's inactivity deadline now. */
  private armed = -1;

  /**
   * Sets the socket's inactivity deadline when it changes. The deadline of a connection is the
   * head's until its first request, then keepalive's; it is not changed per request (two timers
   * per request cost): a request in flight is bounded by the upstream read timeout, and a client
   * that stops reading its response gets send_timeout from the moment its socket pushes back.
   */
  arm(ms: number): void {
    if (ms === this.armed) return;
    this.armed = ms;
    this.socket.setTimeout(ms);
  }

  /** No request in flight: a graceful stop may close it. */
  get idle(): boolean {
    return this.res === null && this.pending === null;
  }

  /** @internal socket listener */
  data(chunk: Buffer): void {
    // After a response that closes the connection: what follows is not read as a request.
    if (this.closing) return;
    if (this.res !== null || this.pending !== null) {
      this.pending = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
      this.socket.pause();
      return;
    }
    this.parse(chunk);
  }

  private parse(chunk: Buffer): void {
    if (!this.owner.fastPath() || !oneHead(chunk)) return this.handOff(chunk);
    this.refuse = false;
    this.req = null;
    const parser = requestParser(this.limits.maxHeaderSize);
    // Marked clean again only after a clean parse: whatever else happens in execute (an error, a
    // throw), the next use initializes the parser first.
    sharedDirty = true;
    parser.conn = this;
    let ret: number | Error;
    try {
      ret = parser.execute(chunk);
    } finally {
      parser.conn = null;
    }
    const req = this.req as FastRequest | null;
    // The whole read parsed as one bodiless head (oneHead: nothing follows its blank line).
    const whole = ret === chunk.length && !this.refuse && req !== null;
    if (whole && this.keepAlive) sharedDirty = false;
    if (!whole) return this.handOff(chunk);
    this.requests++;
    const res = new FastResponse(req, this.socket, this, this.keepAlive);
    this.res = res;
    this.owner.serve(req, res);
  }

  headersComplete(major: number, minor: number, headers: string[] | undefined, method: number, url: string | undefined, upgrade: boolean, keepAlive: boolean): void {
    // Fields past the 32 llhttp hands over at once came through onHeaders (refused there); the
    // head then arrives without its fields here.
    if (this.refuse || headers === undefined || url === undefined) {
      this.refuse = true;
      return;
    }
    if (major !== 1 || minor !== 1 || upgrade || headers.length / 2 > this.limits.maxHeaderCount) {
      this.refuse = true;
      return;
    }
    let host = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string;
      switch (name.length) {
        case 4:
          if (name.toLowerCase() === 'host') host = true;
          break;
        case 6:
          if (name.toLowerCase() === 'expect') this.refuse = true;
          break;
        case 7:
          if (name.toLowerCase() === 'upgrade') this.refuse = true;
          break;
        case 14:
          // `Content-Length: 0` is a bodiless request too; anything else goes to Node's server.
          if (name.toLowerCase() === 'content-length' && headers[i + 1] !== '0') this.refuse = true;
          break;
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') this.refuse = true;
          break;
      }
    }
    const m = methods[method] as string;
    if (!host || m === 'CONNECT' || this.refuse) {
      this.refuse = true;
      return;
    }
    this.keepAlive = keepAlive;
    this.req = new FastRequest(m, url, headers, this.socket);
  }

  /** The response is written: the connection waits for the next request, or closes. */
  responseDone(res: FastResponse): void {
    if (this.res !== res) return;
    this.res = null;
    this.req = null;
    const socket = this.socket;
    if (res.last || (this.ended && this.pending === null)) {
      this.closing = true;
      // respond.ts may have made this a lingering close (unread bytes discarded, not parsed).
      socket.destroySoon();
      return;
    }
    this.arm(this.limits.keepaliveTimeout);
    // A request that came during this one: served on the next tick, after this one's access log.
    if (this.pending !== null) process.nextTick(servePending, this);
  }

  /** The bytes that came while the last response was in flight. */
  servePending(): void {
    const pending = this.pending;
    if (pending === null || this.gone || this.closing) return;
    this.pending = null;
    this.socket.resume();
    this.parse(pending);
  }

  /** Node's HTTP server takes the connection from here: `chunk` (and what waits) is read again by it. */
  private handOff(chunk: Buffer): void {
    const socket = this.socket;
    socket.off('data', onSocketData);
    socket.off('end', onSocketEnd);
    socket.off('close', onSocketClose);
    socket.off('error', noop);
    socket.off('timeout', onSocketTimeout);
    (socket as ConnSocket)[kConn] = undefined;
    this.arm(0);
    socket.unshift(chunk);
    this.owner.handOff(socket);
    socket.resume();
  }

  /** @internal socket listener */
  end(): void {
    this.ended = true;
    // With a response in flight, it is still sent (the client half-closed); the socket ends after it.
    if (this.res === null && this.pending === null) this.socket.end();
  }

  /** @internal socket listener */
  close(): void {
    this.gone = true;
    const res = this.res;
    this.res = null;
    res?.closed();
  }

  /** @internal socket listener */
  timeout(): void {
    const res = this.res;
    if (res !== null) {
      // send_timeout: a client that does not read its response. Waiting on the app is the upstream
      // read timeout's business.
      if (this.socket.writableLength > 0) this.socket.destroy();
      return;
    }
    if (this.requests === 0 && this.pending === null) return this.owner.headerTimeout(this.socket);
    this.socket.destroy();
  }

  /** The socket drained: passed on to the response waiting on it. */
  drained(): void {
    this.res?.drained();
  }

  /** ResponseConnection: the client stopped taking the response; send_timeout from now. */
  pushedBack(): void {
    this.socket.once('drain', onSocketDrain);
    this.arm(this.limits.sendTimeout);
  }

  /** A graceful stop's end: closed if idle. */
  closeIfIdle(): void {
    if (!this.gone && this.idle) this.socket.destroy();
  }
}

const kConn = Symbol('fastConnection');
type ConnSocket = RawSocket & { [kConn]?: FastConnection | undefined };

function onSocketData(this: ConnSocket, chunk: Buffer): void {
  this[kConn]?.data(chunk);
}

function onSocketEnd(this: ConnSocket): void {
  this[kConn]?.end();
}

function onSocketClose(this: ConnSocket): void {
  this[kConn]?.close();
}

function onSocketTimeout(this: ConnSocket): void {
  this[kConn]?.timeout();
}

function onSocketDrain(this: ConnSocket): void {
  this[kConn]?.drained();
}

const keepAliveHeads = new Map<number, string>();
function keepAliveFields(timeout: number): string {
  let fields = keepAliveHeads.get(timeout);
  if (fields === undefined) {
    fields = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(timeout / 1000)}\r\n`;
    keepAliveHeads.set(timeout, fields);
  }
  return fields;
}

function servePending(conn: FastConnection): void {
  conn.servePending();
}

function noop(): void {}
