/**
 * One request forwarded upstream with undici's low-level `dispatch` (no promise, no intermediate
 * stream): the client request is the upload body, response chunks are written to the client as they
 * arrive, and backpressure runs both ways (a client that reads slowly pauses the upstream socket).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { buildConnector, Pool } from 'undici';
import { NativePool, type NativePoolOptions, type UpstreamPool, type UpstreamRequest } from './upstream.js';
import { checkSocket } from './socket-identity.js';
import { GatewayError, toGatewayError } from './errors.js';
import { DOWN_CODES, type Admission, type Waiter } from './gate.js';
import { downstreamHeaders, peerAddress } from './headers.js';
import { flatGetter, GzipWriter, gzipHeaders, gzipPlan, type GzipRule } from './gzip.js';

/** The pool's options (upstream.ts), and which client runs them. */
export interface UpstreamOptions extends NativePoolOptions {
  /** `native` (upstream.ts, Node's C parser) or `undici`. */
  client: 'native' | 'undici';
}

export function createUpstreamPool(o: UpstreamOptions): UpstreamPool {
  if (o.client === 'native') return new NativePool(o);
  const connect = buildConnector({ socketPath: o.socketPath, timeout: o.connectTimeout });
  return new Pool('http://localhost', {
    socketPath: o.socketPath,
    connections: o.connections,
    // Every new upstream connection first checks the socket is the app server's (socket-identity.ts).
    connect: (opts, callback) => {
      const bad = checkSocket(o.socketPath, o.socketCheck);
      if (bad) {
        callback(bad, null);
        return;
      }
      connect(opts, callback);
    },
    // No pipelining: a response that fails would take the requests queued behind it down too.
    pipelining: 1,
    keepAliveTimeout: o.keepAliveTimeout,
    keepAliveMaxTimeout: o.keepAliveTimeout,
    headersTimeout: o.readTimeout,
    bodyTimeout: o.readTimeout,
    strictContentLength: true,
  }) as unknown as UpstreamPool;
}

export interface ExchangeResult {
  status: number;
  bytesSent: number;
  upstreamTime: number | undefined;
  error: GatewayError | undefined;
}

/** What the exchange needs from its owner: where to report the outcome and how to answer errors. */
export interface ExchangeOwner {
  finish(req: IncomingMessage, res: ServerResponse, result: ExchangeResult, started: number): void;
  /** Answers `err`; returns the body bytes sent (the error page), for the access log. */
  fail(req: IncomingMessage, res: ServerResponse, err: GatewayError): number;
  /** A graceful stop has begun. */
  readonly stopping: boolean;
  /** The upstream pool to send through now. */
  readonly dispatcher: UpstreamPool;
  /** The app server cannot accept (or the gate is paused): offer the exchange to the gate. */
  hold(exchange: Exchange, upstreamDown: boolean, cause?: Error): Admission;
  /** A held exchange's client went away (499), or the gate answered it (503). */
  unhold(exchange: Exchange): void;
  /** Counts a replay. */
  replayed(): void;
  /**
   * nginx's proxy_intercept_errors: how to answer instead of the app's response with `status` (the
   * location's error_page), or undefined to pass the app's response on.
   */
  intercept?(req: IncomingMessage, status: number): ((res: ServerResponse) => { status: number; bytes: number }) | undefined;
}

/** `first`, then what `rest` still has. */
async function* prepend(first: Buffer, rest: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  yield first;
  for await (const chunk of rest) yield chunk;
}

/**
 * A legacy-style undici handler: undici calls these directly, with raw header buffers. It is also
 * the gate's Waiter: a held exchange is released (dispatched) or expired (503) by the gate.
 */
