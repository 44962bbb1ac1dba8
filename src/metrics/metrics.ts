/**
 * Every metric the gateway exports, defined here and only here, named
 * gateway_<subsystem>_<name>_<unit>, with no unbounded label values (method and status are
 * classes, reasons and checks are fixed lists; no paths, no PIDs). Documented in docs/metrics.md.
 *
 * Hot path: a request costs one counter increment on a pre-bound child and two histogram
 * observations; everything the gate, the pool and the supervisor already count is read only when
 * Prometheus scrapes (collect callbacks), so holding and supervision add nothing per request.
 */
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue, type RegistryContentType } from 'prom-client';

/** What the metrics read from the other subsystems at scrape time; plain data, no imports. */
export interface Sources {
  gate?: () => {
    depth: number;
    bytes: number;
    paused: boolean;
    upstreamUp: boolean;
    stats: { held: number; released: number; expired: number; overflowed: number; cancelled: number; replayed: number };
  };
  pool?: () => { connected: number; free: number; pending: number; running: number };
  connections?: () => number;
  websockets?: () => number;
  supervisor?: () => {
    up: boolean;
    startTimeSeconds: number;
    rssBytes: number;
    cpuSeconds: number;
    processes: number;
    restarts: Record<string, number>;
    checkFailures: Record<string, number>;
    flapping: boolean;
    lastRestartSeconds: number;
  };
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
export const RESTART_REASONS = ['manual', 'memory', 'cpu', 'http', 'crash', 'flapping', 'age'] as const;
export const CHECKS = ['memory', 'cpu', 'http'] as const;
/** Why a client connection was closed at accept (server.ts). */
export const REFUSAL_REASONS = ['max_connections', 'max_connections_per_client'] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];
export const CONNECT_REASONS = ['missing', 'refused', 'backlog_full', 'foreign_socket', 'timeout', 'permission', 'other'] as const;

