import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GatewayMetrics } from '../../src/metrics/metrics.js';

// docs/metrics.md is the operator's table; the dashboard must only use metrics that exist.
describe('metrics documentation', () => {
  const names = new GatewayMetrics({}).registry.getMetricsAsArray().map((m) => m.name);
  const doc = readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8');
  const ours = names.filter((n) => !n.startsWith('gateway_process_') && !n.startsWith('gateway_nodejs_'));

  it.each(ours)('docs/metrics.md lists %s', (name) => {
    expect(doc).toContain(`| \`${name}\` |`);
  });

  it('the Grafana dashboard queries only exported metrics', () => {
    const dash = readFileSync(new URL('../../docs/grafana-dashboard.json', import.meta.url), 'utf8');
    const used = new Set([...dash.matchAll(/gateway_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')));
    expect(used.size).toBeGreaterThan(10);
    for (const n of used) expect(names, n).toContain(n);
  });

  it('no metric is named against the convention', () => {
    for (const n of ours) expect(n).toMatch(/^gateway_(http|websocket|upstream|gate|supervisor)_[a-z_]+$/);
  });
});
