import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metrics } from '../../src/metrics.ts';

test('the watch metrics are read from the watch at each scrape (no timer)', async () => {
  const metrics = new Metrics({ defaultMetrics: false });
  let watch: { live: boolean; stats: { lists: number; watches: number; events: number; relists: number } } | undefined;
  let comfy = { target: 'comfy', live: false, stats: { lists: 1, watches: 0, events: 0, relists: 0 } };
  metrics.watchSource(() => (watch ? [{ target: 'openclaw', ...watch }, comfy] : []));
  const scrape = async (): Promise<string> => metrics.registry.metrics();
  watch = { live: true, stats: { lists: 1, watches: 3, events: 7, relists: 0 } };
  let text = await scrape();
  assert.match(text, /^openclaw_kube_watch_up\{target="openclaw"\} 1$/m);
  assert.match(text, /^openclaw_kube_watch_up\{target="comfy"\} 0$/m, 'one series per target');
  assert.match(text, /^openclaw_kube_watch_requests\{kind="list",target="openclaw"\} 1$/m);
  assert.match(text, /^openclaw_kube_watch_requests\{kind="watch",target="openclaw"\} 3$/m);
  assert.match(text, /^openclaw_kube_watch_requests\{kind="list",target="comfy"\} 1$/m);
  watch = { live: false, stats: { lists: 2, watches: 4, events: 7, relists: 1 } };
  text = await scrape();
  comfy = { ...comfy, live: true };
  assert.match(text, /^openclaw_kube_watch_up\{target="openclaw"\} 0$/m);
  assert.match(text, /^openclaw_kube_watch_requests\{kind="list",target="openclaw"\} 2$/m);
  text = await scrape();
  assert.match(text, /^openclaw_kube_watch_up\{target="comfy"\} 1$/m);
});