/** 1 ms to 60 s, as the observability issue asks. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class GatewayMetrics {
  readonly registry = new Registry<RegistryContentType>();
  private readonly requests: Counter<'method' | 'status'>;
  private readonly requestChildren = new Map<string, { inc(): void }>();
  private readonly duration: Histogram<'method'>;
  private readonly upstreamTime: Histogram;
  private readonly holdTime: Histogram;
  private readonly requestBytes: Counter;
  private readonly responseBytes: Counter;
  private readonly accepted: Counter;
  private readonly refused: Counter<'reason'>;
  private readonly wsTotal: Counter;
  private readonly connectErrors: Counter<'reason'>;

  constructor(sources: Sources) {
    const registers = [this.registry as Registry];
    collectDefaultMetrics({ register: this.registry as Registry, prefix: 'gateway_' });
    // prom-client also exports three gauges named *_total (totals of the labelled gauges beside
    // them), which promtool's lint and Prometheus's naming rules reject: drop those three.
    for (const n of ['active_handles_total', 'active_requests_total', 'active_resources_total']) this.registry.removeSingleMetric(`gateway_nodejs_${n}`);
    this.requests = new Counter({ name: 'gateway_http_requests_total', help: 'Requests answered, by method class and status class (2xx...; 499: client left)', labelNames: ['method', 'status'], registers });
    this.duration = new Histogram({ name: 'gateway_http_request_duration_seconds', help: 'Time from the request head to the end of the response', labelNames: ['method'], buckets: DURATION_BUCKETS, registers });
    this.requestBytes = new Counter({ name: 'gateway_http_request_body_bytes_total', help: 'Request body bytes announced by clients (Content-Length)', registers });
    this.responseBytes = new Counter({ name: 'gateway_http_response_body_bytes_total', help: 'Response body bytes sent to clients', registers });
    this.accepted = new Counter({ name: 'gateway_http_connections_accepted_total', help: 'Client connections accepted', registers });
    this.refused = new Counter({ name: 'gateway_http_connections_refused_total', help: 'Client connections closed at accept, before any byte was read: maxConnections or maxConnectionsPerClient reached', labelNames: ['reason'], registers });
    for (const r of REFUSAL_REASONS) this.refused.labels(r).inc(0);
    gauge('gateway_http_connections_open', 'Client connections open now', registers, sources.connections);
    this.wsTotal = new Counter({ name: 'gateway_websocket_sessions_total', help: 'WebSocket (and other Upgrade) sessions established', registers });
    gauge('gateway_websocket_sessions_open', 'WebSocket sessions open now', registers, sources.websockets);

    this.connectErrors = new Counter({ name: 'gateway_upstream_connect_errors_total', help: 'Failed connects to the app socket, by reason', labelNames: ['reason'], registers });
    for (const r of CONNECT_REASONS) this.connectErrors.labels(r).inc(0);
    this.upstreamTime = new Histogram({ name: 'gateway_upstream_response_time_seconds', help: 'Time from sending a request upstream to its response head', buckets: DURATION_BUCKETS, registers });
    const pool = sources.pool;
    new Gauge({
      name: 'gateway_upstream_pool_connections',
      help: 'Upstream connections by state (open, idle, busy) and requests waiting for one',
      labelNames: ['state'],
      registers,
      collect() {
        const s = pool?.();
        if (!s) return;
        this.set({ state: 'open' }, s.connected);
        this.set({ state: 'idle' }, s.free);
        this.set({ state: 'busy' }, s.running);
        this.set({ state: 'queued' }, s.pending);
      },
    });

    const gate = sources.gate;
    gauge('gateway_gate_held_requests', 'Requests held now', registers, () => gate?.().depth);
    gauge('gateway_gate_held_bytes', 'Bytes of held request data now', registers, () => gate?.().bytes);
    // With worker processes, each has its gate: paused if any is, up only if all see the app up.
    gauge('gateway_gate_paused', '1 while the gate is paused on purpose', registers, () => (gate ? Number(gate().paused) : undefined), 'max');
    gauge('gateway_gate_upstream_up', '0 while the app socket is known not to accept', registers, () => (gate ? Number(gate().upstreamUp) : undefined), 'min');
    const stat = (k: keyof ReturnType<NonNullable<Sources['gate']>>['stats']) => () => gate?.().stats[k];
    counter('gateway_gate_held_total', 'Requests that waited in the gate', registers, stat('held'));
    counter('gateway_gate_released_total', 'Held requests sent on when the app came back', registers, stat('released'));
    counter('gateway_gate_expired_total', 'Held requests answered 503 at the hold deadline', registers, stat('expired'));
    counter('gateway_gate_overflowed_total', 'Requests answered 503 at once: the hold queue was full', registers, stat('overflowed'));
    counter('gateway_gate_cancelled_total', 'Held requests whose client left', registers, stat('cancelled'));
    counter('gateway_upstream_replays_total', 'Requests sent again after the upstream closed before answering (a reused connection, or the app died with them in flight)', registers, stat('replayed'));
    this.holdTime = new Histogram({ name: 'gateway_gate_hold_duration_seconds', help: 'Time held requests waited before going on', buckets: DURATION_BUCKETS, registers });

    const sup = sources.supervisor;
    gauge('gateway_supervisor_app_up', '1 while the app server runs', registers, () => (sup ? Number(sup().up) : undefined));
    gauge('gateway_supervisor_app_start_time_seconds', 'When the app server (this PID) started, Unix time', registers, () => sup?.().startTimeSeconds);
    gauge('gateway_supervisor_app_rss_bytes', 'Resident memory of the app server and its workers', registers, () => sup?.().rssBytes);
    gauge('gateway_supervisor_app_processes', 'Processes of the app server (master and workers)', registers, () => sup?.().processes);
    counter('gateway_supervisor_app_cpu_seconds_total', 'CPU time of the app server and its workers (since this PID started)', registers, () => sup?.().cpuSeconds);
    gauge('gateway_supervisor_flapping', '1 while the app server is flapping (backing off)', registers, () => (sup ? Number(sup().flapping) : undefined));
    gauge('gateway_supervisor_last_restart_duration_seconds', 'How long the last restart took', registers, () => sup?.().lastRestartSeconds);
    new Counter({
      name: 'gateway_supervisor_restarts_total',
      help: 'App server restarts, by reason',
      labelNames: ['reason'],
      registers,
      collect() {
        const s = sup?.();
        this.reset();
        for (const r of RESTART_REASONS) this.labels(r).inc(s?.restarts[r] ?? 0);
      },
    });
    new Counter({
      name: 'gateway_supervisor_check_failures_total',
      help: 'Failed checks, by check',
      labelNames: ['check'],
      registers,
      collect() {
        const s = sup?.();
        this.reset();
        for (const c of CHECKS) this.labels(c).inc(s?.checkFailures[c] ?? 0);
      },
    });
  }

  /** One answered request. `status` 499 when the client left. */
  request(method: string, status: number, seconds: number, bodyBytes: number, sentBytes: number, upstreamSeconds: number | undefined): void {
    const m = METHODS.has(method) ? method : 'other';
    const cls = status === 499 ? '499' : `${(status / 100) | 0}xx`;
    const key = m + cls;
    let child = this.requestChildren.get(key);
    if (!child) {
      child = this.requests.labels(m, cls);
      this.requestChildren.set(key, child);
    }
    child.inc();
    this.duration.observe({ method: m }, seconds);
    if (bodyBytes > 0) this.requestBytes.inc(bodyBytes);
    if (sentBytes > 0) this.responseBytes.inc(sentBytes);
    if (upstreamSeconds !== undefined) this.upstreamTime.observe(upstreamSeconds);
  }

  connection(): void {
    this.accepted.inc();
  }

  connectionRefused(reason: RefusalReason): void {
    this.refused.labels(reason).inc();
  }

  websocket(): void {
    this.wsTotal.inc();
  }

  connectError(code: string): void {
    this.connectErrors.labels(connectReason(code)).inc();
  }

  held(seconds: number): void {
    this.holdTime.observe(seconds);
  }

  private rendering: Promise<unknown> = Promise.resolve();

  /** Prometheus text, or OpenMetrics when the scraper asks for it. One scrape at a time. */
  render(accept: string | undefined): Promise<{ contentType: string; body: string }> {
    const run = this.rendering.then(() => this.renderNow(accept));
    this.rendering = run.catch(() => undefined);
    return run;
  }

  /**
   * In a primary with worker processes (workers.ts): their metrics, summed with this registry's
   * (prom-client's AggregatorRegistry). The proxy's gauges come from the workers only, the
   * supervisor's from the primary only.
   */
  workerMetrics: (() => Promise<MetricObjectWithValues<MetricValue<string>>[][]>) | undefined;

  private async renderNow(accept: string | undefined): Promise<{ contentType: string; body: string }> {
    const open = accept !== undefined && accept.includes('application/openmetrics-text');
    if (this.workerMetrics) {
      const own = (await this.registry.getMetricsAsJSON()).filter((m) => !PROXY_GAUGES.has(m.name));
      const workers = (await this.workerMetrics()).map((list) => list.filter((m) => !m.name.startsWith('gateway_supervisor_')));
      const merged = AggregatorRegistry.aggregate([own, ...workers]);
      merged.setContentType(open ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE);
      return { contentType: merged.contentType, body: await merged.metrics() };
    }
    // prom-client 15 renames counters for OpenMetrics by stripping `_total` from the metric object
    // itself, for good: every later Prometheus scrape then lacked the suffix. Names are put back.
    const metrics = this.registry.getMetricsAsArray() as unknown as { name: string }[];
    const names = metrics.map((m) => m.name);
    this.registry.setContentType(open ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE);
    try {
      return { contentType: this.registry.contentType, body: await this.registry.metrics() };
    } finally {
      metrics.forEach((m, i) => (m.name = names[i] as string));
    }
  }
}

