/**
 * The public listeners and what happens to each request on them: refusal of what a front door must
 * refuse, limits and deadlines with nginx-like defaults, forwarding, the access log, graceful stop.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import type { UpstreamPool, UpstreamRequest } from './upstream.js';
import type { GatewayConfig } from '../config/schema.js';
import { formatHostPort } from '../config/address.js';
import type { Logger } from '../log/logger.js';
import type { AccessLog } from './access-log.js';
import { GatewayError } from './errors.js';
import { createUpstreamPool, Exchange, type ExchangeOwner, type ExchangeResult, type UpstreamOptions } from './forward.js';
import { DOWN_CODES, Gate, type Admission, type Waiter } from './gate.js';
import { checkRequest, connectionClient, forwardContext, peerAddress, resolveClient, TrustedProxies, upstreamHeaders, type Client, type ForwardContext } from './headers.js';
import { acceptProxyProtocol } from './proxy-protocol.js';
import { sendError, sendRawError } from './respond.js';
import { FOREIGN_SOCKET } from './socket-identity.js';
import type { GatewayMetrics, RefusalReason } from '../metrics/metrics.js';
import { answerReturn, serveStatic } from './static.js';
import { sendErrorPage, type Site, type SiteLocation } from './site.js';
import { escapeUri, route } from './rewrite.js';
import { applyProxySetHeader } from './proxy-set-header.js';
import { UpgradeProxy } from './upgrade.js';
import { FastConnection, type FastLimits, type FastOwner } from './fast-connection.js';
import { FAST_REQUESTS, type FastRequest } from './fast-request.js';
import { FastResponse } from './fast-response.js';

/** In a graceful stop, how long an idle keep-alive connection may still bring one last request. */
const IDLE_GRACE_MS = 1000;

export class BindError extends Error {
  readonly code = 'GW_ERR_BIND';
}

/**
 * The request and response classes of the public listeners: the gateway's per-request fields are
 * declared here, so every request has one shape (fields added later made Node's objects change
 * shape per request, which costs on the hot path).
 */
class GatewayRequest extends http.IncomingMessage {
  /** nginx's $remote_addr after realip, read at arrival: the socket is gone when the access log is written. */
  client: Client | undefined = undefined;
  /** The nginx.conf location the request was routed to (its error pages, limit, headers, gzip). */
  location: SiteLocation | undefined = undefined;
}
class GatewayResponse extends http.ServerResponse<GatewayRequest> {
  exchange: Exchange | undefined = undefined;
}
type ClientRequest = GatewayRequest;
type LocatedRequest = GatewayRequest;
type TrackedResponse = GatewayResponse;

export class ProxyServer implements ExchangeOwner {
  private pool: UpstreamPool;
  private readonly metrics: GatewayMetrics | undefined;
  private site: Site | undefined;
  /** Client connections open now, on all listeners. */
  connections = 0;
  /** The same connections, cut at the end of a stop (Node's closeAllConnections misses those closing). */
  private readonly sockets = new Set<Socket>();
  private upstreamOptions: UpstreamOptions;
  private drainWaiters: (() => void)[] = [];
  private lastForeignLog = 0;
  /** Connections open per peer address, while maxConnectionsPerClient is set. */
  private readonly perClient = new Map<string, number>();
  /** Peers not held to maxConnectionsPerClient (connectionLimitExempt). */
  private exempt: TrustedProxies;
  private lastRefusalLog = 0;
  private refusedSinceLog = 0;
  private readonly servers: http.Server[] = [];
  /** Connections on the fast path (fast-connection.ts), closed when idle at the end of a graceful stop's grace. */
  private readonly fastConnections = new Set<FastConnection>();
  private ctx: ForwardContext;
  private readonly upgrades: UpgradeProxy;
  readonly gate: Gate;
  private replayMethods: ReadonlySet<string>;
  private holdPage: Buffer | undefined;
  private retryAfter: Record<string, string>;
  private active = 0;
  /** ExchangeOwner: a graceful stop has begun. */
  stopping = false;
  private drained: (() => void) | undefined;