export class Exchange implements Waiter {
  private abortUpstream: ((err: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;
  private status = 0;
  private bytesSent = 0;
  private upstreamTime: number | undefined;
  private done = false;
  private dispatchedAt = 0;
  private opts: UpstreamRequest | undefined;
  private retried = false;
  /** Attempts the app server reset with our bytes unread (replayBody): they do not use up the replay. */
  private unreadResets = 0;
  /** undici called onConnect for the current attempt: it began writing it to a socket. */
  private connected = false;
  /** The request waited in the gate at some point (access log `held`). */
  wasHeld = false;
  /** Waiting in the gate now. */
  private holding = false;
  /** Body chunks kept for a replay, while they fit in the replay buffer. */
  private kept: Buffer[] | undefined;
  private keptBytes = 0;
  private keepLimit = 0;
  /** The tee: 'running' once undici pulls the body, 'done' once all of it passed (and was kept). */
  private teeState: 'idle' | 'running' | 'done' = 'idle';
  readonly arrived: number;
  private headBytes = -1;
  /**
   * The app server's response head, not yet handed to the client: it goes with the first body
   * chunk or the end (Node sends a head with its first body bytes anyway, so nothing waits longer).
   * Until then the app can still die and the client gets a clean answer, not a truncated one.
   */
  private head: { text: string; headers: string[] } | undefined;
  /** The app's response is replaced by an error page (intercept); its body is read and dropped. */
  private intercepted: ((res: ServerResponse) => { status: number; bytes: number }) | undefined;
  /** The response body is being compressed (gzip.ts). */
  private gzip: GzipWriter | undefined;
  /**
   * The client address, read now: once a response with a fully read body ends, Node detaches the
   * socket and `req.socket` is null (a POST was never access-logged because of it).
   */
  readonly peer: string;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly owner: ExchangeOwner,
    private readonly started: number,
    /** Methods that may be sent again after the app server died with the request in flight. */
    private readonly replayMethods: ReadonlySet<string>,
    /** The location's gzip (an nginx.conf's); none: responses pass as the app sent them. */
    private readonly gzipRule: GzipRule | null = null,
  ) {
    this.onClientGone = this.onClientGone.bind(this);
    this.arrived = started;
    this.peer = peerAddress(req.socket.remoteAddress);
    // One listener covers both ends: a client gone before we finished aborts the upstream request.
    // `on`, not `once`: a response closes once, and once's wrapper is an allocation per request.
    res.on('close', this.onClientGone);
  }

  /** Waiter: what a held request keeps in memory, its head (the body stays in the client's TCP
   * buffers). Computed only for requests that are held: the common path never pays for it. */
  get bytes(): number {
    if (this.headBytes < 0) {
      let bytes = 64 + (this.req.url?.length ?? 0);
      for (const h of this.req.rawHeaders) bytes += h.length + 2;
      this.headBytes = bytes;
    }
    return this.headBytes;
  }

  private onClientGone(): void {
    if (this.done) return;
    if (this.holding) {
      // Nothing was sent upstream for it, and nothing will be.
      this.holding = false;
      this.done = true;
      this.owner.unhold(this);
      this.owner.finish(this.req, this.res, { status: 499, bytesSent: 0, upstreamTime: undefined, error: new GatewayError('GW_ERR_CLIENT_ABORTED') }, this.started);
      // A client that half-closed waits for nothing now: the connection closes, as nginx's does
      // after a 499 (it stayed open, unanswered, until the client closed its side).
      this.res.destroy();
      return;
    }
    this.abort(new GatewayError('GW_ERR_CLIENT_ABORTED'));
  }

  /** Waits in the gate before the first dispatch (the gate is closed or paused). */
  hold(opts: UpstreamRequest): void {
    this.opts = opts;
    this.park('closed');
  }

  private park(reason: 'closed' | 'down', cause?: Error): void {
    this.holding = true;
    this.wasHeld = true;
    // A client that gives up while held closes its socket: its FIN drops it from the queue (nginx
    // answers 499 the same way while it waits on an upstream). Only bodiless requests let the
    // parser see the FIN; a held request with a body is dropped when its socket closes.
    this.req.socket.once('end', this.onClientGone);
    const admission = this.owner.hold(this, reason === 'down', cause);
    if (admission === 'held') return;
    this.holding = false;
    this.req.socket.off('end', this.onClientGone);
    if (admission === 'overflow') this.expire();
    // Holding is off: go now (and get nginx's 502 if the app is still down).
    else if (reason === 'closed') this.start(this.opts as UpstreamRequest);
  }

  /** Waiter: the gate lets it go on. */
  release(): void {
    this.holding = false;
    this.req.socket.off('end', this.onClientGone);
    if (this.done || this.res.destroyed) return;
    this.start(this.opts as UpstreamRequest);
  }

  /** Waiter: held past a bound; the owner answers 503 through unhold/fail. */
  expire(): void {
    this.holding = false;
    this.req.socket.off('end', this.onClientGone);
    if (this.done) return;
    this.done = true;
    this.owner.unhold(this);
    const err = new GatewayError('GW_ERR_HOLD_EXPIRED');
    const bytes = this.owner.fail(this.req, this.res, err);
    this.owner.finish(this.req, this.res, { status: err.status, bytesSent: bytes, upstreamTime: undefined, error: err }, this.started);
  }

  /**
   * Keeps body chunks as they are sent, up to `limit` bytes, so a request whose app server died
   * after receiving it can be sent again. Returns the body to dispatch.
   */
  keepBody(body: AsyncIterable<Buffer> | NodeJS.ReadableStream, limit: number): AsyncIterable<Buffer> | NodeJS.ReadableStream {
    if (limit <= 0 || !this.replayMethods.has(this.req.method as string)) return body;
    this.kept = [];
    this.keepLimit = limit;
    return this.tee(body as AsyncIterable<Buffer>);
  }

  private async *tee(body: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
    this.teeState = 'running';
    for await (const chunk of body) {
      if (this.kept) {
        this.keptBytes += chunk.length;
        if (this.keptBytes > this.keepLimit) this.kept = undefined;
        else this.kept.push(chunk);
      }
      yield chunk;
    }
    this.teeState = 'done';
  }

  private pendingAbort: Error | undefined;

  start(opts: UpstreamRequest): void {
    this.opts = opts;
    this.connected = false;
    this.dispatchedAt = performance.now();
    // The owner's current pool: pools are replaced when the app server is (recyclePool).
    this.owner.dispatcher.dispatch(opts, this);
  }

  /**
   * The connection closed before any response byte: a pooled connection the app server closed as
   * we reused it, or an app server that died with the request in flight. We cannot tell which, so
   * the request is sent again once (unread resets aside, below) only when that is safe: a
   * replayable method (RFC 9110 9.2.2 idempotent ones by default; never POST) and a body that was
   * empty or fully kept. The new attempt goes through the gate: if the app is down, it waits there.
   */
  private replayBody(err: Error): UpstreamRequest['body'] | false {
    if (this.status !== 0 || this.res.destroyed || !this.opts) return false;
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'UND_ERR_SOCKET' && code !== 'ECONNRESET' && code !== 'EPIPE') return false;
    if (!this.replayMethods.has(this.opts.method)) return false;
    // Once for an attempt the app server may have read: it closed the connection cleanly
    // (UND_ERR_SOCKET). A reset (ECONNRESET, EPIPE) on a Unix socket means it closed its end with
    // our bytes unread, e.g. a connection still queued on the listener of a server being SIGKILLed:
    // a replay sent at once can reach that same dying server, and was answered 502
    // (hold-app-servers.test.ts, Unicorn). Such attempts do not use up the replay; three at most.
    if (code === 'UND_ERR_SOCKET' ? this.retried : this.unreadResets >= 3) return false;
    const body = this.opts.body;
    // No body, or the kept body of an earlier replay.
    if (body == null || Buffer.isBuffer(body)) return body ?? null;
    // The whole body must have passed through the tee. `req.complete` is not enough: the client
    // may have sent all of it before undici pulled any, and a replay of `kept` then sent a PUT with
    // an empty body (hold-app-servers.test.ts, Unicorn cold restart).
    if (!this.kept || this.teeState !== 'done') return false;
    return Buffer.concat(this.kept, this.keptBytes);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.connected = true;
    this.abortUpstream = abort as (err: Error) => void;
    if (this.pendingAbort) abort(this.pendingAbort);
    else if (this.res.destroyed) abort(new GatewayError('GW_ERR_CLIENT_ABORTED'));
  }

