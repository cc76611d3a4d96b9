// UDP flow metrics as counted from the records every flow writes: flows opened and open by route, datagrams
// carried each way, drops by direction and cause, bytes by route.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { trafficMetrics } from '../src/metrics/trafficMetrics.ts';

describe('UDP flow metrics', () => {
  it('count flows, datagrams and drops from udp.open and udp.close', async () => {
    const registry = new Registry();
    const observe = trafficMetrics('gatehouse_', [registry]);
    observe({ event: 'udp.open', route: 'dns', protocol: 'udp' });
    observe({ event: 'udp.open', route: 'dns', protocol: 'udp' });
    observe({ event: 'udp.close', route: 'dns', protocol: 'udp', packetsIn: 7, packetsOut: 5, bytesIn: 300, bytesOut: 900, dropped: { oversizeIn: 2, rateOut: 3 } });
    const text = await registry.metrics();
    expect(text).toMatch(/^gatehouse_udp_flows_opened_total\{route="dns"\} 2$/m);
    expect(text).toMatch(/^gatehouse_open_udp_flows\{route="dns"\} 1$/m);
    expect(text).toMatch(/^gatehouse_udp_packets_total\{direction="in"\} 7$/m);
    expect(text).toMatch(/^gatehouse_udp_packets_total\{direction="out"\} 5$/m);
    expect(text).toMatch(/^gatehouse_udp_dropped_total\{direction="in",cause="oversize"\} 2$/m);
    expect(text).toMatch(/^gatehouse_udp_dropped_total\{direction="out",cause="rate"\} 3$/m);
    expect(text).toMatch(/^gatehouse_bytes_total\{route="dns",direction="out"\} 900$/m);
  });
});