  constructor(
    private config: GatewayConfig,
    private readonly log: Logger,
    private readonly accessLog: AccessLog,
    opts: {
      /** The 503 page of the gate (holdPage), read once at start. */
      holdPage?: Buffer;
      /** Who may own the upstream socket (socket-identity.ts); empty: anyone. */
      socketOwners?: number[];
      metrics?: GatewayMetrics;
      /** An nginx.conf's server and locations (site.ts); none: everything is proxied as configured. */
      site?: Site;
    } = {},
  ) {
    const holdPage = opts.holdPage;
    this.metrics = opts.metrics;
    this.site = opts.site;
    const socketCheck = { allowedUids: opts.socketOwners ?? [] };
    this.upstreamOptions = {
      client: config.upstreamClient,
      socketPath: config.upstream,
      connections: config.upstreamConnections,
      keepAliveTimeout: config.upstreamKeepaliveTimeout,
      connectTimeout: config.proxyConnectTimeout,
      readTimeout: config.proxyReadTimeout,
      socketCheck,
      traits: { closedRun: 0 },
    };
    this.pool = createUpstreamPool(this.upstreamOptions);
    this.ctx = forwardContext(config);
    this.exempt = new TrustedProxies(config.connectionLimitExempt);
    this.upgrades = new UpgradeProxy(config.upstream, log.child({ component: 'upgrade' }));
    this.gate = new Gate({
      socketPath: config.upstream,
      holdTimeout: config.holdTimeout,
      maxRequests: config.holdMaxRequests,
      maxBytes: config.holdMaxBytes,
      socketCheck,
      onForeign: (err) => this.foreignSocket(err),
      onRelease: (ms) => this.metrics?.held(ms / 1000),
    });
    if (this.metrics) {
      const m = this.metrics;
      this.upgrades.onSession = () => m.websocket();
    }
    this.gate.onChange = (event) => {
      if (event === 'down') this.log.warn({ upstream: config.upstream }, 'app server not accepting; holding requests');
      else if (event === 'up') this.log.info({ upstream: config.upstream, held: this.gate.depth }, 'app server accepting; releasing held requests');
      else this.log.info({ held: this.gate.depth }, `gate ${event}`);
    };
    this.replayMethods = new Set(config.replayMethods);
    this.holdPage = holdPage;
    this.retryAfter = { 'Retry-After': String(Math.max(1, Math.ceil(config.holdRetryAfter / 1000))) };
  }

