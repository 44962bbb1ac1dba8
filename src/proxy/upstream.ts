/**
 * The upstream client: HTTP/1.1 to the app server's Unix socket, one request at a time per
 * connection, parsed by Node's own native HTTP parser (llhttp in C++, the one behind `http.request`).
 *
 * Why not undici, which the gateway used first and still offers (`upstreamClient: undici`): on the
 * bench (bench/RESULTS.md) undici's parser (llhttp compiled to WebAssembly) and its request machinery
 * cost about a third of the gateway's throughput; this client does the same work for a fraction.
 * It keeps undici's handler contract (onConnect, onHeaders, onData, onComplete, onError) and its
 * error codes, so forward.ts's Exchange runs on either.
 *
 * What it does, as undici did for us: a pool of at most `connections` keep-alive connections, idle
 * ones closed after `keepAliveTimeout` (or the app's shorter `Keep-Alive: timeout=`), requests
 * queued when all are busy; a read timeout while waiting for the head and between body chunks
 * (never while the client is the slow one); a connect timeout; backpressure both ways; a body of
 * known length sent as is, one of unknown length chunked. What it refuses: a byte the app sends
 * when no response is due (more than its Content-Length, a second response, anything on an idle
 * connection) closes the connection, never reaching the next request; a 101 to a plain request;
 * a head over 16 KiB; a header value with CR, LF or NUL (it would split the request).
 *
 * `_http_common` is Node's module for its HTTP parser (the same `HTTPParser` `http.request` uses);
 * it is undocumented but stable from Node 12 to 24, and loading it emits no warning.
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import { checkSocket, type SocketCheck } from './socket-identity.js';

/** undici's legacy handler contract, the part the Exchange implements. */
export interface UpstreamHandler {
  onConnect(abort: (err?: Error) => void): void;
  onHeaders(statusCode: number, rawHeaders: (Buffer | string)[], resume: () => void, statusText: string): boolean;
  onData(chunk: Buffer): boolean;
  onComplete(trailers: string[] | Buffer[] | null): void;
  onError(err: Error): void;
}

export type UpstreamBody = Buffer | NodeJS.ReadableStream | AsyncIterable<Buffer> | null | undefined;

export interface UpstreamRequest {
  method: string;
  path: string;
  /** Flat [name, value, ...]. */
  headers: string[];
  body?: UpstreamBody;
}

export interface PoolStats {
  connected: number;
  free: number;
  pending: number;
  running: number;
}

/** What the proxy needs of an upstream pool: this client's, or undici's Pool. */
export interface UpstreamPool {
  dispatch(req: UpstreamRequest, handler: UpstreamHandler): boolean;
  readonly stats: PoolStats;
  close(): Promise<void>;
  destroy(): Promise<void>;
}

export interface NativePoolOptions {
  socketPath: string;
  connections: number;
  keepAliveTimeout: number;
  connectTimeout: number;
  readTimeout: number;
  socketCheck: SocketCheck;
  /** Largest response head, in bytes (undici's and Node's default: 16 KiB). */
  maxHeaderSize?: number;
  /** What the pool learnt of the app, shared with the pool that replaces it (a restart's). */
  traits?: AppTraits;
}

export interface AppTraits {
  /**
   * Answers in a row that closed their connection. From CLOSED_RUN on, the app is taken as one
   * that closes each connection (Unicorn); below, as one that keeps them open (Puma, Thin; a busy
   * Puma closes some).
   */
  closedRun: number;
}

const CLOSED_RUN = 3;

/** An error with undici's code for the same failure (errors.ts maps them). */
export class UpstreamError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | (Error & { code: string; bytesParsed: number });
  finish(): undefined | (Error & { code: string });
  close(): void;
  [key: number]: unknown;
  conn?: Conn;
}

const { HTTPParser } = createRequire(import.meta.url)('_http_common') as {
  HTTPParser: { new (): NativeParser; RESPONSE: number; kOnMessageBegin: number; kOnHeaders: number; kOnHeadersComplete: number; kOnBody: number; kOnMessageComplete: number };
};

/** Characters a header value may not carry: they would end the field or the head. */
const BAD_VALUE = /[\r\n\0]/;
/** Methods whose bodiless request gets `Content-Length: 0` (undici's expectsPayload). */
const PAYLOAD_METHODS = new Set(['POST', 'PUT', 'PATCH', 'QUERY', 'PROPFIND', 'PROPPATCH']);

