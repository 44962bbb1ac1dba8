/**
 * WebSocket and any other `Upgrade` (ActionCable) through http-proxy's `ws` pass: the upgrade
 * request goes to the app socket with our forwarded headers, then bytes flow both ways. When either
 * side closes or fails, the other is destroyed too, so no file descriptor outlives its peer.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import httpProxy from 'http-proxy';
import type { Logger } from '../log/logger.js';
import { toGatewayError } from './errors.js';
import { sendRawError } from './respond.js';

export class UpgradeProxy {
  private readonly proxy: httpProxy;
  /** Open client sockets of upgraded sessions, cut on stop. */
  readonly sessions = new Set<Socket>();

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
  forward(req: IncomingMessage, socket: Socket, head: Buffer, headers: string[]): void {
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
    this.proxy.ws(req, socket, head, { target: { socketPath: this.socketPath } as never }, (err: Error) => {
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