  /**
   * Binds every listener; on failure closes those already bound and throws one clear line. A
   * listener handed over by the previous gateway (USR2, upgrade.ts) is taken from its descriptor.
   */
  async listen(inherited: { host: string; port: number; fd: number }[] = []): Promise<AddressInfo[]> {
    const out: AddressInfo[] = [];
    try {
      for (const hp of this.config.listen) {
        const server = this.createServer(hp.proxyProtocol);
        this.servers.push(server);
        const fd = inherited.find((l) => l.host === hp.host && l.port === hp.port)?.fd;
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          // An IPv6 address binds IPv6 only, as nginx's default ipv6only=on: `listen 80; listen [::]:80;`
          // is the usual pair, and a dual-stack [::] would take port 80 from the IPv4 listener.
          server.listen(fd !== undefined ? { fd, backlog: 1024 } : { host: hp.host, port: hp.port, backlog: 1024, ipv6Only: hp.host.includes(':') }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        out.push(server.address() as AddressInfo);
      }
    } catch (err) {
      for (const s of this.servers) s.close();
      const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
      const where = formatHostPort({ host: e.address ?? '?', port: e.port ?? 0 });
      if (e.code === 'EACCES') {
        throw new BindError(`cannot listen on ${where}: permission denied; ports below 1024 need root (then --user NAME drops privileges), or CAP_NET_BIND_SERVICE, or --listen on a port above 1023`, { cause: err });
      }
      if (e.code === 'EADDRINUSE') throw new BindError(`cannot listen on ${where}: address already in use; stop what listens there (ss -ltnp) or choose another --listen`, { cause: err });
      throw new BindError(`cannot listen on ${where}: ${e.message}`, { cause: err });
    }
    return out;
  }

  private createServer(proxyProtocol: boolean): http.Server {
    const c = this.config;
    const server: http.Server = http.createServer({
      IncomingMessage: GatewayRequest,
      ServerResponse: GatewayResponse,
      maxHeaderSize: c.maxHeaderSize,
      requireHostHeader: true,
      headersTimeout: c.clientHeaderTimeout,
      // No whole-request deadline: a 1 GB upload may take long; pauses are what we bound.
      requestTimeout: 0,
      keepAliveTimeout: c.keepaliveTimeout,
      connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(c.clientHeaderTimeout / 4))),
      joinDuplicateHeaders: false,
    } as http.ServerOptions);
    // Before the connection counting below: it counts a connection from its accept.
    if (proxyProtocol) {
      acceptProxyProtocol(server, {
        timeout: () => this.config.clientHeaderTimeout,
        onInvalid: (peer, reason) => this.log.warn({ peer: peerAddress(peer), reason }, 'PROXY protocol header refused; connection closed'),
      });
    }
    applyServerLimits(server, c);
    // A client that half-closes after its request still gets its answer (Node drops it otherwise).
    (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    server.timeout = 0;
    // Admission at accept, ahead of Node's HTTP handling (and of the PROXY header reading): a
    // connection over a limit is closed before any of its bytes is read or parsed.
    const inner = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    const fastOwner = this.fastOwner(server, inner, c.maxHeaderSize);
    server.on('connection', (socket: Socket) => {
      const refused = this.overLimit(socket);
      if (refused) return this.refuse(socket, refused);
      this.connections++;
      this.metrics?.connection();
      this.sockets.add(socket);
      const client = this.countClient(socket);
      const fast = !proxyProtocol && fastOwner.fastPath() ? new FastConnection(socket as Socket & { destroySoon(): void }, fastOwner) : undefined;
      if (fast) this.fastConnections.add(fast);
      socket.once('close', () => {
        this.sockets.delete(socket);
        if (fast) this.fastConnections.delete(fast);
        this.connections--;
        if (client !== undefined) this.uncountClient(client);
        if (this.stopping) this.checkDrained();
      });
      if (!fast) for (const l of inner) l.call(server, socket);
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.handle(req, res));
    server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.handleContinue(req, res));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.onClientError(err, socket));
    server.on('timeout', (socket: Socket) => this.onSocketTimeout(socket));
    // An Upgrade or CONNECT pipelined behind a request still being answered takes the socket from
    // Node's HTTP server at once; it waits for the answer before it, which was lost otherwise
    // (test/fuzz/request-path.fuzz.test.ts: GET then CONNECT got only the 405).
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => afterEarlier(socket, () => this.handleUpgrade(req, socket, head)));
    server.on('connect', (req: IncomingMessage, socket: Socket) => {
      afterEarlier(socket, () => this.logRaw(socket, 405, sendRawError(socket, 405), `${req.method} ${req.url} HTTP/${req.httpVersion}`));
    });
    return server;
  }

  /**
   * What the fast path (fast-connection.ts) needs of a listener: its requests are answered by handle(),
   * as Node's are; what it does not take goes to Node's server's own connection listeners.
   */
  private fastOwner(server: http.Server, inner: ((socket: Socket) => void)[], maxHeaderSize: number): FastOwner {
    let limits: FastLimits | undefined;
    let from: GatewayConfig | undefined;
    return {
      fastPath: () => FAST_REQUESTS && this.config.clientFastPath && this.site === undefined,
      limits: () => {
        // One object per configuration, shared by the connections accepted under it.
        if (limits === undefined || from !== this.config) {
          const c = this.config;
          from = c;
          limits = { maxHeaderSize, maxHeaderCount: c.maxHeaderCount, clientHeaderTimeout: c.clientHeaderTimeout, keepaliveTimeout: c.keepaliveTimeout, sendTimeout: c.sendTimeout };
        }
        return limits;
      },
      serve: (req: FastRequest, res: FastResponse) => this.handle(req as unknown as IncomingMessage, res as unknown as ServerResponse),
      handOff: (socket: Socket) => {
        for (const l of inner) l.call(server, socket);
      },
      headerTimeout: (socket: Socket) => this.onClientError(Object.assign(new Error('request head timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket),
    };
  }

  /** Why `socket` may not be served: a connection limit it would pass; undefined when it may. */
  private overLimit(socket: Socket): RefusalReason | undefined {
    if (this.connections >= this.config.maxConnections) return 'max_connections';
    const per = this.config.maxConnectionsPerClient;
    if (per !== null && (this.perClient.get(peerAddress(socket.remoteAddress)) ?? 0) >= per && !this.exempt.has(peerAddress(socket.remoteAddress))) return 'max_connections_per_client';
    return undefined;
  }

  /** Counts an admitted connection under its peer address; returns the key to uncount, if counted. */
  private countClient(socket: Socket): string | undefined {
    if (this.config.maxConnectionsPerClient === null) return undefined;
    const key = peerAddress(socket.remoteAddress);
    this.perClient.set(key, (this.perClient.get(key) ?? 0) + 1);
    return key;
  }

  private uncountClient(key: string): void {
    const n = (this.perClient.get(key) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(key);
    else this.perClient.set(key, n);
  }

  /**
   * Closes a connection over a limit, as nginx does when worker_connections are not enough. Logged
   * at most once a second, with how many were refused since the last line: a flood must not turn
   * into a flood of log lines.
   */
  private refuse(socket: Socket, reason: RefusalReason): void {
    socket.destroy();
    this.metrics?.connectionRefused(reason);
    this.refusedSinceLog++;
    const now = Date.now();
    if (now - this.lastRefusalLog < 1000) return;
    this.log.warn({ reason, peer: peerAddress(socket.remoteAddress), refused: this.refusedSinceLog, connections: this.connections, maxConnections: this.config.maxConnections, maxConnectionsPerClient: this.config.maxConnectionsPerClient }, 'connection refused at accept: limit reached');
    this.lastRefusalLog = now;
    this.refusedSinceLog = 0;
  }

  /** `Expect: 100-continue`: refuse a too-large body before the client sends it, else invite it. */
  private handleContinue(req: IncomingMessage, res: ServerResponse): void {
    if (!this.tooLarge(req)) res.writeContinue();
    this.handle(req, res);
  }

  private tooLarge(req: IncomingMessage): boolean {
    const cl = req.headers['content-length'];
    const limit = this.site ? this.siteBodyLimit(req) : this.config.clientMaxBodySize;
    return cl !== undefined && limit > 0 && Number(cl) > limit;
  }

  /** An nginx.conf's limit is its location's: the one the path matches, before any rewrite. */
  private siteBodyLimit(req: IncomingMessage): number {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    try {
      return (this.site as Site).match(decodeURIComponent(q === -1 ? url : url.slice(0, q))).maxBodySize;
    } catch {
      return (this.site as Site).server.maxBodySize;
    }
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    // Pipelined requests one at a time, as nginx reads them: this one waits until the responses
    // before it are sent. Forwarded at once, it reached the app even when an earlier response
    // closed the connection (a 400 for `GET *`, Connection: close) and its own answer was never
    // sent (found by test/fuzz/request-path.fuzz.test.ts); the app also saw them out of order.
    if (req.socket.destroyed || req.socket.writableEnded) return;
    const earlier = (req.socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (earlier && earlier !== res) {
      // Node gives the socket to the next response before our 'finish' listener runs (this one's
      // turn may still not have come: handle checks again); after a response that closes the
      // connection it ends the socket, and this request is dropped unanswered, as by nginx.
      earlier.once('finish', () => {
        if (!req.socket.destroyed && !req.socket.writableEnded) this.handle(req, res);
      });
      return;
    }
    const started = performance.now();
    // nginx's $remote_addr after realip, read now: the socket is gone when the access log is written.
    (req as ClientRequest).client = resolveClient(req, this.ctx);
    if (this.stopping) res.shouldKeepAlive = false;
    const bad = checkRequest(req, this.config);
    if (bad) return this.reject(req, res, bad, started);
    // With an nginx.conf the limit is the location's, checked once it is chosen (handleStatic).
    if (!this.site && this.tooLarge(req)) return this.reject(req, res, new GatewayError('GW_ERR_BODY_TOO_LARGE'), started);

    let path = req.url as string;
    if (path.charCodeAt(0) !== 47 /* / */ && !(path === '*' && req.method === 'OPTIONS')) {
      // RFC 9112 3.2.2: absolute-form; its authority replaces Host.
      let url: URL | undefined;
      try {
        url = /^https?:\/\//i.test(path) ? new URL(path) : undefined;
      } catch {
        url = undefined;
      }
      if (!url) return this.reject(req, res, new GatewayError('GW_ERR_BAD_REQUEST', 'bad request target'), started);
      path = url.pathname + url.search;
      req.headers.host = url.host;
    }
    if (this.site) {
      this.handleStatic(req, res, started, path);
      return;
    }
    this.forward(req, res, started, path);
  }

  /**
   * An nginx.conf's server: its rewrites choose the location and the URI; then the location's body
   * limit, its return, its files (root/try_files) or the app, with the rewritten URI.
   */
  private handleStatic(req: IncomingMessage, res: ServerResponse, started: number, path: string): void {
    const site = this.site as Site;
    const q = path.indexOf('?');
    let uri: string;
    try {
      uri = decodeURIComponent(q === -1 ? path : path.slice(0, q));
    } catch {
      return this.reject(req, res, new GatewayError('GW_ERR_BAD_REQUEST', 'bad percent-encoding'), started);
    }
    const r = route(site, uri, q === -1 ? null : path.slice(q + 1), { requestUri: req.url as string, host: req.headers.host, scheme: this.ctx.scheme });
    (req as LocatedRequest).location = r.loc;
    if (r.kind === 'cycle') return this.reject(req, res, new GatewayError('GW_ERR_INTERNAL', 'rewrite or internal redirection cycle'), started);
    if (r.kind === 'redirect') {
      this.active++;
      const out = answerReturn(req, res, { status: r.status, text: r.location }, uri);
      return this.finish(req, res, { status: r.status, bytesSent: typeof out === 'object' && 'served' in out ? out.served : 0, upstreamTime: undefined, error: undefined }, started);
    }
    const loc = r.loc;
    const cl = req.headers['content-length'];
    if (cl !== undefined && loc.maxBodySize > 0 && Number(cl) > loc.maxBodySize) return this.reject(req, res, new GatewayError('GW_ERR_BODY_TOO_LARGE'), started);
    // nginx sends a rewritten URI escaped again; an untouched one exactly as the client wrote it.
    const target = r.changed ? escapeUri(r.uri) + (r.args ? `?${r.args}` : '') : path;
    if (!r.ret && !loc.tryFiles && (loc.proxy || loc.root === null)) return this.forward(req, res, started, target);
    this.active++;
    serveStatic(req, res, { ...loc, ret: r.ret }, r.uri).then(
      (out) => {
        if (out === 'proxy') {
          this.active--;
          // try_files' `@app` is nginx's internal redirect: the named location's proxy_set_header,
          // gzip and error pages apply from here on, not those of the location that tried the files.
          const fallback = loc.tryFiles?.[loc.tryFiles.length - 1];
          if (fallback?.startsWith('@')) (req as LocatedRequest).location = site.named?.(fallback) ?? loc;
          this.forward(req, res, started, target);
        } else if ('error' in out) {
          const a = res.headersSent ? { status: out.error, bytes: 0 } : this.errorAnswer(req, res, out.error, !req.complete);
          this.finish(req, res, { status: a.status, bytesSent: a.bytes, upstreamTime: undefined, error: undefined }, started);
        } else {
          this.finish(req, res, { status: out.status, bytesSent: out.served, upstreamTime: undefined, error: undefined }, started);
        }
      },
      (err: unknown) => {
        this.log.error({ err }, 'static file failed');
        if (!res.headersSent) sendError(res, 500, true);
        else res.destroy();
        this.finish(req, res, { status: 500, bytesSent: 0, upstreamTime: undefined, error: undefined }, started);
      },
    );
  }

  /**
   * An error the gateway answers itself: the error_page of the request's location (nginx's internal
   * redirect to it; the server's before a location is chosen), else `fallback` or the built-in page.
   */
  private errorAnswer(req: IncomingMessage, res: ServerResponse, status: number, close: boolean, extra?: Record<string, string>, fallback?: Buffer): { status: number; bytes: number } {
    const page = this.site && ((req as LocatedRequest).location ?? this.site.server).errorPages.get(status);
    if (page) return sendErrorPage(res, page, status, close, extra);
    return { status, bytes: sendError(res, status, close, extra, fallback) };
  }

  /** ExchangeOwner: nginx's proxy_intercept_errors, for a location that has it on and a page for `status`. */
  intercept(req: IncomingMessage, status: number): ((res: ServerResponse) => { status: number; bytes: number }) | undefined {
    const loc = (req as LocatedRequest).location;
    const page = loc?.interceptErrors ? loc.errorPages.get(status) : undefined;
    return page && ((res) => sendErrorPage(res, page, status, !req.complete));
  }

  private forward(req: IncomingMessage, res: ServerResponse, started: number, path: string): void {
    const loc = (req as LocatedRequest).location;
    const up = upstreamHeaders(req, this.ctx, (req as ClientRequest).client);
    // An nginx.conf location's proxy_set_header, over the gateway's own headers.
    const headers = loc && loc.setHeaders.length > 0 ? applyProxySetHeader(up.headers, loc.setHeaders, req, { remoteAddr: up.clientIp, scheme: this.ctx.scheme }) : up.headers;
    const te = req.headers['transfer-encoding'];
    const cl = req.headers['content-length'];
    const hasBody = cl !== undefined ? cl !== '0' : te !== undefined;
    const socket = req.socket;
    // Phase deadlines: nginx's client_body_timeout while the body arrives, send_timeout after (on
    // the fast path, send_timeout is set once the client pushes back: fast-connection.ts).
    if (!(res instanceof FastResponse)) {
      socket.setTimeout(hasBody && !req.complete ? this.config.clientBodyTimeout : this.config.sendTimeout);
      if (hasBody && this.config.clientBodyTimeout !== this.config.sendTimeout) {
        req.once('end', () => socket.setTimeout(this.config.sendTimeout));
      }
    }

    const exchange = new Exchange(req, res, this, started, this.replayMethods, loc?.gzip ?? null);
    (res as TrackedResponse).exchange = exchange;
    let body: NodeJS.ReadableStream | AsyncIterable<Buffer> | null = null;
    if (hasBody) {
      // A chunked body has no announced length: count it as it streams.
      const limit = loc ? loc.maxBodySize : this.config.clientMaxBodySize;
      body = cl === undefined && limit > 0 ? limitBody(req, limit, exchange) : req;
      // Small bodies of replayable requests are kept while sent (replayBufferSize).
      if (cl === undefined || Number(cl) <= this.config.replayBufferSize) body = exchange.keepBody(body, this.config.replayBufferSize);
      watchUpload(req, this.config.proxySendTimeout, exchange);
    }
    this.active++;
    const opts: UpstreamRequest = { method: req.method as string, path, headers, body: body as UpstreamRequest['body'] };
    if (this.gate.open) exchange.start(opts);
    else exchange.hold(opts);
  }

  get dispatcher(): UpstreamPool {
    return this.pool;
  }

  get poolStats(): { connected: number; free: number; pending: number; running: number } {
    return this.pool.stats;
  }

  get websocketSessions(): number {
    return this.upgrades.sessions.size;
  }

  /** Requests sent upstream and not finished (held ones are not in flight). */
  get inFlight(): number {
    return this.active - this.gate.depth;
  }

  /** Resolves true once nothing is in flight upstream, false after `timeoutMs`. */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.inFlight <= 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.drainWaiters = this.drainWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.drainWaiters.push(done);
    });
  }

  /** The listening descriptors with the addresses they were configured as, for a USR2 handover. */
  listenerFds(): { host: string; port: number; fd: number }[] {
    return this.servers.map((server, i) => ({ ...(this.config.listen[i] as { host: string; port: number }), fd: (server as unknown as { _handle: { fd: number } })._handle.fd }));
  }

  /**
   * A reload (HUP): the new configuration applies to requests that arrive from now on; those in
   * flight finish under the old one. The upstream socket and the listeners are not changed here
   * (the caller refuses such a change); upstream pool options take a fresh pool.
   */
  reconfigure(config: GatewayConfig, site: { site?: Site; holdPage?: Buffer }): void {
    const old = this.config;
    this.config = config;
    this.site = site.site;
    this.holdPage = site.holdPage;
    this.ctx = forwardContext(config);
    this.exempt = new TrustedProxies(config.connectionLimitExempt);
    this.replayMethods = new Set(config.replayMethods);
    this.retryAfter = { 'Retry-After': String(Math.max(1, Math.ceil(config.holdRetryAfter / 1000))) };
    this.gate.setBounds({ holdTimeout: config.holdTimeout, maxRequests: config.holdMaxRequests, maxBytes: config.holdMaxBytes });
    for (const server of this.servers) applyServerLimits(server, config);
    const pool = (c: GatewayConfig) => [c.upstreamClient, c.upstreamConnections, c.upstreamKeepaliveTimeout, c.proxyConnectTimeout, c.proxyReadTimeout].join();
    if (pool(old) !== pool(config)) {
      this.upstreamOptions = {
        ...this.upstreamOptions,
        client: config.upstreamClient,
        connections: config.upstreamConnections,
        keepAliveTimeout: config.upstreamKeepaliveTimeout,
        connectTimeout: config.proxyConnectTimeout,
        readTimeout: config.proxyReadTimeout,
      };
      void this.recyclePool();
    }
  }

  /**
   * A fresh pool for the next server: the idle keep-alive connections of the old one would be
   * closed under us by its exit. In-flight requests on the old pool finish there.
   */
  async recyclePool(): Promise<void> {
    const old = this.pool;
    this.pool = createUpstreamPool(this.upstreamOptions);
    void old.close().catch(() => undefined);
  }

  private foreignSocket(err: Error): void {
    const now = Date.now();
    if (now - this.lastForeignLog < 10_000) return;
    this.lastForeignLog = now;
    this.log.error({ upstream: this.config.upstream, reason: err.message }, 'upstream socket refused: not the app server');
  }

  /** ExchangeOwner: offer a request to the gate; a refusal is counted by the gate. */
  hold(exchange: Exchange, upstreamDown: boolean, cause?: Error): Admission {
    if (cause) {
      const code = (cause as NodeJS.ErrnoException).code ?? '';
      this.metrics?.connectError(code);
      if (code === FOREIGN_SOCKET) this.foreignSocket(cause);
    }
    if (upstreamDown) this.gate.upstreamDown();
    return this.gate.hold(exchange);
  }

  unhold(exchange: Exchange): void {
    this.gate.cancel(exchange);
  }

  replayed(): void {
    this.gate.stats.replayed++;
  }

  private reject(req: IncomingMessage, res: ServerResponse, err: GatewayError, started: number): void {
    this.active++;
    const bytes = this.fail(req, res, err);
    this.finish(req, res, { status: err.status, bytesSent: bytes, upstreamTime: undefined, error: err }, started);
  }

  /** ExchangeOwner: answer an error that came before any response byte. */
  fail(req: IncomingMessage, res: ServerResponse, err: GatewayError): number {
    let bytes = 0;
    if (res.destroyed || res.headersSent) {
      res.destroy();
    } else {
      // Close after client errors and when the request body was not read to its end, so its
      // unread bytes are never parsed as the next request.
      const close = err.source === 'downstream' || !req.complete;
      // The operator's page for this status (nginx's error_page), else the built-in one.
      const hold = err.code === 'GW_ERR_HOLD_EXPIRED';
      bytes = hold && this.holdPage ? sendError(res, 503, close, this.retryAfter, this.holdPage) : this.errorAnswer(req, res, err.status, close, hold ? this.retryAfter : undefined).bytes;
    }
    if (err.code === 'GW_ERR_UPSTREAM_CONNECT_TIMEOUT' || err.code === 'GW_ERR_UPSTREAM_PERMISSION') this.metrics?.connectError((err.cause as NodeJS.ErrnoException | undefined)?.code ?? '');
    if (err.source === 'upstream') this.log.error({ code: err.code, cause: (err.cause as NodeJS.ErrnoException | undefined)?.code, upstream: this.config.upstream }, err.message);
    else if (err.source === 'internal') this.log.error({ err: err.cause }, err.message);
    return bytes;
  }

  /** ExchangeOwner: the request is over (answered, failed or abandoned). */
  finish(req: IncomingMessage, res: ServerResponse, r: ExchangeResult, started: number): void {
    this.active--;
    if (this.drainWaiters.length > 0 && this.inFlight <= 0) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
    if (this.stopping) this.checkDrained();
    if (this.metrics) {
      const cl = req.headers['content-length'];
      this.metrics.request(req.method as string, r.status, (performance.now() - started) / 1000, cl === undefined ? 0 : Number(cl) || 0, r.bytesSent, r.upstreamTime === undefined ? undefined : r.upstreamTime / 1000);
    }
    if (!this.accessLog.enabled) return;
    // undici swallows what its handler callbacks throw: a bug here must at least be logged.
    try {
      const exchange = (res as TrackedResponse).exchange;
      this.accessLog.write({
        remoteAddr: (req as ClientRequest).client?.address ?? exchange?.peer ?? peerAddress(req.socket?.remoteAddress),
        method: req.method as string,
        url: req.url as string,
        httpVersion: req.httpVersion,
        status: r.status,
        bytesSent: r.bytesSent,
        referer: req.headers.referer,
        userAgent: req.headers['user-agent'],
        requestTime: performance.now() - started,
        upstreamTime: r.upstreamTime,
        held: exchange?.wasHeld ?? false,
        error: r.error?.code,
      });
    } catch (err) {
      this.log.error({ err }, 'access log entry failed');
    }
  }

  private handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    // An Upgrade with a body (WebSocket handshakes have none): the body would go to the app as the
    // upgraded stream's first bytes, or not at all, and the app would wait for it. 400, nothing sent
    // (found by test/fuzz/request-path.fuzz.test.ts: Transfer-Encoding: chunked on an Upgrade hung).
    const cl = req.headers['content-length'];
    const withBody = req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
    const bad = checkRequest(req, this.config) ?? (withBody ? new GatewayError('GW_ERR_BAD_REQUEST', 'an Upgrade request with a body') : undefined);
    if (bad || this.stopping) {
      const status = bad ? bad.status : 503;
      this.logRaw(socket, status, sendRawError(socket, status, undefined, undefined, req.method), `${req.method} ${req.url} HTTP/${req.httpVersion}`);
      return;
    }
    const headers = upstreamHeaders(req, this.ctx).headers;
    // Upgrades wait in the gate like any request while the app server cannot accept.
    const waiter: Waiter = {
      arrived: performance.now(),
      bytes: 64 + head.length + req.rawHeaders.reduce((n, h) => n + h.length + 2, 0),
      release: () => {
        socket.off('close', cancel);
        if (!socket.destroyed) go();
      },
      expire: () => {
        socket.off('close', cancel);
        this.logRaw(socket, 503, sendRawError(socket, 503, this.retryAfter, this.holdPage), `${req.method} ${req.url} HTTP/${req.httpVersion}`);
      },
    };
    const cancel = () => this.gate.cancel(waiter);
    const park = (): boolean => {
      const admission = this.gate.hold(waiter);
      if (admission === 'held') socket.once('close', cancel);
      else if (admission === 'overflow') waiter.expire();
      return admission !== 'off';
    };
    const go = () =>
      this.upgrades.forward(req, socket, head, headers, (code) => {
        if (!DOWN_CODES.has(code)) return false;
        this.gate.upstreamDown();
        return park();
      });
    if (this.gate.open || !park()) go();
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    if ((socket as Socket & { answered?: boolean }).answered) return;
    (socket as Socket & { answered?: boolean }).answered = true;
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    this.answerClientError(err, socket);
  }

  /**
   * A bad request pipelined behind good ones: those are answered first, as nginx does (it reads
   * the next request only once the previous one is done). Writing the 400 at once cut the responses
   * in flight: the app had served the first request and the client read the 400 as its answer
   * (found by test/fuzz/request-path.fuzz.test.ts). Node hands the socket the next queued response
   * before our 'finish' listener runs, so this waits for each in turn.
   */
  private answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    if (socket.destroyed) return;
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (inFlight && inFlight.req.complete) {
      inFlight.once('finish', () => this.answerClientError(err, socket));
      inFlight.once('close', () => {
        if (!inFlight.writableFinished) socket.destroy();
      });
      return;
    }
    // An error in the body of the request in flight is that request's, answered now; unless its
    // response has begun or is done (Node's own 400 for a missing Host, 417 for an Expect): one
    // response per request.
    const reading = (socket as Socket & { parser?: { incoming?: IncomingMessage | null } | null }).parser?.incoming;
    if (inFlight?.headersSent || (!inFlight && reading && !reading.complete)) {
      if (!inFlight || inFlight.writableFinished) socket.destroy();
      else inFlight.once('close', () => socket.destroy());
      return;
    }
    let status = 400;
    if (err.code === 'HPE_HEADER_OVERFLOW') status = 431;
    else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') status = 408;
    this.logRaw(socket, status, sendRawError(socket, status), '');
  }

  /**
   * Socket idle past its phase deadline. While the body arrives: a client pause is a 408, an
   * upstream that stopped reading is watchUpload's business. After: a client that does not read
   * is cut; waiting on the upstream is the upstream read timeout's business.
   */
  private onSocketTimeout(socket: Socket): void {
    const res = (socket as Socket & { _httpMessage?: TrackedResponse | null })._httpMessage;
    if (!res) {
      socket.destroy();
      return;
    }
    const req = res.req;
    if (!req.complete) {
      if (req.readableLength > 0 || req.isPaused()) return;
      res.exchange?.abort(new GatewayError('GW_ERR_REQUEST_TIMEOUT', 'client body timeout'));
      return;
    }
    if (socket.writableLength > 0 || res.writableLength > 0) socket.destroy();
  }

  private logRaw(socket: Socket, status: number, bytes: number, request: string): void {
    if (!this.accessLog.enabled) return;
    const [method = '', url = '', proto = 'HTTP/1.1'] = request.split(' ');
    this.accessLog.write({ remoteAddr: connectionClient(socket, this.ctx), method, url, httpVersion: proto.replace('HTTP/', ''), status, bytesSent: bytes, referer: undefined, userAgent: undefined, requestTime: 0, upstreamTime: undefined, held: false });
  }

  private closeIdle(): void {
    for (const s of this.servers) s.closeIdleConnections();
    for (const f of this.fastConnections) f.closeIfIdle();
  }

  /** Set once IDLE_GRACE_MS of a graceful stop passed: idle keep-alive connections are closed then. */
  private graceOver = false;

  /** A graceful stop is done when no request is in flight and no connection is open (or the grace is over). */
  private checkDrained(): void {
    if (this.active <= 0 && (this.connections <= 0 || this.graceOver)) this.drained?.();
  }

  /**
   * Graceful: stop accepting, let in-flight requests finish (bounded by shutdownTimeout), then cut
   * what is left. Not graceful: cut everything now.
   */
  async stop(graceful: boolean): Promise<void> {
    this.stopping = true;
    // Held requests would wait for an app server we no longer serve: 503 with Retry-After now.
    this.gate.close();
    // net.Server's close, not http.Server's: since Node 19 the latter also closes idle keep-alive
    // connections at once, the very race the grace below avoids.
    const closed = this.servers.map((s) => new Promise<void>((resolve) => net.Server.prototype.close.call(s, () => resolve())));
    if (graceful) {
      // Idle keep-alive connections are not closed at once: a client may be sending its next
      // request on one right now, and closing under it loses that request (a reset the client sees
      // as an error; a USR2 handover under load showed it). For IDLE_GRACE_MS every request that
      // comes is served with Connection: close, so active clients move to a new connection (the
      // new gateway's, after a USR2); what is still idle after that is closed.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.config.shutdownTimeout);
        const grace = setTimeout(() => {
          this.graceOver = true;
          this.closeIdle();
          this.checkDrained();
        }, IDLE_GRACE_MS);
        this.drained = () => {
          clearTimeout(timer);
          clearTimeout(grace);
          resolve();
        };
        this.checkDrained();
      });
    }
    for (const s of this.servers) s.closeAllConnections();
    for (const socket of this.sockets) socket.destroy();
    this.upgrades.closeAll();
    await Promise.all(closed);
    await this.pool.destroy();
  }
}