/** Interim (1xx) responses accepted before the final one. */
const MAX_INTERIM = 10;
/**
 * Every connection reads into this one buffer (net's `onread`), rather than into a fresh one per
 * read as a 'data' listener gets: no allocation and no stream machinery per read. Safe because a
 * read is parsed whole before the next one, and Node's parser keeps nothing in it: header fields
 * become strings, and each body chunk is a copy of its own (node_http_parser's on_body; checked by
 * upstream-client.test.ts, which keeps the chunks while later reads come in).
 */
const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);

const NONE = 0;
const CONNECT = 1;
const HEADERS = 2;
const BODY = 3;

/** One request from dispatch to its end. */
class Job {
  conn: Conn | null = null;
  /** The handler was told the end (onComplete or onError). */
  over = false;
  /** The body was written to its end. */
  sent = false;
  /** A final (non-1xx) head arrived. */
  status = 0;
  /** Interim (1xx) responses so far. */
  interim = 0;
  /**
   * Writes to the socket of a streamed body's request, and the chunk that went with the head. A
   * stream (not an iterator, which may hold a chunk it pulled) can be handed back unread.
   */
  writes = 0;
  first: Buffer | null = null;
  rewindable = false;
  /** Stops writing the body (it was abandoned). */
  stopBody: (() => void) | null = null;
  readonly abort: (err?: Error) => void;
  readonly resume: () => void;

  constructor(
    readonly pool: NativePool,
    readonly req: UpstreamRequest,
    readonly handler: UpstreamHandler,
  ) {
    this.abort = (err?: Error) => pool.failJob(this, err ?? new UpstreamError('UND_ERR_ABORTED', 'Request aborted'));
    this.resume = () => this.conn?.resumeFor(this);
  }
}

function onMessageBegin(this: NativeParser): void {
  (this.conn as Conn).messageBegin();
}
function onHeaders(this: NativeParser, headers: string[]): void {
  const c = this.conn as Conn;
  if (c.pendingHeaders === null) c.pendingHeaders = headers;
  else for (const h of headers) c.pendingHeaders.push(h);
}
function onHeadersComplete(this: NativeParser, _maj: number, _min: number, headers: string[] | undefined, _m: unknown, _u: unknown, status: number, text: string, upgrade: boolean, keepAlive: boolean): number {
  return (this.conn as Conn).headersComplete(headers, status, text, upgrade, keepAlive);
}
function onBody(this: NativeParser, chunk: Buffer): void {
  (this.conn as Conn).body(chunk);
}
function onMessageComplete(this: NativeParser): void {
  (this.conn as Conn).messageComplete();
}

class Conn {
  readonly socket: net.Socket;
  readonly parser: NativeParser;
  job: Job | null = null;
  closed = false;
  /** Connected and not failed: ready for a request once idle. */
  ready = false;
  idleSince = 0;
  /** The app's Keep-Alive timeout hint, in ms, capped by ours. */
  idleLimit: number;
  /** Header lines the parser handed over early (more than 32) or trailers. */
  pendingHeaders: string[] | null = null;
  private keepAlive = true;
  /** The job's response ended inside the current execute(): release the connection after it. */
  private completed: Job | null = null;
  private parsing = false;
  private paused = false;
  private error: Error | null = null;
  waitDrain: (() => void) | null = null;
  private phase = NONE;
  private deadline = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = 0;
  /** The app has answered on this connection, so it accepted it (see NativePool.mayGrow). */
  proven = false;
  /** When it was opened (performance.now()). */
  readonly openedAt = performance.now();

