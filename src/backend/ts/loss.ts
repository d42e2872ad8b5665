// Plain-TypeScript softmax cross-entropy and AdamW. Stateless: one object shared by every TS backend.

import type { AdamwStep, Kernels } from '../backend.js';

export const lossKernels = {
  crossEntropy(
    logits: Float32Array,
    targets: Int32Array,
    rows: number,
    V: number,
    dlogits: Float32Array | null,
    scale: number,
    losses?: Float32Array | null,
  ): number {
    let total = 0;
    for (let r = 0; r < rows; r++) {
      const o = r * V;
      const tgt = targets[r];
      if (tgt < 0) {
        if (dlogits) dlogits.fill(0, o, o + V);
        if (losses) losses[r] = 0;
        continue;
      }
      let max = -Infinity;
      for (let i = 0; i < V; i++) if (logits[o + i] > max) max = logits[o + i];
      let sum = 0;
      for (let i = 0; i < V; i++) sum += Math.exp(logits[o + i] - max);
      const lse = max + Math.log(sum);
      total += lse - logits[o + tgt];
      if (losses) losses[r] = lse - logits[o + tgt];
      if (dlogits) {
        for (let i = 0; i < V; i++) dlogits[o + i] = Math.exp(logits[o + i] - lse) * scale;
        dlogits[o + tgt] -= scale;
      }
    }
    return total;
  },

  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number, o: AdamwStep): void {
    const bc1 = 1 - o.beta1 ** o.step;
    const bc2 = 1 - o.beta2 ** o.step;
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * gi;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * gi * gi;
      const upd = m[i] / bc1 / (Math.sqrt(v[i] / bc2) + o.eps);
      p[i] -= o.lr * (upd + o.weightDecay * p[i]);
    }
  },
} satisfies Partial<Kernels>;
