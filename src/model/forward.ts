// The LLaMA forward pass, readable top to bottom: embedding, N blocks of (RMSNorm, attention
// with RoPE and GQA [+ the adapter's gated prompt branch], residual, RMSNorm, SwiGLU, residual),
// final RMSNorm, output head. Used by plain forward(), generation (with a KV cache) and
// training (keeping the activations backward.ts needs). A `joint` prompt layer (the vpt baseline,
// methods/prompts) replaces its rows' attention by one causal softmax over [prompts; tokens]
// (no KV cache); `hidden` returns the final-normed states for a task head instead of logits.

import type { Backend } from '../backend/backend.js';
import type { LlamaConfig } from '../core/config.js';
import { check } from '../core/errors.js';
import type { ModelWeights } from '../core/weights.js';
import type { Activations, LayerActs } from './activations.js';
import type { KVView } from './kvcache.js';
import type { PromptSource } from './method.js';
import type { RopeTables } from './rope.js';

export interface ForwardContext {
  config: LlamaConfig;
  weights: ModelWeights;
  backend: Backend;
  rope: RopeTables;
}

export interface ForwardArgs {
  B: number; // rows
  T: number; // new tokens per row (acts.ids holds (B, T) ids)
  /** Row b's first new token sits at position acts.pos[b], cache row cache.rows[b]. Without a cache pos must be 0. */
  cache: KVView | null;
  /** Per-row prompt source (adapter) or null; rows sharing a source share a kernel call when adjacent. */
  sources: readonly (PromptSource | null)[] | null;
  /** Keep per-layer activations for backward (acts.ensure(..., trainFrom) must match). */
  train: boolean;
  /** Rows (b*T + t) whose logits are wanted, in order; null = all B*T rows; empty = no head at all. */
  logitRows: Int32Array | null;
  /** Receives (logitRows.length or B*T, vocab) logits. */
  logits: Float32Array;
  /** Receives 1/rms of the final norm at the logit rows (training: the head's backward needs it). */
  finalRstd?: Float32Array;
  /** Receives the final-normed hidden states (n, dim) at the logit rows (a task head's features); the vocabulary head is skipped. */
  hidden?: Float32Array;
}

/** Run the model; returns nothing, writes args.logits. */
export function forwardPass(ctx: ForwardContext, acts: Activations, args: ForwardArgs): void {
  const { config: c, weights: W, backend: be, rope } = ctx;
  const mem = be.memory;
  const { B, T, cache } = args;
  const M = B * T;
  const dim = c.dim,
    hs = c.headDim,
    H = c.nHeads,
    Hkv = c.nKvHeads;
  const kvDim = Hkv * hs;
  const x = acts.x; // (M, dim)
  be.embed(x, W.tokEmbd, acts.ids, M);
  const shape = { B, T, S: T, H, Hkv, hs };

  for (let l = 0; l < c.nLayers; l++) {
    const L = W.layers[l];
    const A = acts.layer(l);
    if (cache && !args.train && !hasPrompt(args.sources, l)) {
      // generation / scoring with a cache and no adapter here: the same kernels as below, one call
      shape.S = cache.S;
      be.block(
        x,
        L.attnNorm,
        L.wq,
        L.wk,
        L.wv,
        L.wo,
        L.ffnNorm,
        L.w1,
        L.w3,
        L.w2,
        acts.h,
        A.q,
        A.k,
        A.v,
        acts.att,
        A.a,
        A.b,
        acts.g,
        cache.k[l],
        cache.v[l],
        cache.rows,
        acts.pos,
        shape,
        rope.cos,
        rope.sin,
        c.normEps,
      );
      continue;
    }
    if (args.train && acts.saved[l]) mem.copy(A.xIn, 0, x, 0, M * dim);

    // ---- attention
    const h = acts.h,
      att = acts.att;
    be.rmsnorm(h, x, L.attnNorm, M, dim, c.normEps, A.rstd1);
    be.matmul3(A.q, A.k, A.v, h, L.wq, L.wk, L.wv, M); // q (M, qDim), k and v (M, kvDim)
    be.rope(A.q, B, T, H, hs, acts.pos, rope.cos, rope.sin, false);
    be.rope(A.k, B, T, Hkv, hs, acts.pos, rope.cos, rope.sin, false);
    if (cache) {
      // write this chunk's keys/values at positions pos[b] .. pos[b]+T-1 of its cache row
      const kc = cache.k[l],
        vc = cache.v[l],
        S = cache.S;
      for (let b = 0; b < B; b++) {
        const dst = (cache.rows[b] * S + acts.pos[b]) * kvDim,
          src = b * T * kvDim,
          n = T * kvDim;
        mem.copy(kc, dst, A.k, src, n);
        mem.copy(vc, dst, A.v, src, n);
      }
      shape.S = S;
      be.attention(att, A.q, kc, vc, acts.pos, shape, cache.rows);
    } else {
      shape.S = T;
      be.attention(att, A.q, A.k, A.v, acts.pos, shape);
    }
    if (args.sources) promptBranch(be, c, A, att, args.sources, l, B, T, cache !== null);
    be.matmul(x, att, L.wo, M, true); // x (M, dim) += att · Wo^T: the residual, in the product's store
    if (args.train && acts.saved[l]) mem.copy(A.xMid, 0, x, 0, M * dim);

    // ---- feed-forward (SwiGLU)
    be.rmsnorm(h, x, L.ffnNorm, M, dim, c.normEps, A.rstd2);
    be.matmul2(A.a, A.b, h, L.w1, L.w3, M); // gate, up (M, hidden)
    be.siluGate(acts.g, A.a, A.b, M * c.hiddenDim);
    be.matmul(x, acts.g, L.w2, M, true); // x (M, dim) += g · W2^T
    if (args.train) acts.store(l, be, B, T);
  }

  // ---- head, only on the wanted rows
  const rows = args.logitRows;
  const n = rows ? rows.length : M;
  if (n === 0) return;
  let src = x;
  if (rows) {
    src = acts.tmp; // gather wanted rows (n <= M)
    mem.gather(src, x, rows, n, dim);
  }
  be.rmsnorm(args.hidden ?? acts.h, src, W.outputNorm, n, dim, c.normEps, args.finalRstd);
  if (!args.hidden) be.matmul(args.logits, acts.h, W.output, n);
}