  constructor(
    readonly pool: NativePool,
    first: Job,
  ) {
    const o = pool.options;
    this.idleLimit = o.keepAliveTimeout;
    this.parser = new HTTPParser();
    this.parser.initialize(HTTPParser.RESPONSE, {}, o.maxHeaderSize ?? 16384, 0);
    this.parser.conn = this;
    this.parser[HTTPParser.kOnMessageBegin] = onMessageBegin;
    this.parser[HTTPParser.kOnHeaders] = onHeaders;
    this.parser[HTTPParser.kOnHeadersComplete] = onHeadersComplete;
    this.parser[HTTPParser.kOnBody] = onBody;
    this.parser[HTTPParser.kOnMessageComplete] = onMessageComplete;
    this.job = first;
    first.conn = this;
    this.socket = net.connect({ path: o.socketPath, onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array): boolean => this.read(n, buf as Buffer) } });
    this.arm(CONNECT, o.connectTimeout);
    this.socket.on('connect', () => {
      this.ready = true;
      this.phase = NONE;
      const job = this.job;
      if (job) this.start(job);
      else this.pool.release(this);
    });
    this.socket.on('drain', () => {
      const f = this.waitDrain;
      this.waitDrain = null;
      f?.();
    });
    this.socket.on('end', () => this.ended());
    this.socket.on('error', (err: Error) => {
      this.error ??= err;
    });
    this.socket.on('close', () => this.onClose());
  }

  /** Sends `job` on this connection (connected and idle). */
  start(job: Job): void {
    this.job = job;
    job.conn = this;
    this.keepAlive = true;
    job.handler.onConnect(job.abort);
    if (job.over || this.closed) return;
    const { method, path, headers, body } = job.req;
    let head = `${method} ${path} HTTP/1.1\r\n`;
    let hasHost = false;
    let hasLength = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string;
      const value = headers[i + 1] as string;
      if (BAD_VALUE.test(value)) return this.pool.failJob(job, new UpstreamError('UND_ERR_INVALID_ARG', `invalid ${name} header`));
      if (name.length === 4) hasHost ||= name.toLowerCase() === 'host';
      else if (name.length === 14) hasLength ||= name.toLowerCase() === 'content-length';
      head += `${name}: ${value}\r\n`;
    }
    if (!hasHost) head += 'host: localhost\r\n';
    head += 'connection: keep-alive\r\n';
    const socket = this.socket;
    if (body == null) {
      if (!hasLength && PAYLOAD_METHODS.has(method)) head += 'content-length: 0\r\n';
      socket.write(`${head}\r\n`, 'latin1');
      job.sent = true;
      this.arm(HEADERS, this.pool.options.readTimeout);
      return;
    }
    if (Buffer.isBuffer(body)) {
      if (!hasLength) head += `content-length: ${body.length}\r\n`;
      socket.cork();
      socket.write(`${head}\r\n`, 'latin1');
      socket.write(body);
      socket.uncork();
      job.sent = true;
      this.arm(HEADERS, this.pool.options.readTimeout);
      return;
    }
    const chunked = !hasLength;
    if (chunked) head += 'transfer-encoding: chunked\r\n';
    this.pump(job, body, chunked, `${head}\r\n`);
  }

  /**
   * Writes a streamed body, pausing while the socket's buffer is full. The head goes with the first
   * body bytes (or the end), in one write: an app server that sees a head alone may take the
   * request for one still arriving and drop it when it restarts (Puma's USR2 closes connections
   * without a complete request: a POST was answered 502 in hold-app-servers.test.ts).
   */
  private pump(job: Job, body: NodeJS.ReadableStream | AsyncIterable<Buffer>, chunked: boolean, head: string): void {
    const socket = this.socket;
    const stream = body as NodeJS.ReadableStream & { on?: unknown; pause?: unknown };
    const readable = typeof stream.on === 'function' && typeof stream.pause === 'function';
    job.rewindable = readable;
    let pendingHead: string | null = head;
    const sendHead = () => {
      socket.write(pendingHead as string, 'latin1');
      pendingHead = null;
    };
    const write = (chunk: Buffer): boolean => {
      if (this.job === job) this.arm(HEADERS, this.pool.options.readTimeout);
      if (chunk.length === 0) return true;
      // Past the first write the first chunk is no longer needed (onClose hands back only that one).
      if (++job.writes === 2) job.first = null;
      socket.cork();
      if (pendingHead !== null) {
        sendHead();
        // Kept in case this first write fails (onClose): the rest of a stream is still unread.
        if (readable) job.first = chunk;
      }
      let ok: boolean;
      if (!chunked) ok = socket.write(chunk);
      else {
        socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
        socket.write(chunk);
        ok = socket.write('\r\n', 'latin1');
      }
      socket.uncork();
      return ok;
    };
    const end = () => {
      job.stopBody = null;
      if (job.over || this.closed || this.job !== job) return;
      if (pendingHead !== null || chunked) job.writes++;
      socket.cork();
      if (pendingHead !== null) sendHead();
      if (chunked) socket.write('0\r\n\r\n', 'latin1');
      socket.uncork();
      job.sent = true;
      this.arm(HEADERS, this.pool.options.readTimeout);
    };
    if (readable) {
      const onData = (chunk: Buffer) => {
        if (!write(chunk)) {
          stream.pause();
          this.waitDrain = () => stream.resume();
        }
      };
      const onEnd = () => {
        detach();
        end();
      };
      const onGone = () => {
        detach();
        this.pool.failJob(job, new UpstreamError('UND_ERR_ABORTED', 'request body ended early'));
      };
      const detach = () => {
        stream.off('data', onData);
        stream.off('end', onEnd);
        stream.off('error', onGone);
        stream.off('close', onGone);
        // Not flowing with nobody listening: what the client still sends is not read (the
        // response closes the connection, forward.ts) rather than read and dropped.
        stream.pause();
        if (this.waitDrain !== null && this.job === job) this.waitDrain = null;
        job.stopBody = null;
      };
      job.stopBody = detach;
      stream.on('data', onData);
      stream.once('end', onEnd);
      stream.once('error', onGone);
      stream.once('close', onGone);
      stream.resume();
      return;
    }
    const it = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    let stopped = false;
    job.stopBody = () => {
      stopped = true;
      job.stopBody = null;
    };
    const step = (): void => {
      it.next().then(
        (r) => {
          if (stopped || job.over) return;
          if (r.done) return end();
          if (write(r.value)) step();
          else this.waitDrain = step;
        },
        (err: Error) => {
          if (!stopped) this.pool.failJob(job, err);
        },
      );
    };
    step();
  }

  private read(n: number, buf: Buffer): boolean {
    this.data(buf.subarray(0, n));
    // Pausing is socket.pause()'s business (pause), not this answer's.
    return true;
  }

  private data(d: Buffer): void {
    if (this.closed) return;
    if (this.job === null) {
      // Bytes with no request outstanding: the app is out of step with us. Never reuse.
      this.destroy();
      return;
    }
    this.parsing = true;
    const r = this.parser.execute(d);
    this.parsing = false;
    if (typeof r !== 'number') {
      const job = this.job;
      const code = r.code === 'HPE_HEADER_OVERFLOW' ? 'UND_ERR_HEADERS_OVERFLOW' : r.code;
      const err = new UpstreamError(code, `upstream sent an invalid response: ${(r as { reason?: string }).reason ?? r.message}`);
      if (job && !job.over) this.pool.failJob(job, err);
      else this.destroy();
      return;
    }
    this.afterParse();
  }

  /** A response ended inside execute(): the connection goes back to the pool now, or closes. */
  private afterParse(): void {
    const job = this.completed;
    if (job === null) return;
    this.completed = null;
    if (this.job === job) this.job = null;
    if (this.closed) return;
    // Paused for a slow client on the last chunk: the response is all read, so the next one on
    // this connection must not wait for that client.
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    if (!this.keepAlive || !job.sent) {
      // `Connection: close`, or the app answered before our body was all sent: the connection
      // is out of step (our unsent bytes would be read as the next request).
      this.destroy();
      return;
    }
    this.pool.release(this);
  }

  messageBegin(): void {
    const job = this.job;
    // The first response, or the final one after a 1xx: expected.
    if (job !== null && !job.over && this.completed === null) return;
    // A second response, or bytes past the Content-Length: dropped with the connection.
    this.destroy();
  }

  headersComplete(headers: string[] | undefined, status: number, text: string, upgrade: boolean, keepAlive: boolean): number {
    const job = this.job;
    let all = headers ?? [];
    if (this.pendingHeaders !== null) {
      all = this.pendingHeaders.concat(all);
      this.pendingHeaders = null;
    }
    if (job === null || job.over || this.closed || this.completed !== null) {
      this.destroy();
      return 1;
    }
    if (!this.proven) this.pool.proven(this);
    const traits = this.pool.traits;
    if (!keepAlive) traits.closedRun++;
    else if (traits.closedRun !== 0) traits.closedRun = 0;
    if (upgrade) {
      this.pool.failJob(job, new UpstreamError('UND_ERR_SOCKET', 'bad upgrade'));
      return 1;
    }
    if (status < 200) {
      // A few are normal (100, 103 Early Hints); a flood is an app out of step, answered 502.
      if (++job.interim > MAX_INTERIM) {
        this.pool.failJob(job, new UpstreamError('UND_ERR_INFO', `more than ${MAX_INTERIM} interim (1xx) responses`));
        return 1;
      }
      job.handler.onHeaders(status, all, job.resume, text);
      return 0;
    }
    job.status = status;
    this.keepAlive = keepAlive;
    for (let i = 0; i < all.length; i += 2) {
      const name = all[i] as string;
      if (name.length === 10 && name.toLowerCase() === 'keep-alive') this.keepAliveHint(all[i + 1] as string);
    }
    this.arm(BODY, this.pool.options.readTimeout);
    if (job.handler.onHeaders(status, all, job.resume, text) === false) this.pause();
    // A HEAD's response has no body, whatever its Content-Length says.
    return job.req.method === 'HEAD' ? 1 : 0;
  }

  body(chunk: Buffer): void {
    const job = this.job;
    if (job === null || job.over || this.closed) return;
    if (!this.paused) this.arm(BODY, this.pool.options.readTimeout);
    if (job.handler.onData(chunk) === false) this.pause();
  }

  messageComplete(): void {
    const job = this.job;
    if (job === null || job.over || this.closed) return;
    // An informational response (100, 103) ends before the final one.
    if (job.status === 0) return;
    const trailers = this.pendingHeaders;
    this.pendingHeaders = null;
    this.phase = NONE;
    job.over = true;
    if (!job.sent) job.stopBody?.();
    this.completed = job;
    if (!this.parsing) this.afterParse();
    job.handler.onComplete(trailers);
  }

  private keepAliveHint(value: string): void {
    const m = /timeout\s*=\s*(\d+)/i.exec(value);
    if (m) this.idleLimit = Math.min(this.pool.options.keepAliveTimeout, Number(m[1]) * 1000 - 1000);
  }

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    // The client is the slow one: no read deadline while it catches up (send_timeout's business).
    this.phase = NONE;
    this.socket.pause();
  }

  resumeFor(job: Job): void {
    if (this.job !== job || !this.paused || this.closed) return;
    this.paused = false;
    this.arm(BODY, this.pool.options.readTimeout);
    this.socket.resume();
  }

  /** The app closed its side: a response read to the end of the connection ends here. */
  private ended(): void {
    const job = this.job;
    if (this.closed) return;
    if (job === null || job.over) {
      // An idle connection the app closed (its keep-alive timeout, a restart): out of the pool
      // now, not when the socket's 'close' comes, or a request sent on it meanwhile is lost.
      this.destroy();
      return;
    }
    // A response read to the end of the connection ends now; any other is cut short, and the
    // 'close' that follows fails it.
    this.parsing = true;
    this.parser.finish();
    this.parsing = false;
    this.afterParse();
  }

  private onClose(): void {
    this.closed = true;
    this.phase = NONE;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const job = this.job;
    this.job = null;
    this.pool.forget(this);
    this.parser.close();
    if (job !== null && !job.over) {
      const err: Error & { requestNotSent?: boolean; unsentFirst?: Buffer; code?: string } = this.error ?? new UpstreamError('UND_ERR_SOCKET', 'other side closed');
      const body = job.req.body;
      if (job.status === 0 && job.rewindable && job.writes === 0) {
        // A streamed body's head waits for its first chunk: nothing of this request was written
        // (the app closed an idle connection as we reused it) and its body is all still unread.
        err.requestNotSent = true;
      } else if (err.code === 'EPIPE' && job.status === 0) {
        // EPIPE comes from a write, and a request without a streamed body is one write, its head
        // with its body: that write failed, so the app had closed the connection (an idle one it
        // dropped as we reused it; Puma's USR2 closes them all) before any byte of this request.
        // The same for a stream's first write (its head with its first chunk, one write under
        // 64 KiB): that chunk is handed back, the rest of the stream is still unread.
        if (body == null || Buffer.isBuffer(body)) err.requestNotSent = true;
        else if (job.rewindable && job.writes === 1 && job.first !== null && job.first.length < 65536) {
          err.requestNotSent = true;
          err.unsentFirst = job.first;
        }
      }
      this.pool.failJob(job, err);
    }
  }

  destroy(err?: Error): void {
    if (err) this.error ??= err;
    if (this.closed) return;
    this.closed = true;
    this.ready = false;
    this.socket.destroy();
    // 'close' comes on a later tick; the pool must not hand this connection out meanwhile.
    this.pool.forget(this);
  }

  /** Sets the deadline of a phase; one timer per connection, re-armed only when it would fire late. */
  private arm(phase: number, ms: number): void {
    this.phase = phase;
    if (ms <= 0) {
      this.phase = NONE;
      return;
    }
    const now = performance.now();
    this.deadline = now + ms;
    if (this.timer !== null && this.timerAt <= this.deadline + 1) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = this.deadline;
    this.timer = setTimeout(() => this.onTimer(), ms);
    this.timer.unref();
  }

  private onTimer(): void {
    this.timer = null;
    if (this.phase === NONE || this.closed) return;
    const left = this.deadline - performance.now();
    if (left > 1) {
      this.timerAt = this.deadline;
      this.timer = setTimeout(() => this.onTimer(), left);
      this.timer.unref();
      return;
    }
    const job = this.job;
    const phase = this.phase;
    this.phase = NONE;
    if (phase === CONNECT) {
      this.destroy(new UpstreamError('UND_ERR_CONNECT_TIMEOUT', 'connect timeout'));
      return;
    }
    if (job === null || job.over) return;
    this.pool.failJob(job, phase === HEADERS ? new UpstreamError('UND_ERR_HEADERS_TIMEOUT', 'Headers Timeout Error') : new UpstreamError('UND_ERR_BODY_TIMEOUT', 'Body Timeout Error'));
  }
}