/** An async iterable over the body that stops at `max` bytes with a 413. */
async function* limitBody(req: IncomingMessage, max: number, exchange: Exchange): AsyncIterable<Buffer> {
  let seen = 0;
  for await (const chunk of req) {
    seen += (chunk as Buffer).length;
    if (seen > max) {
      exchange.abort(new GatewayError('GW_ERR_BODY_TOO_LARGE'));
      return;
    }
    yield chunk as Buffer;
  }
}

/**
 * nginx's proxy_send_timeout: the upstream stopped reading our upload. Seen as no socket progress
 * while bytes wait in the request's buffer (a client pause leaves the buffer empty instead).
 */
function watchUpload(req: IncomingMessage, timeout: number, exchange: Exchange): void {
  let last = req.socket.bytesRead;
  const timer = setInterval(() => {
    if (req.complete || req.destroyed) return clearInterval(timer);
    const now = req.socket.bytesRead;
    if (now === last && (req.readableLength > 0 || req.isPaused())) {
      clearInterval(timer);
      exchange.abort(new GatewayError('GW_ERR_UPSTREAM_TIMEOUT', 'upstream stopped reading the request body'));
    }
    last = now;
  }, timeout);
  timer.unref();
  req.once('end', () => clearInterval(timer));
  req.once('close', () => clearInterval(timer));
}

