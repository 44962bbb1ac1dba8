/**
 * A worker process (workers.ts): the proxy alone, on listening sockets inherited from the primary,
 * already running as `--user`. It reads the same command line as the primary (so the same
 * configuration files), serves, and does what the primary asks over the IPC channel. Signals are
 * the primary's business: a worker ignores them, and stops gracefully if the primary goes away.
 */
import { readFileSync } from 'node:fs';
import { configFrom } from './config/resolve.js';
import { formatProblem } from './config/validate.js';
import { allowedOwners } from './gateway.js';
import { createLogger } from './log/logger.js';
import { GatewayMetrics } from './metrics/metrics.js';
import { AccessLog } from './proxy/access-log.js';
import { ProxyServer } from './proxy/server.js';
import type { FromWorker, GateView, ToWorker, WorkerBoot } from './workers.js';

export async function runWorker(boot: WorkerBoot, argv: string[]): Promise<number> {
  const nginxLines: string[] = [];
  const { config, problems, nginx } = configFrom(argv, (line) => nginxLines.push(line));
  if (!config || problems.length > 0) {
    process.stderr.write(`gateway worker ${boot.index}: ${problems.map(formatProblem).join('; ')}\n`);
    return 2;
  }
  const log = createLogger(config.logLevel).child({ worker: boot.index });
  const accessLog = new AccessLog(config.accessLog, config.accessLogFormat);
  await accessLog.ready();
  // Read at scrape time, once `server` exists.
  const metrics: GatewayMetrics = new GatewayMetrics({
    gate: () => {
      const g = server.gate;
      return { depth: g.depth, bytes: g.heldBytes, paused: g.paused, upstreamUp: g.upstreamUp, stats: g.stats };
    },
    pool: () => server.poolStats,
    connections: () => server.connections,
    websockets: () => server.websocketSessions,
  });
  const holdPage = config.holdPage === null ? undefined : readFileSync(config.holdPage);
  const server: ProxyServer = new ProxyServer(config, log.child({ component: 'proxy' }), accessLog, { holdPage, socketOwners: allowedOwners(config), metrics, ...nginx });
  const addresses = await server.listen(boot.listen);

  let stopping = false;
  let finished: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (finished = resolve));
  const stop = async (graceful: boolean): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await server.stop(graceful);
    accessLog.close();
    finished(0);
  };
  const send = (m: FromWorker) => {
    if (process.connected) process.send?.(m);
  };
  const view = (): GateView => ({ upstreamUp: server.gate.upstreamUp, paused: server.gate.paused, held: server.gate.depth, heldBytes: server.gate.heldBytes, stats: { ...server.gate.stats } });

  process.on('message', (m: ToWorker) => {
    const reply = (p: Promise<unknown> | unknown) =>
      Promise.resolve(p).then(
        (value) => send({ t: 'reply', id: (m as { id: number }).id, value }),
        (err: unknown) => send({ t: 'reply', id: (m as { id: number }).id, error: (err as Error).message }),
      );
    switch (m.t) {
      case 'pause':
        return server.gate.pause(m.reason);
      case 'resume':
        return server.gate.resume(m.reason);
      case 'upstreamUp':
        return server.gate.upstreamUpNow();
      case 'reopen':
        return accessLog.reopen();
      case 'stop':
        return void stop(m.graceful);
      case 'drain':
        return void reply(server.drain(m.ms));
      case 'recycle':
        return void reply(server.recyclePool());
      case 'status':
        return void reply(view());
      case 'metrics':
        return void reply(metrics.registry.getMetricsAsJSON());
      case 'reload':
        return void reply(reload());
    }
  });
  const reload = async (): Promise<void> => {
    const next = configFrom(argv, () => undefined);
    if (!next.config || next.problems.length > 0 || next.nginxFailed) throw new Error('the configuration has errors');
    const hold = next.config.holdPage === null ? undefined : readFileSync(next.config.holdPage);
    await accessLog.retarget(next.config.accessLog, next.config.accessLogFormat);
    server.reconfigure(next.config, { ...next.nginx, holdPage: hold });
  };
  // The primary went away (killed): finish what is in flight and go.
  process.on('disconnect', () => void stop(true));
  // Ctrl-C reaches the whole process group: the primary decides what happens.
  for (const sig of ['SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => undefined);
  process.on('SIGTERM', () => void stop(false));

  if (nginxLines.length > 0 && boot.index === 0) log.debug({ nginx: nginxLines }, 'nginx.conf read with warnings');
  log.info({ addresses: addresses.map((a) => `${a.address}:${a.port}`), uid: process.getuid?.() }, 'worker listening');
  send({ t: 'ready', addresses });
  return done;
}
