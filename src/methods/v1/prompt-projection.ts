// Which projections turn an adapted layer's prompts into keys and values. The method (the paper,
// official code, PEFT) uses the layer's frozen wk / wv: 'standard'. litgpt's adapter.py (since
// its fused-qkv layout became [Q; K; V], litgpt PR #1013, Dec 2024) still splits the prompt's
// fused projection as if it were interleaved per query group, (G, q_per_kv + 2, hs): the "key" of
// group g is chunk g*(q_per_kv+2)+q_per_kv of the fused output and the "value" the chunk after it,
// mostly query rows. Adapters trained by such a litgpt learned against that mapping; 'litgpt-split'
// reproduces it, so they give litgpt's outputs here.

import type { LlamaConfig } from '../../core/config.js';
import { matrixToF32 } from '../../core/quant.js';
import { isQuantized, type LayerWeights, type Matrix } from '../../core/weights.js';
import { permuteToHfRows, unpermuteHfRows } from '../../formats/hf-read.js';

export type PromptProjection = 'standard' | 'litgpt-split';

export const PROMPT_PROJECTIONS: Record<PromptProjection, string> = {
  standard: "the layer's frozen wk / wv (the method; official, PEFT, litgpt before Dec 2024)",
  'litgpt-split': "litgpt's mis-split of the fused qkv projection (litgpt adapter.py since PR #1013, Dec 2024)",
};

export function isPromptProjection(s: string): s is PromptProjection {
  return Object.hasOwn(PROMPT_PROJECTIONS, s);
}

/**
 * The (Hkv*hs, dim) key and value projections litgpt's adapter applies to the prompts of a layer,
 * in this library's row order: litgpt's fused qkv is [wq; wk; wv] with q/k rows in HF (rotate-half)
 * order; the chosen key chunks are put back into the interleaved order the model's queries use
 * (q.k is invariant under the same per-head row permutation), value chunks stay as litgpt reads them.
 */
export function litgptSplitProjections(c: LlamaConfig, lw: LayerWeights): { wk: Matrix; wv: Matrix } {
  // a quantized or f16 base: the split works on the widened values (the prompt projection is fp32 then)
  const dense = (m: Matrix): Matrix => (isQuantized(m) || m.dtype === 'f16' ? { dtype: 'f32', rows: m.rows, cols: m.cols, data: matrixToF32(m) } : m);
  const w = { wq: dense(lw.wq), wk: dense(lw.wk), wv: dense(lw.wv) };
  const hs = c.headDim;
  const G = c.nKvHeads;
  const perGroup = c.nHeads / G; // q_per_kv
  const cols = c.dim;
  const hfRows = (m: Matrix, heads: number): Float32Array | Uint16Array => {
    const d = m.data.slice() as Float32Array | Uint16Array;
    if (heads) permuteToHfRows(d, heads, hs, cols);
    return d;
  };
  const parts = [hfRows(w.wq, c.nHeads), hfRows(w.wk, G), hfRows(w.wv, 0)];
  const chunk = hs * cols; // one head's rows
  const fusedChunk = (i: number): Float32Array | Uint16Array => {
    let at = i * chunk;
    for (const p of parts) {
      if (at < p.length) return p.subarray(at, at + chunk);
      at -= p.length;
    }
    throw new Error(`litgptSplitProjections: chunk ${i} is outside the fused projection`);
  };
  const k = w.wk.data.slice() as Float32Array | Uint16Array;
  const v = w.wv.data.slice() as Float32Array | Uint16Array;
  for (let g = 0; g < G; g++) {
    k.set(fusedChunk(g * (perGroup + 2) + perGroup), g * chunk);
    v.set(fusedChunk(g * (perGroup + 2) + perGroup + 1), g * chunk);
  }
  unpermuteHfRows(k, G, hs, cols);
  const rows = G * hs;
  return {
    wk: w.wk.dtype === 'bf16' ? { dtype: 'bf16', rows, cols, data: k as Uint16Array } : { dtype: 'f32', rows, cols, data: k as Float32Array },
    wv: w.wv.dtype === 'bf16' ? { dtype: 'bf16', rows, cols, data: v as Uint16Array } : { dtype: 'f32', rows, cols, data: v as Float32Array },
  };
}
