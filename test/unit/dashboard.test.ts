/**
 * The Grafana dashboard (charts/tokenwarden/dashboards/tokenwarden.json) queries only metrics the
 * operator exports: every metric name in every panel's PromQL is one createMetrics() registers
 * (src/observability/metrics.ts, Node's process metrics included), with a histogram's _bucket,
 * _sum and _count.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { createMetrics } from '../../src/observability/metrics.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dashboard = JSON.parse(readFileSync(path.join(root, 'charts/tokenwarden/dashboards/tokenwarden.json'), 'utf8')) as {
  panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
  templating: { list: Array<{ query?: string }> };
};

// PromQL words that are not metric names.
const PROMQL = new Set([
  'sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'group',
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset',
  'rate', 'irate', 'increase', 'delta', 'idelta', 'deriv', 'histogram_quantile', 'abs', 'clamp_min', 'clamp_max',
  'avg_over_time', 'max_over_time', 'min_over_time', 'sum_over_time', 'label_values', 'label_replace', 'vector', 'scalar', 'time',
]);

/** Metric names in a PromQL expression: identifiers outside label matchers, grouping lists, strings and ranges. */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '$1')
    .replace(/\$\w+/g, '')
    // Grafana's label_values(metric, label): the second argument is a label.
    .replace(/label_values\(([^,)]*),[^)]*\)/g, '$1');
  return [...bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)].map((m) => m[0]).filter((w) => !PROMQL.has(w) && !/^\d/.test(w));
}

async function exported(): Promise<Set<string>> {
  const metrics = createMetrics({ leaseName: 'tokenwarden-leader' });
  metrics.setLeader(true);
  const names = new Set<string>();
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
  }
  return names;
}

describe('the Grafana dashboard', () => {
  test('the PromQL parser finds metric names and nothing else', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (name, le) (rate(workqueue_queue_duration_seconds_bucket{namespace=~"$namespace"}[5m])))'))
      .toEqual(['workqueue_queue_duration_seconds_bucket']);
    expect(metricNames('sum by (tier) (tokenwarden_clients{ready="false"}) / on (tier) group_left count(foo_total)')).toEqual(['tokenwarden_clients', 'foo_total']);
  });

  test('covers issuance, failures, renewal lateness, queue depth and memory', () => {
    const all = dashboard.panels.flatMap((p) => p.targets.flatMap((t) => metricNames(t.expr)));
    for (const m of ['tokenwarden_tokens_issued_total', 'controller_runtime_reconcile_errors_total', 'tokenwarden_token_earliest_expiry_seconds', 'workqueue_depth', 'process_resident_memory_bytes']) {
      expect(all).toContain(m);
    }
  });

  test('every metric it queries is one the operator exports', async () => {
    const names = await exported();
    const queried = [
      ...dashboard.panels.flatMap((p) => p.targets.map((t) => ({ where: p.title, expr: t.expr }))),
      ...dashboard.templating.list.filter((v) => v.query?.includes('(')).map((v) => ({ where: 'templating', expr: v.query! })),
    ];
    expect(queried.length).toBeGreaterThan(10);
    for (const { where, expr } of queried) {
      const found = metricNames(expr);
      expect(found.length, `${where}: ${expr}`).toBeGreaterThan(0);
      for (const m of found) expect(names.has(m), `${where}: ${m} is not exported`).toBe(true);
    }
  });
});