/** A new connection the app has not answered on stops the pool's growth for this long at most. */
const PROBE_MS = 250;

export class NativePool implements UpstreamPool {
  private readonly conns = new Set<Conn>();
  /**
   * New connections the app has not answered on yet. While one is younger than PROBE_MS the pool
   * opens no other: requests queue here, in order, for the connections the app serves. An app
   * server that is busy leaves a new connection in its listen queue while it serves the ones it
   * has (Puma accepts only when a thread is idle; its threads wait on a keep-alive connection for
   * its next request, which a busy pool sends at once), and a request sent on it waited until the
   * load dropped, or the read timeout's 504: after a restart under load the pool opened its 32
   * connections at once for the released requests, the app accepted a few, and 21 requests waited
   * 60 s (test/integration/hold-app-servers.test.ts). One probe at a time, the pool grows as fast
   * as the app answers on new connections, and stops growing when the app stops accepting.
   */
  private readonly unproven: Conn[] = [];
  private growTimer: NodeJS.Timeout | null = null;
  private readonly idle: Conn[] = [];
  private readonly queue: Job[] = [];
  private closing = false;
  private destroyed = false;
  private closedWaiters: (() => void)[] = [];
  private sweeper: NodeJS.Timeout | null = null;

  readonly traits: AppTraits;

