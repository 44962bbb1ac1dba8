/**
 * One request forwarded upstream with undici's low-level `dispatch` (no promise, no intermediate
 * stream): the client request is the upload body, response chunks are written to the client as they
 * arrive, and backpressure runs both ways (a client that reads slowly pauses the upstream socket).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { GatewayError, toGatewayError } from './errors.js';
import { downstreamHeaders } from './headers.js';

export interface UpstreamOptions {
  socketPath: string;
  connections: number;
  keepAliveTimeout: number;
  connectTimeout: number;
  readTimeout: number;
}

export function createUpstreamPool(o: UpstreamOptions): Pool {
  return new Pool('http://localhost', {
    socketPath: o.socketPath,
    connections: o.connections,
    // No pipelining: a response that fails would take the requests queued behind it down too.
    pipelining: 1,
    keepAliveTimeout: o.keepAliveTimeout,
    keepAliveMaxTimeout: o.keepAliveTimeout,
    connect: { timeout: o.connectTimeout },
    headersTimeout: o.readTimeout,
    bodyTimeout: o.readTimeout,
    strictContentLength: true,
  });
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

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
}

/** A legacy-style undici handler: undici calls these directly, with raw header buffers. */
export class Exchange implements Dispatcher.DispatchHandler {
  private abortUpstream: ((err: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;
  private status = 0;
  private bytesSent = 0;
  private upstreamTime: number | undefined;
  private done = false;
  private dispatchedAt = 0;
  private opts: Dispatcher.DispatchOptions | undefined;
  private retried = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly owner: ExchangeOwner,
    private readonly started: number,
    private readonly dispatcher: Dispatcher,
  ) {
    this.onDrain = this.onDrain.bind(this);
    // One listener covers both ends: a client gone before we finished aborts the upstream request.
    res.once('close', () => {
      if (!this.done) this.abort(new GatewayError('GW_ERR_CLIENT_ABORTED'));
    });
  }

  private pendingAbort: Error | undefined;

  start(opts: Dispatcher.DispatchOptions): void {
    this.opts = opts;
    this.dispatchedAt = performance.now();
    this.dispatcher.dispatch(opts, this);
  }

  /**
   * A pooled keep-alive connection the app server closed just as we reused it fails before any
   * response byte: the request did not reach the app. Sent again once, on a fresh connection, when
   * that is safe: an idempotent method (RFC 9110 9.2.2) and no request body.
   */
  private retryable(err: Error): boolean {
    if (this.retried || this.status !== 0 || this.res.destroyed || !this.opts || this.opts.body != null) return false;
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'UND_ERR_SOCKET' && code !== 'ECONNRESET' && code !== 'EPIPE') return false;
    return IDEMPOTENT.has(this.opts.method);
  }

  onConnect(abort: (err?: Error) => void): void {
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

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    // 1xx from the app: 100 Continue was already answered by us; others carry nothing we forward.
    if (statusCode < 200) return true;
    this.upstreamTime = performance.now() - this.dispatchedAt;
    this.status = statusCode;
    this.resumeUpstream = resume;
    if (this.res.destroyed) return false;
    // A request in flight when the stop began answers with Connection: close (docs/proxy.md), so
    // the client does not send its next request on a connection we are about to close.
    if (this.owner.stopping) this.res.shouldKeepAlive = false;
    this.res.writeHead(statusCode, statusText || undefined, downstreamHeaders(rawHeaders));
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.bytesSent += chunk.length;
    const ok = this.res.write(chunk);
    if (!ok) this.res.once('drain', this.onDrain);
    return ok;
  }

  onComplete(trailers: string[] | Buffer[] | null): void {
    this.done = true;
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
    if (this.retryable(err)) {
      this.retried = true;
      this.abortUpstream = undefined;
      this.start(this.opts as Dispatcher.DispatchOptions);
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

  private onDrain(): void {
    this.resumeUpstream?.();
  }
}
