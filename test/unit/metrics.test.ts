import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metrics } from '../../src/metrics.ts';

test('the watch metrics are read from the watch at each scrape (no timer)', async () => {
  const metrics = new Metrics({ defaultMetrics: false });
  let watch: { live: boolean; stats: { lists: number; watches: number; events: number; relists: number } } | undefined;
  metrics.watchSource(() => watch);
  const scrape = async (): Promise<string> => metrics.registry.metrics();
  watch = { live: true, stats: { lists: 1, watches: 3, events: 7, relists: 0 } };
  let text = await scrape();
  assert.match(text, /^openclaw_kube_watch_up 1$/m);
  assert.match(text, /^openclaw_kube_watch_requests\{kind="list"\} 1$/m);
  assert.match(text, /^openclaw_kube_watch_requests\{kind="watch"\} 3$/m);
  watch = { live: false, stats: { lists: 2, watches: 4, events: 7, relists: 1 } };
  text = await scrape();
  assert.match(text, /^openclaw_kube_watch_up 0$/m);
  assert.match(text, /^openclaw_kube_watch_requests\{kind="list"\} 2$/m);
});