  constructor(readonly options: NativePoolOptions) {
    // Unknown: taken as keeping connections alive, the case that needs the care.
    this.traits = options.traits ?? { closedRun: 0 };
  }

  dispatch(req: UpstreamRequest, handler: UpstreamHandler): boolean {
    const job = new Job(this, req, handler);
    if (this.destroyed || this.closing) {
      process.nextTick(() => this.failJob(job, new UpstreamError(this.destroyed ? 'UND_ERR_DESTROYED' : 'UND_ERR_CLOSED', 'the upstream pool is closed')));
      return false;
    }
    const conn = this.idle.pop();
    if (conn !== undefined) conn.start(job);
    else if (this.queue.length === 0 && this.mayGrow()) this.open(job);
    else this.queue.push(job);
    return true;
  }

  /** Whether a new connection may open: below the bound, and no recent one unanswered (`unproven`). */
  private mayGrow(): boolean {
    if (this.conns.size >= this.options.connections) return false;
    // An app that closes every connection after its answer (Unicorn) accepts new ones as it can
    // serve them: every connection there is new, and none is kept busy over the others.
    if (this.unproven.length === 0 || this.traits.closedRun >= CLOSED_RUN) return true;
    const youngest = (this.unproven[this.unproven.length - 1] as Conn).openedAt;
    const wait = youngest + PROBE_MS - performance.now();
    if (wait <= 0) return true;
    if (this.growTimer === null) {
      this.growTimer = setTimeout(() => {
        this.growTimer = null;
        this.flush();
      }, wait + 1);
      this.growTimer.unref();
    }
    return false;
  }

