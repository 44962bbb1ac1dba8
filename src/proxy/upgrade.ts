/**
 * WebSocket and any other `Upgrade` (ActionCable) through http-proxy's `ws` pass: the upgrade
 * request goes to the app socket with our forwarded headers, then bytes flow both ways. When either
 * side closes or fails, the other is destroyed too, so no file descriptor outlives its peer.
 */
import http, { type IncomingMessage } from 'node:http';
import net, { type Socket } from 'node:net';
import httpProxy from 'http-proxy';
import type { Logger } from '../log/logger.js';
import { toGatewayError } from './errors.js';
import { sendRawError } from './respond.js';

export class UpgradeProxy {
  private readonly proxy: httpProxy;
  /** Open client sockets of upgraded sessions, cut on stop. */
  readonly sessions = new Set<Socket>();
  /** Told of each session established (metrics). */
  onSession: (() => void) | undefined;

  constructor(
    private readonly socketPath: string,
    private readonly log: Logger,
  ) {
    this.proxy = httpProxy.createProxyServer({ ws: true, xfwd: false, prependPath: false });
    // http-proxy emits errors as events and crashes the process without a listener.
    this.proxy.on('error', (err) => this.log.debug({ err }, 'upgrade proxy error'));
    this.proxy.on('proxyReqWs', (proxyReq, _req, socket) => {
      proxyReq.once('upgrade', (_res, upstream: Socket) => {
        this.sessions.add(socket as Socket);
        this.onSession?.();
        socket.once('close', () => {
          this.sessions.delete(socket as Socket);
          upstream.destroy();
        });
        upstream.once('close', () => socket.destroy());
        upstream.on('error', () => socket.destroy());
      });
    });
  }

  /** `headers` is the flat list built for plain requests; Connection and Upgrade are put back. */
  /**
   * `headers` is the flat list built for plain requests; Connection and Upgrade are put back.
   * The upstream connection is made here first, and handed to http-proxy through a one-off agent:
   * a failed connect then never reaches http-proxy (which would end the client socket), so
   * `onConnectError(code)` may take the socket over (the gate holds it until the app is back) and
   * returns true when it did.
   */
  forward(req: IncomingMessage, socket: Socket, head: Buffer, headers: string[], onConnectError?: (code: string) => boolean): void {
    const upstream = net.connect(this.socketPath);
    const onError = (err: NodeJS.ErrnoException) => {
      upstream.destroy();
      if (socket.destroyed) return;
      if (onConnectError?.(err.code ?? '')) return;
      const gw = toGatewayError(err);
      this.log.warn({ code: gw.code, cause: err.code }, 'upgrade failed');
      sendRawError(socket, gw.status);
    };
    upstream.once('error', onError);
    // The client left while we were connecting.
    const onClientClose = () => upstream.destroy();
    socket.once('close', onClientClose);
    upstream.once('connect', () => {
      upstream.off('error', onError);
      socket.off('close', onClientClose);
      if (socket.destroyed) return upstream.destroy();
      this.proxyOver(req, socket, head, headers, upstream);
    });
  }

  private proxyOver(req: IncomingMessage, socket: Socket, head: Buffer, headers: string[], upstream: Socket): void {
    const h: Record<string, string> = {};
    for (let i = 0; i < headers.length; i += 2) {
      const name = (headers[i] as string).toLowerCase();
      const prev = h[name];
      h[name] = prev === undefined ? (headers[i + 1] as string) : `${prev}, ${headers[i + 1]}`;
    }
    h.connection = 'Upgrade';
    h.upgrade = req.headers.upgrade as string;
    req.headers = h;
    socket.setTimeout(0);
    socket.on('error', () => socket.destroy());
    const agent = new http.Agent({ keepAlive: false });
    agent.createConnection = () => upstream;
    this.proxy.ws(req, socket, head, { target: { socketPath: this.socketPath } as never, agent }, (err: Error) => {
      const gw = toGatewayError(err);
      this.log.warn({ code: gw.code, cause: (err as NodeJS.ErrnoException).code }, 'upgrade failed');
      if (!socket.destroyed && socket.bytesWritten === 0) sendRawError(socket, gw.status);
      else socket.destroy();
    });
  }

  closeAll(): void {
    for (const s of this.sessions) s.destroy();
    this.sessions.clear();
    this.proxy.close();
  }
}