  /** Ends the upstream request with `err`, which then takes the normal error path (onError). */
  abort(err: GatewayError): void {
    if (this.done) return;
    if (this.abortUpstream) this.abortUpstream(err);
    else this.pendingAbort = err;
  }

  onHeaders(statusCode: number, rawHeaders: (Buffer | string)[], resume: () => void, statusText: string): boolean {
    // 1xx from the app: 100 Continue was already answered by us; others carry nothing we forward.
    if (statusCode < 200) return true;
    this.upstreamTime = performance.now() - this.dispatchedAt;
    this.status = statusCode;
    this.resumeUpstream = resume;
    if (this.res.destroyed) return false;
    this.intercepted = statusCode >= 300 ? this.owner.intercept?.(this.req, statusCode) : undefined;
    if (this.intercepted) return true;
    this.head = { text: statusText, headers: downstreamHeaders(rawHeaders) };
    return true;
  }

  /** The intercepted response is over (or failed): the error page answers, the request is done. */
  private answerIntercepted(answer: (res: ServerResponse) => { status: number; bytes: number }): void {
    this.done = true;
    this.intercepted = undefined;
    const r = answer(this.res);
    this.owner.finish(this.req, this.res, { status: r.status, bytesSent: r.bytes, upstreamTime: this.upstreamTime, error: undefined }, this.started);
  }

