// The reference multimodal adapter of ../shared/fixtures/tinystories656k-mm-adapter (prompts, gates,
// projection) set into a MultimodalAdapter over clip-tiny, for the tests that compare against it.

import * as path from 'node:path';
import { readSafetensors } from '../src/core/safetensors.js';
import { createMultimodalAdapter, type MultimodalAdapter } from '../src/methods/v1/multimodal.js';
import type { LlamaModel } from '../src/model/model.js';
import type { EncoderIdentity } from '../src/vision/image-encoder.js';
import { fixtures } from './helpers.js';

export const mmFixture = readSafetensors(path.join(fixtures, 'tinystories656k-mm-adapter.safetensors'));

/** Rows of an int32 (B, T) fixture tensor. */
export function fixtureRows(n: string): number[][] {
  const [B, T] = mmFixture.info(n).shape;
  const d = mmFixture.tensorInt32(n);
  return Array.from({ length: B }, (_, b) => Array.from(d.subarray(b * T, (b + 1) * T)));
}

/** The fixture's adapter on `model` for features of `encoder` (clip-tiny at its default layers). */
export function fixtureMultimodalAdapter(model: LlamaModel, encoder: EncoderIdentity): MultimodalAdapter {
  const t = (n: string): Float32Array => mmFixture.tensorF32(n);
  const c = model.config;
  const [L, K] = mmFixture.info('prompts').shape;
  const mm = createMultimodalAdapter(model, { promptLength: K, adapterLayers: L, encoder });
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
  return mm;
}