/** Gauges of the proxy's state: in a primary with workers they are the workers' alone. */
const PROXY_GAUGES = new Set(['gateway_gate_held_requests', 'gateway_gate_held_bytes', 'gateway_gate_paused', 'gateway_gate_upstream_up', 'gateway_http_connections_open', 'gateway_websocket_sessions_open', 'gateway_upstream_pool_connections']);

export function connectReason(code: string): (typeof CONNECT_REASONS)[number] {
  switch (code) {
    case 'ENOENT':
      return 'missing';
    case 'ECONNREFUSED':
      return 'refused';
    case 'EAGAIN':
      return 'backlog_full';
    case 'GW_UPSTREAM_FOREIGN':
      return 'foreign_socket';
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'timeout';
    case 'EACCES':
    case 'EPERM':
      return 'permission';
    default:
      return 'other';
  }
}

function gauge(name: string, help: string, registers: Registry[], read: (() => number | undefined) | undefined, aggregator?: 'max' | 'min'): void {
  new Gauge({
    name,
    help,
    registers,
    ...(aggregator ? { aggregator } : {}),
    collect() {
      const v = read?.();
      if (v !== undefined) this.set(v);
    },
  });
}

/** A counter whose value is kept elsewhere (the gate's stats) and read at scrape time. */
function counter(name: string, help: string, registers: Registry[], read: () => number | undefined): void {
  new Counter({
    name,
    help,
    registers,
    collect() {
      const v = read();
      if (v === undefined) return;
      this.reset();
      this.inc(v);
    },
  });
}