/** The limits Node's server enforces itself, set again on a reload (maxHeaderSize is fixed at creation). */
function applyServerLimits(server: http.Server, c: GatewayConfig): void {
  server.headersTimeout = c.clientHeaderTimeout;
  server.keepAliveTimeout = c.keepaliveTimeout;
  // Node silently drops fields past maxHeadersCount; allow one more so checkRequest sees the excess.
  server.maxHeadersCount = c.maxHeaderCount + 1;
}

/**
 * Runs `then` once every response before it on `socket` has been sent: Node hands the socket to the
 * next pipelined response as one finishes, so the check repeats until no earlier one is left. After
 * a response that closed the connection (a 400, Connection: close) Node has ended the socket, and
 * `then` never runs: the request is dropped unanswered, as handle() drops one (it reached the app
 * otherwise; test/fuzz/request-path.fuzz.test.ts, seed 421653037).
 */
function afterEarlier(socket: Socket, then: () => void): void {
  if (socket.destroyed || socket.writableEnded) return;
  const earlier = (socket as Socket & { _httpMessage?: (ServerResponse & { _last?: boolean }) | null })._httpMessage;
  // A closing response already written (its 'finish', which ends the socket, is still to come).
  if (earlier?._last === true) return;
  if (!earlier || earlier.writableFinished) return then();
  earlier.once('finish', () => {
    if (!socket.destroyed) setImmediate(() => afterEarlier(socket, then));
  });
  earlier.once('close', () => {
    if (!earlier.writableFinished) socket.destroy();
  });
}
