// Backward pass of the frozen model down to the adapter's hook outputs (prompt keys/values and
// effective gates), run after forwardPass(train: true). Only input gradients flow through frozen
// weights (matmulBack): no weight-gradient GEMMs; nothing below the lowest adapted layer is
// visited, and at that layer the base attention's own backward is skipped (only the prompt
// branch needs it).

import type { LlamaConfig } from '../core/config.js';
import type { Activations } from './activations.js';
import type { ForwardContext } from './forward.js';
import type { PromptLayerGrads, PromptSource, SourceGrads } from './method.js';

/** Grow-only gradient buffers (same memory model as Activations). */
export class BackwardBuffers {
  M = 0;
  dx = new Float32Array(0); // (M, dim) gradient of the residual stream
  dh = new Float32Array(0); // (M, dim)
  datt = new Float32Array(0); // (M, nHeads*hs)
  dq = new Float32Array(0); // (M, nHeads*hs)
  dk = new Float32Array(0); // (M, nKvHeads*hs)
  dv = new Float32Array(0); // (M, nKvHeads*hs)
  dg = new Float32Array(0); // (M, hidden)
  da = new Float32Array(0); // (M, hidden)
  db = new Float32Array(0); // (M, hidden)
  private pool: PromptLayerGrads[][] = []; // per row group, per layer (only adapted ones are used); grow-only
  private K = 0; // prompt length the pool is sized for

  constructor(private readonly c: LlamaConfig) {}

  ensure(M: number, K: number): void {
    const c = this.c,
      q = c.nHeads * c.headDim,
      kv = c.nKvHeads * c.headDim;
    if (M > this.M) {
      this.M = M;
      this.dx = new Float32Array(M * c.dim);
      this.dh = new Float32Array(M * c.dim);
      this.datt = new Float32Array(M * q);
      this.dq = new Float32Array(M * q);
      this.dk = new Float32Array(M * kv);
      this.dv = new Float32Array(M * kv);
      this.dg = new Float32Array(M * c.hiddenDim);
      this.da = new Float32Array(M * c.hiddenDim);
      this.db = new Float32Array(M * c.hiddenDim);
    }
    if (K > this.K) {
      this.K = K;
      this.pool = [];
    }
  }

  /** Hook-gradient buffers of row group g (allocated on first use, then reused). */
  group(g: number): PromptLayerGrads[] {
    const c = this.c,
      kv = c.nKvHeads * c.headDim;
    while (this.pool.length <= g)
      this.pool.push(
        Array.from({ length: c.nLayers }, () => ({
          dpk: new Float32Array(this.K * kv),
          dpv: new Float32Array(this.K * kv),
          dgate: new Float32Array(c.nHeads),
        })),
      );
    return this.pool[g];
  }
}

/**
 * Backpropagate from dlogits (n, V) at rows logitRows (into the (B, T) grid) to the prompt hook of
 * every adapted layer, per group of adjacent rows sharing one prompt source (`sources`, one per
 * row, all with the same firstLayer and prompt length). `finalRstd` (n) and the final residual
 * stream (acts.x) come from the forward pass. With `dhidden` (n, dim), backpropagation starts from
 * the final-normed hidden states instead (a task head's gradient; dlogits is then unused). Returns
 * the hook gradients of each group.
 */