  /** The app answered on a new connection: the pool may grow again. */
  proven(conn: Conn): void {
    conn.proven = true;
    this.unprove(conn);
  }

  private unprove(conn: Conn): void {
    const i = this.unproven.indexOf(conn);
    if (i === -1) return;
    this.unproven.splice(i, 1);
    if (this.queue.length > 0) queueMicrotask(() => this.flush());
  }

  /** Queued requests onto new connections, while the pool may grow. */
  private flush(): void {
    while (this.queue.length > 0 && !this.destroyed && this.mayGrow()) this.open(this.queue.shift() as Job);
  }

  get stats(): PoolStats {
    let connected = 0;
    let running = 0;
    for (const c of this.conns) {
      if (c.ready) connected++;
      if (c.job !== null) running++;
    }
    return { connected, free: this.idle.length, pending: this.queue.length, running };
  }

  private open(job: Job): void {
    // Every new connection first checks the socket is the app server's (socket-identity.ts).
    const bad = checkSocket(this.options.socketPath, this.options.socketCheck);
    if (bad) {
      process.nextTick(() => this.failJob(job, bad));
      return;
    }
    const conn = new Conn(this, job);
    this.conns.add(conn);
    this.unproven.push(conn);
  }

  /** A connection is free: the next queued request takes it, else it waits idle. */
  release(conn: Conn): void {
    if (conn.closed) return;
    const next = this.queue.shift();
    if (next !== undefined) {
      conn.start(next);
      return;
    }
    if (this.closing || this.destroyed) {
      conn.destroy();
      return;
    }
    conn.idleSince = performance.now();
    this.idle.push(conn);
    this.sweep();
  }

