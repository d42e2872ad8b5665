// The FLOP model behind the bench's `gflops` numbers: useful multiply-adds (x2) of the matrix
// products only; norms, RoPE, softmax, SiLU, residual adds and the optimizer are not counted.
// The same count is used for our runs and the PyTorch peer's, so their GFLOP/s compare directly.
//
// Per token per layer, frozen projections:  Wq, Wk, Wv, Wo, W1, W3, W2
//   lin = 2 (dim·q + 2·dim·kv + q·dim + 3·dim·hidden)           (q = nHeads·hs, kv = nKvHeads·hs)
// Causal attention of a row of T tokens (QK^T and PV over the causal half only):
//   att(T) = 4 · q · T(T+1)/2                                       (per layer)
// Prompt branch of an adapted layer (scores over K prompt keys and the weighted sum of values):
//   4 · q · K per token, plus the prompt keys/values P Wk^T, P Wv^T: 4 · K · dim · kv per step.
// Output head: 2 · dim · vocab per row whose logits are needed (loss rows in training, the last
//   position in prefill, every step in decode). PyTorch computes all B·T rows; we count only the
//   useful ones, for both.
// Training backward (data gradients only; frozen weights get no weight gradients, layers below
//   the adapter are not visited):
//   head 2 · dim · vocab per loss row; per adapted layer: W2, W1, W3, Wo back = 2 (3·dim·hidden + dim·q)
//   per token, prompt branch back 8 · q · K per token, prompt parameter gradients 4 · K · dim · kv;
//   per adapted layer above the lowest one (gradients must reach lower adapted layers):
//   attention back 8 · q · T(T+1)/2 per row, Wq, Wk, Wv back 2 (dim·q + 2·dim·kv) per token.

import type { LlamaConfig } from '../src/core/config.js';

function parts(c: LlamaConfig): { q: number; kv: number; lin: number; head: number } {
  const q = c.nHeads * c.headDim,
    kv = c.nKvHeads * c.headDim;
  const lin = 2 * (c.dim * q + 2 * c.dim * kv + q * c.dim + 3 * c.dim * c.hiddenDim);
  return { q, kv, lin, head: 2 * c.dim * c.vocabSize };
}

const causal = (T: number): number => (T * (T + 1)) / 2;

export interface TrainShape {
  B: number; // rows
  T: number; // tokens per row
  K: number; // prompt length
  L: number; // adapted layers (the top L)
  lossRows: number; // rows with a target (the head runs on these only)
}

/** FLOPs of one training step (forward + backward to the adapter). */
export function trainFlops(c: LlamaConfig, s: TrainShape): number {
  const { q, kv, lin, head } = parts(c);
  const M = s.B * s.T;
  let f = c.nLayers * (M * lin + s.B * 4 * q * causal(s.T)); // forward of every layer
  f += s.L * (M * 4 * q * s.K + 4 * s.K * c.dim * kv); // prompt branch forward + prompt keys/values
  f += s.lossRows * head; // head forward
  f += s.lossRows * head; // head backward
  f += s.L * (M * 2 * (3 * c.dim * c.hiddenDim + c.dim * q) + M * 8 * q * s.K + 4 * s.K * c.dim * kv);
  f += Math.max(0, s.L - 1) * (s.B * 8 * q * causal(s.T) + M * 2 * (c.dim * q + 2 * c.dim * kv));
  return f;
}

/** FLOPs of a prefill of T tokens (one row, logits of the last position only). */
export function prefillFlops(c: LlamaConfig, T: number): number {
  const { q, lin, head } = parts(c);
  return c.nLayers * (T * lin + 4 * q * causal(T)) + head;
}

/** FLOPs of decoding n tokens one at a time at positions 0..n-1 with a KV cache (batch 1). */
export function decodeFlops(c: LlamaConfig, n: number): number {
  const { q, lin, head } = parts(c);
  return n * (c.nLayers * lin + head) + c.nLayers * 4 * q * causal(n);
}

/**
 * FLOPs of a CLIP vision tower forward for B images (matrix products only): the patch embedding
 * 2·n·3p²·C, per layer and token q/k/v/out 8·C² and the MLP 4·C·I, and the bidirectional attention
 * 4·C·T² per row (QK^T and PV over all T = n+1 tokens); the visual projection is not run.
 */
export function clipFlops(c: { hiddenSize: number; intermediateSize: number; numLayers: number; imageSize: number; patchSize: number }, B: number): number {
  const n = (c.imageSize / c.patchSize) ** 2,
    T = n + 1,
    C = c.hiddenSize;
  return B * (2 * n * 3 * c.patchSize ** 2 * C + c.numLayers * (T * (8 * C * C + 4 * C * c.intermediateSize) + 4 * C * T * T));
}
