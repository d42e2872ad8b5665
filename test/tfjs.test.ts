// The TF.js image encoder (nsfwjs's MobileNetV2): on TF.js's WebAssembly backend (the default) its
// multi-scale features of a real photo equal those of TF.js's own pure-JS CPU kernels (an
// independent implementation of every op, run in a child process with LLAMA_ADAPTER_TFJS_BACKEND=cpu),
// and both name the same encoder (shape, layers, weight fingerprint).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { getBackend } from '../src/backend/index.js';
import { FeatureStore } from '../src/vision/features.js';
import { loadImageEncoder } from '../src/vision/encoder.js';
import { tfjsBackend } from '../src/vision/tfjs.js';
import { assets, maxAbs, maxAbsDiff, repoRoot } from './helpers.js';

const photo = path.join(assets, 'images/imagebind_bird_image.jpg');

/** The features and identity as a process with the given TF.js backend computes them. */
const script = `
const { loadImageEncoder } = await import(${JSON.stringify(path.join(repoRoot, 'dist/src/vision/encoder.js'))});
const { FeatureStore } = await import(${JSON.stringify(path.join(repoRoot, 'dist/src/vision/features.js'))});
const { getBackend } = await import(${JSON.stringify(path.join(repoRoot, 'dist/src/backend/index.js'))});
const enc = await loadImageEncoder('nsfwjs:mobilenet_v2', { backend: getBackend('ts') });
const [f] = await new FeatureStore(enc).ofFiles([${JSON.stringify(photo)}]);
process.stdout.write(JSON.stringify({ identity: enc.identity, features: [...f] }));
`;

test('MobileNetV2 (nsfwjs) on the wasm backend: the same features as TF.js CPU kernels, the same encoder identity', async () => {
  const enc = await loadImageEncoder('nsfwjs:mobilenet_v2', { backend: getBackend('ts') });
  assert.equal(await tfjsBackend(), 'wasm', 'setup installs @tensorflow/tfjs-backend-wasm');
  assert.equal(enc.identity.featureDim, 32 + 96 + 1280);
  assert.match(enc.identity.shape, /input=224 layers=block_5_add\+block_12_add\+out_relu/);
  const [f] = await new FeatureStore(enc).ofFiles([photo]);
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, LLAMA_ADAPTER_TFJS_BACKEND: 'cpu' },
    maxBuffer: 1 << 24,
  });
  assert.equal(r.status, 0, r.stderr);
  const cpu = JSON.parse(r.stdout) as { identity: unknown; features: number[] };
  assert.deepEqual(cpu.identity, enc.identity);
  const want = Float32Array.from(cpu.features);
  const d = maxAbsDiff(f, want);
  assert.ok(d <= 1e-4 * maxAbs(want), `wasm vs cpu: max difference ${d} (largest feature ${maxAbs(want)})`);
  assert.ok(maxAbs(want) > 0.1, 'features are not all zero');
});
