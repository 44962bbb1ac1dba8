/**
 * The admin listener, separate from public traffic (loopback by default): GET /metrics (Prometheus
 * text, or OpenMetrics when `Accept` asks), GET /healthz (the gateway is up), GET /readyz (the app
 * socket accepts; 503 otherwise, so a load balancer stops sending while the app is down).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log/logger.js';
import type { GatewayMetrics } from './metrics.js';

export class AdminServer {
  private server: http.Server | undefined;

  constructor(
    private readonly metrics: GatewayMetrics,
    /** Whether the app server accepts now (a connect on its socket). */
    private readonly ready: () => Promise<boolean>,
    private readonly log: Logger,
  ) {}

  /** The listening descriptor, for a USR2 handover (upgrade.ts). */
  get fd(): number | undefined {
    return (this.server as unknown as { _handle?: { fd: number } } | undefined)?._handle?.fd;
  }

  /** `fd`: a listener handed over by the previous gateway (USR2). */
  async listen(host: string, port: number, fd?: number): Promise<AddressInfo> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 65_000;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(fd !== undefined ? { fd } : { host, port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`cannot listen on the admin address ${host}:${port}: ${code === 'EADDRINUSE' ? 'address already in use' : (err as Error).message}; choose another --admin HOST:PORT, or --admin null`, { cause: err });
    }
    this.server = server;
    const addr = server.address() as AddressInfo;
    this.log.info({ admin: `${addr.address}:${addr.port}` }, 'admin listener started');
    return addr;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n', { Allow: 'GET, HEAD' });
    try {
      if (path === '/metrics') {
        const { contentType, body } = await this.metrics.render(req.headers.accept);
        return send(res, 200, body, { 'Content-Type': contentType });
      }
      if (path === '/healthz') return send(res, 200, 'ok\n');
      if (path === '/readyz') return (await this.ready()) ? send(res, 200, 'ready\n') : send(res, 503, 'app server not accepting\n');
      return send(res, 404, 'not found: /metrics, /healthz, /readyz\n');
    } catch (err) {
      this.log.error({ err }, 'admin request failed');
      return send(res, 500, 'internal error\n');
    }
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

function send(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
