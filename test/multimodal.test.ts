// The multimodal adapter against the reference (../shared/fixtures tinystories656k-mm-adapter and
// clip-tiny-encode, made by reference/refmultimodal.py): CLIP global features of real photos, I_p,
// logits with a different image per row, rows without an image, the masked loss and the gradients
// of prompts, gates and the whole projection (1e-4), greedy ids per image; zero gates give the base
// model's logits exactly, whatever the image. On every backend.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { loadModel } from '../src/index.js';
import { readSafetensors } from '../src/core/safetensors.js';
import { generateBatch } from '../src/generate/generate.js';
import { createMultimodalAdapter, MultimodalAdapter } from '../src/methods/v1/multimodal.js';
import { ClipEncoder } from '../src/vision/encoder.js';
import { loadClipVision } from '../src/vision/clip.js';
import { backendsUnderTest } from './backends.js';
import { fixtures, maxAbs, maxAbsDiff, tinystories656k } from './helpers.js';
import { getBackend } from '../src/backend/index.js';

const fx = readSafetensors(path.join(fixtures, 'tinystories656k-mm-adapter.safetensors'));
const enc = readSafetensors(path.join(fixtures, 'clip-tiny-encode.safetensors'));
const t = (n: string): Float32Array => fx.tensorF32(n);
const rows = (n: string): number[][] => {
  const [B, T] = fx.info(n).shape;
  const d = fx.tensorInt32(n);
  return Array.from({ length: B }, (_, b) => Array.from(d.subarray(b * T, (b + 1) * T)));
};

function relClose(got: Float32Array, want: Float32Array, what: string): void {
  const d = maxAbsDiff(got, want),
    m = maxAbs(want);
  assert.ok(d <= 1e-4 * m + 1e-9, `${what}: max error ${d} > 1e-4 x ${m}`);
}

