// Every metric the gateway registers, read from prom-client registries built by the same functions the
// gateway calls, so the metrics reference lists exactly the names a scrape can show.
import { Registry } from 'prom-client';
import { createGatewayMetrics } from '../../src/metrics/gatewayMetrics.ts';
import { witnessMetrics } from '../../src/metrics/witnessMetrics.ts';
import { clusterMetrics } from '../../src/metrics/clusterMetrics.ts';
import { createPublishedServices } from '../../src/upstream/publishedServices.ts';

/** The source files that construct prom-client metrics; the docs test checks that no other file does. */
export const metricSourceFiles = ['src/metrics/auditLogMetrics.ts', 'src/metrics/authzMetrics.ts', 'src/metrics/clusterMetrics.ts', 'src/metrics/gatewayMetrics.ts', 'src/metrics/trafficMetrics.ts', 'src/metrics/witnessMetrics.ts', 'src/upstream/publishedServices.ts'];

export interface MetricName {
  name: string;
  type: string;
  labels: string[];
  help: string;
}

/** The gateway's own metrics (not prom-client's process and Node.js defaults), sorted by name. */
export function gatewayMetricNames(): MetricName[] {
  const gateway = createGatewayMetrics({ processMetrics: false });
  const registry = new Registry();
  witnessMetrics(registry);
  clusterMetrics(registry);
  createPublishedServices(() => undefined).registerMetrics(registry);
  const metrics = [...gateway.registry.getMetricsAsArray(), ...registry.getMetricsAsArray()];
  return metrics
    .map((metric) => {
      const labels = 'labelNames' in metric && Array.isArray(metric.labelNames) ? metric.labelNames.map(String) : [];
      const type = 'type' in metric ? String(metric.type) : 'unknown';
      return { name: metric.name, type, labels, help: metric.help };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The Markdown table of the generated metric names. */
export function metricNamesTable(): string {
  const rows = gatewayMetricNames().map((m) => `| \`${m.name}\` | ${m.type} | ${m.labels.map((l) => `\`${l}\``).join(', ')} | ${m.help.replace(/\|/g, '\\|')} |`);
  return ['| name | type | labels | help text |', '| --- | --- | --- | --- |', ...rows].join('\n');
}
