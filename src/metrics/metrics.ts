/**
 * Every metric the gateway exports, defined here and only here, named
 * gateway_<subsystem>_<name>_<unit>, with no unbounded label values (method and status are
 * classes, reasons and checks are fixed lists; no paths, no PIDs). Documented in docs/metrics.md.
 *
 * Hot path: a request adds to plain numbers (Tally below), which prom-client's metrics read when
 * Prometheus scrapes (collect callbacks): prom-client's own observe() and inc() validate and hash
 * their labels on every call, which cost the bench 5-10% of its throughput. Everything the gate,
 * the pool and the supervisor already count is read at scrape time too, so holding and
 * supervision add nothing per request.
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

/** The method label's values; any other method is `other`. */
const METHOD_CLASSES = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'other'] as const;
/** The status label's values, by index: 0 is 499 (the client left), 1-5 the classes. */
const STATUS_CLASSES = ['499', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;

function methodClass(method: string): number {
  switch (method) {
    case 'GET':
      return 0;
    case 'HEAD':
      return 1;
    case 'POST':
      return 2;
    case 'PUT':
      return 3;
    case 'PATCH':
      return 4;
    case 'DELETE':
      return 5;
    case 'OPTIONS':
      return 6;
    default:
      return 7;
  }
}

/**
 * A histogram's counts as plain numbers: per-bucket counts (not cumulative), the sum and the count,
 * since start. At scrape time they are written into the prom-client Histogram's entry for the same
 * labels, the values its own observe() would have made, so prom-client renders and aggregates it.
 */
class Tally {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > (b[i] as number)) i++;
    if (i < b.length) (this.counts[i] as number)++;
    this.sum += v;
    this.count++;
  }

  /** Sets `h`'s series for `labels` to this tally (made first with prom-client's zero()). */
  into(h: Histogram<string>, labels: Record<string, string>): void {
    const map = (h as unknown as { hashMap: Record<string, { labels: Record<string, string>; bucketValues: Record<number, number>; sum: number; count: number }> }).hashMap;
    let entry = Object.values(map).find((e) => sameLabels(e.labels, labels));
    if (!entry) {
      h.zero(labels);
      entry = Object.values(map).find((e) => sameLabels(e.labels, labels));
      if (!entry) throw new Error(`prom-client histogram ${(h as unknown as { name: string }).name}: no series for ${JSON.stringify(labels)}`);
    }
    this.bounds.forEach((b, i) => ((entry as { bucketValues: Record<number, number> }).bucketValues[b] = this.counts[i] as number));
    entry.sum = this.sum;
    entry.count = this.count;
  }
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}
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
  /** Requests by method class (METHOD_CLASSES) and status class (STATUS_CLASSES), since start. */
  private readonly requestCounts = new Float64Array(METHOD_CLASSES.length * STATUS_CLASSES.length);
  private readonly duration = METHOD_CLASSES.map(() => new Tally(DURATION_BUCKETS));
  private readonly upstreamTime = new Tally(DURATION_BUCKETS);
  private readonly holdTime: Histogram;
  private requestBodyBytes = 0;
  private responseBodyBytes = 0;
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
    const counts = this.requestCounts;
    new Counter({
      name: 'gateway_http_requests_total',
      help: 'Requests answered, by method class and status class (2xx...; 499: client left)',
      labelNames: ['method', 'status'],
      registers,
      collect() {
        this.reset();
        for (let i = 0; i < counts.length; i++) {
          const n = counts[i] as number;
          if (n > 0) this.labels(METHOD_CLASSES[Math.floor(i / STATUS_CLASSES.length)] as string, STATUS_CLASSES[i % STATUS_CLASSES.length] as string).inc(n);
        }
      },
    });
    const duration = this.duration;
    new Histogram({
      name: 'gateway_http_request_duration_seconds',
      help: 'Time from the request head to the end of the response',
      labelNames: ['method'],
      buckets: DURATION_BUCKETS,
      registers,
      collect() {
        duration.forEach((t, i) => t.count > 0 && t.into(this, { method: METHOD_CLASSES[i] as string }));
      },
    });
    counter('gateway_http_request_body_bytes_total', 'Request body bytes announced by clients (Content-Length)', registers, () => this.requestBodyBytes);
    counter('gateway_http_response_body_bytes_total', 'Response body bytes sent to clients', registers, () => this.responseBodyBytes);
    this.accepted = new Counter({ name: 'gateway_http_connections_accepted_total', help: 'Client connections accepted', registers });
    this.refused = new Counter({ name: 'gateway_http_connections_refused_total', help: 'Client connections closed at accept, before any byte was read: maxConnections or maxConnectionsPerClient reached', labelNames: ['reason'], registers });
    for (const r of REFUSAL_REASONS) this.refused.labels(r).inc(0);
    gauge('gateway_http_connections_open', 'Client connections open now', registers, sources.connections);
    this.wsTotal = new Counter({ name: 'gateway_websocket_sessions_total', help: 'WebSocket (and other Upgrade) sessions established', registers });
    gauge('gateway_websocket_sessions_open', 'WebSocket sessions open now', registers, sources.websockets);

    this.connectErrors = new Counter({ name: 'gateway_upstream_connect_errors_total', help: 'Failed connects to the app socket, by reason', labelNames: ['reason'], registers });
    for (const r of CONNECT_REASONS) this.connectErrors.labels(r).inc(0);
    const upstreamTime = this.upstreamTime;
    new Histogram({
      name: 'gateway_upstream_response_time_seconds',
      help: 'Time from sending a request upstream to its response head',
      buckets: DURATION_BUCKETS,
      registers,
      collect() {
        upstreamTime.into(this, {});
      },
    });
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

  /** One answered request. `status` 499 when the client left. Plain arithmetic, nothing allocated. */
  request(method: string, status: number, seconds: number, bodyBytes: number, sentBytes: number, upstreamSeconds: number | undefined): void {
    const m = methodClass(method);
    const cls = status === 499 ? 0 : Math.min(5, Math.max(1, (status / 100) | 0));
    (this.requestCounts[m * STATUS_CLASSES.length + cls] as number)++;
    (this.duration[m] as Tally).observe(seconds);
    if (bodyBytes > 0) this.requestBodyBytes += bodyBytes;
    if (sentBytes > 0) this.responseBodyBytes += sentBytes;
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