  /** Hands the app server's head to the client (with the first body chunk or the end). */
  private writeHead(): void {
    const head = this.head as { text: string; headers: string[] };
    this.head = undefined;
    // A request in flight when the stop began answers with Connection: close (docs/proxy.md), so
    // the client does not send its next request on a connection we are about to close.
    if (this.owner.stopping) this.res.shouldKeepAlive = false;
    // The app answers before the client's body is all read (an early 401 or 413): what is still
    // coming is not read, so the connection closes after this response, never parsing those bytes
    // as a next request.
    else if (!this.req.complete) this.res.shouldKeepAlive = false;
    let headers = head.headers;
    if (this.gzipRule) {
      const plan = gzipPlan(this.gzipRule, this.req, this.status, flatGetter(headers));
      headers = gzipHeaders(headers, plan, this.gzipRule);
      if (plan === 'gzip') this.gzip = new GzipWriter(this.res, this.gzipRule.level, this.drainHandler, (n) => (this.bytesSent += n));
    }
    this.res.writeHead(this.status, head.text || undefined, headers);
  }

  onData(chunk: Buffer): boolean {
    if (this.intercepted) return true;
    if (this.head) this.writeHead();
    if (this.gzip) {
      // Counted as compressed bytes reach the client; false pauses the app until zlib drains.
      return this.gzip.write(chunk);
    }
    this.bytesSent += chunk.length;
    const ok = this.res.write(chunk);
    if (!ok) this.res.once('drain', this.drainHandler);
    return ok;
  }

  onComplete(trailers: string[] | Buffer[] | null): void {
    if (this.intercepted) return this.answerIntercepted(this.intercepted);
    this.done = true;
    if (this.head) this.writeHead();
    const gzip = this.gzip;
    if (gzip) {
      // Trailers are dropped: nginx's gzip filter does not pass them either. finish() runs once,
      // when zlib has flushed its last bytes or the client went away first.
      let over = false;
      const end = () => {
        if (over) return;
        over = true;
        this.owner.finish(this.req, this.res, { status: this.status, bytesSent: this.bytesSent, upstreamTime: this.upstreamTime, error: undefined }, this.started);
      };
      this.res.once('close', () => {
        gzip.destroy();
        end();
      });
      gzip.end(end);
      return;
    }
    if (trailers && trailers.length > 0) {
      const t: Record<string, string> = {};
      for (let i = 0; i < trailers.length; i += 2) t[String(trailers[i])] = String(trailers[i + 1]);
      this.res.addTrailers(t);
    }
    this.res.end();
    this.owner.finish(this.req, this.res, { status: this.status, bytesSent: this.bytesSent, upstreamTime: this.upstreamTime, error: undefined }, this.started);
  }