export function backwardPass(
  ctx: ForwardContext,
  acts: Activations,
  bufs: BackwardBuffers,
  sources: readonly PromptSource[],
  B: number,
  T: number,
  logitRows: Int32Array,
  dlogits: Float32Array,
  finalRstd: Float32Array,
  dhidden?: Float32Array,
): SourceGrads[] {
  const { config: c, weights: W, backend: be } = ctx;
  const mem = be.memory;
  const M = B * T,
    dim = c.dim,
    H = c.nHeads,
    Hkv = c.nKvHeads,
    hs = c.headDim;
  const n = logitRows.length;
  const lo = sources[0].firstLayer;
  const dx = bufs.dx;
  const qDim = H * hs;
  // groups of adjacent rows with the same source, as the forward pass ran them
  const groups: { b0: number; b1: number; g: SourceGrads }[] = [];
  for (let b0 = 0; b0 < B; ) {
    let b1 = b0 + 1;
    while (b1 < B && sources[b1] === sources[b0]) b1++;
    groups.push({ b0, b1, g: { source: sources[b0], layers: bufs.group(groups.length) } });
    b0 = b1;
  }

  // ---- head: dlogits -> d(final hidden) -> d(residual stream) at the logit rows
  const dhf = dhidden ?? bufs.dh; // (n, dim)
  if (!dhidden) be.matmulBack(dhf, dlogits, W.output, n);
  const xr = acts.tmp; // (n, dim) gathered final residual rows
  mem.gather(xr, acts.x, logitRows, n, dim);
  const dxr = bufs.datt; // (n, dim) scratch (datt has >= M*dim room since qDim >= dim)
  be.rmsnormBack(dxr, dhf, xr, W.outputNorm, finalRstd, n, dim, false);
  mem.fill(dx, 0, 0, M * dim);
  mem.scatter(dx, dxr, logitRows, n, dim);

  for (let l = c.nLayers - 1; l >= lo; l--) {
    const L = W.layers[l];
    const A = acts.restore(l, be, B, T);
    // ---- feed-forward: x_out = x_mid + W2 (silu(W1 h) * W3 h), h = rmsnorm(x_mid)
    be.matmulBack(bufs.dg, dx, L.w2, M); // (M, hidden)
    be.siluGateBack(bufs.da, bufs.db, bufs.dg, A.a, A.b, M * c.hiddenDim);
    be.matmulBack(bufs.dh, bufs.da, L.w1, M);
    be.matmulBack(bufs.dh, bufs.db, L.w3, M, true);
    be.rmsnormBack(dx, bufs.dh, A.xMid, L.ffnNorm, A.rstd2, M, dim, true); // dx is now d x_mid

    // ---- attention: x_mid = x_in + Wo (attn(q,k,v) + prompt branch)
    be.matmulBack(bufs.datt, dx, L.wo, M); // (M, qDim)
    const base = l > lo; // the base attention's backward is only needed to reach lower adapted layers
    const shape = { B, T, S: T, H, Hkv, hs };
    if (base) be.attentionBack(bufs.dq, bufs.dk, bufs.dv, bufs.datt, A.q, A.k, A.v, shape);
    for (const { b0, b1, g: grp } of groups) {
      const p = grp.source.promptLayer(l);
      if (!p) continue;
      const g = grp.layers[l];
      mem.fill(g.dpk, 0, 0, g.dpk.length);
      mem.fill(g.dpv, 0, 0, g.dpv.length);
      mem.fill(g.dgate, 0, 0, g.dgate.length);
      const s = { B: b1 - b0, T, K: p.K, H, Hkv, hs };
      if (p.joint) {
        // vpt: this group's rows ran one causal softmax over [prompts; tokens]: its backward replaces attentionBack's rows
        const o = b0 * T * qDim,
          e = b1 * T * qDim,
          kvDim = Hkv * hs,
          ko = b0 * T * kvDim,
          ke = b1 * T * kvDim;
        be.prefixAttentionBack(
          bufs.dq.subarray(o, e),
          bufs.dk.subarray(ko, ke),
          bufs.dv.subarray(ko, ke),
          g.dpk,
          g.dpv,
          bufs.datt.subarray(o, e),
          A.q.subarray(o, e),
          A.k.subarray(ko, ke),
          A.v.subarray(ko, ke),
          p.pk,
          p.pv,
          s,
          null,
          true,
        );
      } else if (b1 - b0 === B) be.promptAttentionBack(base ? bufs.dq : null, g.dpk, g.dpv, g.dgate, bufs.datt, A.q, p.pk, p.pv, p.gate, A.pprobs, s);
      else {
        const o = b0 * T * qDim,
          e = b1 * T * qDim;
        be.promptAttentionBack(
          base ? bufs.dq.subarray(o, e) : null,
          g.dpk,
          g.dpv,
          g.dgate,
          bufs.datt.subarray(o, e),
          A.q.subarray(o, e),
          p.pk,
          p.pv,
          p.gate,
          A.pprobs.subarray(b0 * H * T * p.K, b1 * H * T * p.K),
          s,
        );
      }
    }
    if (!base) break;
    be.rope(bufs.dq, B, T, H, hs, acts.pos, ctx.rope.cos, ctx.rope.sin, true);
    be.rope(bufs.dk, B, T, Hkv, hs, acts.pos, ctx.rope.cos, ctx.rope.sin, true);
    be.matmulBack(bufs.dh, bufs.dq, L.wq, M);
    be.matmulBack(bufs.dh, bufs.dk, L.wk, M, true);
    be.matmulBack(bufs.dh, bufs.dv, L.wv, M, true);
    be.rmsnormBack(dx, bufs.dh, A.xIn, L.attnNorm, A.rstd1, M, dim, true); // dx is now d x_in
  }
  return groups.map((g) => g.g);
}