  /** Closes idle connections past their keep-alive time; runs only while some are idle. */
  private sweep(): void {
    if (this.sweeper !== null) return;
    const period = Math.max(50, Math.min(1000, Math.floor(this.options.keepAliveTimeout / 4)));
    this.sweeper = setInterval(() => {
      const now = performance.now();
      for (let i = this.idle.length - 1; i >= 0; i--) {
        const c = this.idle[i] as Conn;
        // A period early rather than late: the app must not close it first (then a request on it
        // is reset and must be replayed).
        if (now - c.idleSince + period >= c.idleLimit) c.destroy();
      }
      if (this.idle.length === 0 && this.sweeper !== null) {
        clearInterval(this.sweeper);
        this.sweeper = null;
      }
    }, period);
    this.sweeper.unref();
  }

  /** A connection is gone (or going): out of every list; a queued request may open a new one. */
  forget(conn: Conn): void {
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    if (!this.conns.delete(conn)) return;
    if (!conn.proven) this.unprove(conn);
    if (this.queue.length > 0) this.flush();
    if (this.conns.size === 0 && this.closedWaiters.length > 0 && this.queue.length === 0) {
      for (const w of this.closedWaiters.splice(0)) w();
    }
  }

  /** Ends `job` with `err`: its connection (if any) is closed, the handler told once. */
  failJob(job: Job, err: Error): void {
    if (job.over) return;
    job.over = true;
    job.stopBody?.();
    const conn = job.conn;
    if (conn !== null) {
      if (conn.job === job) conn.job = null;
      conn.destroy(err);
    } else {
      const i = this.queue.indexOf(job);
      if (i !== -1) this.queue.splice(i, 1);
    }
    job.handler.onError(err);
  }

  close(): Promise<void> {
    this.closing = true;
    for (const c of this.idle.splice(0)) c.destroy();
    if (this.conns.size === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.closedWaiters.push(resolve));
  }

  destroy(): Promise<void> {
    this.destroyed = true;
    this.closing = true;
    const err = new UpstreamError('UND_ERR_DESTROYED', 'the upstream pool was destroyed');
    for (const job of this.queue.splice(0)) this.failJob(job, err);
    for (const c of [...this.conns]) {
      const job = c.job;
      if (job !== null) this.failJob(job, err);
      else c.destroy();
    }
    this.idle.length = 0;
    for (const w of this.closedWaiters.splice(0)) w();
    return Promise.resolve();
  }
}