  onError(err: Error): void {
    if (this.done) return;
    this.abortUpstream = undefined;
    this.gzip?.destroy();
    // The app failed while its intercepted error body was dropped: the page answers all the same.
    if (this.intercepted && !this.res.destroyed) return this.answerIntercepted(this.intercepted);
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (this.head) {
      // The app server died between its head and its body (Unicorn writes them apart): the client
      // has seen nothing, so this is a failure before the response, replayed or answered 502 cleanly
      // rather than a truncated response (hold-app-servers.test.ts, SIGKILL under load).
      this.head = undefined;
      this.status = 0;
    }
    // The connection was reset before undici wrote anything of this attempt (it calls onConnect
    // right before writing): e.g. connected into the accept queue of a listener that then closed.
    // Nothing was sent, POST included; it was answered 502 (hold-app-servers.test.ts, Unicorn cold
    // restart). Counted with the unread resets, so a server resetting every connection ends in 502.
    // The native client also says so when writing the head itself failed (`requestNotSent`: the
    // app had closed a pooled connection as it was reused; Puma's USR2 closes them all).
    const unsent = !this.connected || (err as { requestNotSent?: boolean }).requestNotSent === true;
    const notWritten = unsent && (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET') && this.unreadResets < 3;
    if (notWritten) {
      this.unreadResets++;
      // A streamed body whose first write failed: its first chunk comes back, the rest is unread.
      const first = (err as { unsentFirst?: Buffer }).unsentFirst;
      if (first && this.opts?.body != null) this.opts = { ...this.opts, body: prepend(first, this.opts.body as AsyncIterable<Buffer>) };
    }
    // Connecting failed: nothing was sent, so any method may wait for the app server to return.
    if (this.status === 0 && (DOWN_CODES.has(code) || notWritten) && !this.res.destroyed) {
      this.park('down', err);
      if (this.holding || this.done) return;
    }
    const replay = this.replayBody(err);
    if (replay !== false) {
      if (code === 'UND_ERR_SOCKET') this.retried = true;
      else this.unreadResets++;
      this.owner.replayed();
      this.start({ ...(this.opts as UpstreamRequest), body: replay });
      return;
    }
    this.done = true;
    // A client that went away shows up as a body stream error; it is not the upstream's fault.
    const gw = this.res.destroyed && !(err instanceof GatewayError) ? new GatewayError('GW_ERR_CLIENT_ABORTED', undefined, { cause: err }) : toGatewayError(err);
    if (this.res.headersSent) {
      // The body already started: end the connection abruptly so the client sees a truncated
      // response (no final chunk, short Content-Length), never a clean end.
      this.res.destroy(gw);
    } else if (gw.code !== 'GW_ERR_CLIENT_ABORTED') {
      // The error page is the answer, and the request is over: finish() must still run, or the
      // 502/504/413/408 is never logged and graceful stop waits its full timeout for a request
      // that will never end (test/integration/graceful-stop.test.ts, access-log.test.ts).
      const bytes = this.owner.fail(this.req, this.res, gw);
      this.owner.finish(this.req, this.res, { status: gw.status, bytesSent: bytes, upstreamTime: this.upstreamTime, error: gw }, this.started);
      return;
    }
    const status = this.res.headersSent ? this.status : gw.status;
    this.owner.finish(this.req, this.res, { status, bytesSent: this.bytesSent, upstreamTime: this.upstreamTime, error: gw }, this.started);
  }

  private drainFn: (() => void) | undefined;

  /** Resumes the upstream once the client drained; made on first use (most responses never wait). */
  private get drainHandler(): () => void {
    return (this.drainFn ??= () => this.resumeUpstream?.());
  }
}