for (const id of backendsUnderTest()) {
  describe(`multimodal adapter on ${id} matches refmultimodal.py`, async () => {
    const model = await loadModel(tinystories656k, { backend: id });
    const tower = loadClipVision(path.join(fixtures, 'clip-tiny'));
    const encoder = new ClipEncoder(tower, getBackend(id));
    const c = model.config;
    const [L, K] = fx.info('prompts').shape;
    const mm = createMultimodalAdapter(model, { promptLength: K, adapterLayers: L, encoder: encoder.identity });
    const p = mm.parameters();
    for (let i = 0; i < L; i++) {
      const l = c.nLayers - L + i;
      p.get(`layers.${l}.adaption_prompt`)!.set(t('prompts').subarray(i * K * c.dim, (i + 1) * K * c.dim));
      p.get(`layers.${l}.adaption_gate`)!.set(t('gates').subarray(i * c.nHeads, (i + 1) * c.nHeads));
    }
    p.get('proj.weight')!.set(t('proj_weight'));
    p.get('proj.bias')!.set(t('proj_bias'));
    p.get('proj_norm.weight')!.set(t('proj_norm_weight'));
    p.get('proj_norm.bias')!.set(t('proj_norm_bias'));
    mm.invalidate();
    const F = mm.featureDim;
    const tokens = rows('tokens'),
      targets = rows('targets');

    it('CLIP features of the two photos (layers 1, 2, 3 = the default for 3 layers) and I_p within 1e-4', async () => {
      assert.deepEqual(encoder.identity.layers, [1, 2, 3]);
      const feats = await encoder.features(enc.tensorF32('pixels'), 2);
      assert.ok(maxAbsDiff(feats, t('image_features')) < 1e-4, 'global features vs the mm fixture');
      assert.ok(maxAbsDiff(feats, enc.tensorF32('global_features')) < 1e-4, 'global features vs clip-tiny-encode');
      assert.ok(maxAbsDiff(mm.imagePrompt(t('image_features'), 2), t('image_prompt')) < 1e-4, 'I_p');
    });

    const f0 = t('image_features').slice(0, F),
      f1 = t('image_features').slice(F, 2 * F);

    it('logits with a different image per row, and rows without an image, within 1e-4', () => {
      const mmLogits = model.forward(tokens, { adapter: mm.rowSources([f0, f1]) });
      assert.ok(maxAbsDiff(mmLogits, t('mm_logits')) < 1e-4, `mm logits ${maxAbsDiff(mmLogits, t('mm_logits'))}`);
      const textOnly = model.forward(tokens, { adapter: mm.rowSources([null, null]) });
      assert.ok(maxAbsDiff(textOnly, t('text_only_logits')) < 1e-4, 'text-only logits');
      // one row with, one without: each row as in its own pass
      const mixed = model.forward(tokens, { adapter: mm.rowSources([f0, null]) });
      const half = mixed.length / 2;
      assert.ok(maxAbsDiff(mixed.subarray(0, half), t('mm_logits').subarray(0, half)) < 1e-4, 'mixed row 0 (image)');
      assert.ok(maxAbsDiff(mixed.subarray(half), t('text_only_logits').subarray(half)) < 1e-4, 'mixed row 1 (no image)');
    });

    it('loss and gradients of prompts, gates, proj.weight/bias, proj_norm.weight/bias within 1e-4', () => {
      const { loss, grads } = model.lossAndGrads(tokens, targets, mm, undefined, mm.rowSources([f0, f1]));
      assert.ok(Math.abs(loss - t('loss')[0]) < 1e-4, `loss ${loss} vs ${t('loss')[0]}`);
      const gp = new Float32Array(L * K * c.dim),
        gg = new Float32Array(L * c.nHeads);
      for (let i = 0; i < L; i++) {
        const l = c.nLayers - L + i;
        gp.set(grads.get(`layers.${l}.adaption_prompt`)!, i * K * c.dim);
        gg.set(grads.get(`layers.${l}.adaption_gate`)!, i * c.nHeads);
      }
      relClose(gp, t('grad_prompts'), 'd prompts');
      relClose(gg, t('grad_gates'), 'd gates');
      relClose(grads.get('proj.weight')!, t('grad_proj_weight'), 'd proj.weight');
      relClose(grads.get('proj.bias')!, t('grad_proj_bias'), 'd proj.bias');
      relClose(grads.get('proj_norm.weight')!, t('grad_proj_norm_weight'), 'd proj_norm.weight');
      relClose(grads.get('proj_norm.bias')!, t('grad_proj_norm_bias'), 'd proj_norm.bias');
      // the same image twice in one batch is one row group per row's source: gradients still sum right
      const same = model.lossAndGrads(tokens, targets, mm, undefined, mm.rowSources([f0, f0]));
      assert.ok(Number.isFinite(same.loss));
    });

    it('greedy decoding from BOS with each row\'s image gives the reference ids', async () => {
      const want = rows('mm_greedy');
      const res = await generateBatch(model, [[want[0][0]], [want[1][0]]], { temperature: 0, maxTokens: want[0].length - 1, stopTokens: [] }, mm.rowSources([f0, f1]));
      res.forEach((r, b) => assert.deepEqual([want[b][0], ...r.ids], want[b], `row ${b}`));
    });

    it('zero gates: exactly the base model\'s logits with any image (and no gradient reaches the projection)', () => {
      const z = new MultimodalAdapter(mm.text, mm.encoder);
      z.projW.set(mm.projW);
      for (const [name, v] of z.parameters()) if (name.endsWith('adaption_gate')) v.fill(0);
      z.invalidate();
      const base = model.forward(tokens);
      const noise = f1.map((x, i) => x * 3 + Math.sin(i));
      for (const imgs of [[f0, f1], [noise, null]] as const) assert.deepEqual(model.forward(tokens, { adapter: z.rowSources(imgs) }), base);
      const { grads } = model.lossAndGrads(tokens, targets, z, undefined, z.rowSources([f0, f1]));
      assert.equal(maxAbs(grads.get('proj.weight')!), 0);
    });
  });
}