/** Whether any row's prompt source has a prompt layer at l (the adapter hook runs there). */
function hasPrompt(sources: readonly (PromptSource | null)[] | null, l: number): boolean {
  if (sources) for (const src of sources) if (src?.promptLayer(l)) return true;
  return false;
}

/** The adapter hook: add each row-group's gated prompt branch to the attention output (or, joint, replace it). */
function promptBranch(
  be: Backend,
  c: LlamaConfig,
  A: LayerActs,
  att: Float32Array,
  sources: readonly (PromptSource | null)[],
  l: number,
  B: number,
  T: number,
  cached: boolean,
): void {
  const qDim = c.nHeads * c.headDim,
    kvDim = c.nKvHeads * c.headDim;
  let b0 = 0;
  while (b0 < B) {
    const src = sources[b0];
    let b1 = b0 + 1;
    while (b1 < B && sources[b1] === src) b1++;
    const p = src ? src.promptLayer(l) : null;
    if (p) {
      const rows = b1 - b0;
      const s = { B: rows, T, K: p.K, H: c.nHeads, Hkv: c.nKvHeads, hs: c.headDim };
      if (p.joint) {
        // vpt: the rows' attention again, with the prompts in the same (causal) softmax
        check(!cached, 'joint (vpt) prompts run without a KV cache only (training and scoring, not generation)');
        const o = b0 * T * qDim,
          e = b1 * T * qDim,
          ko = b0 * T * kvDim,
          ke = b1 * T * kvDim;
        be.prefixAttention(att.subarray(o, e), A.q.subarray(o, e), A.k.subarray(ko, ke), A.v.subarray(ko, ke), p.pk, p.pv, s, null, true);
      } else if (rows === B)
        be.promptAttention(att, A.q, p.pk, p.pv, p.gate, s, A.pprobs); // one adapter for all rows: no views
      else {
        const o = b0 * T * qDim;
        be.promptAttention(
          att.subarray(o, o + rows * T * qDim),
          A.q.subarray(o, o + rows * T * qDim),
          p.pk,
          p.pv,
          p.gate,
          s,
          A.pprobs.subarray(b0 * c.nHeads * T * p.K, b1 * c.nHeads * T * p.K),
        );
      }
    }
    b0 = b1;
  }
}
