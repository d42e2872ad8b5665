// The transformer encoder layers shared by ViT (pre-LN) and RoBERTa (post-LN), forward and the
// backward that training needs, with the attention hook of model/method.ts:
//   pre-LN  (ViT):     a = LN1(h); q,k,v = a W + b; h += Wo attn + bo; h += fc2(act(fc1(LN2(h))))
//   post-LN (RoBERTa): q,k,v = h W + b; a = LN1(Wo attn + bo + h); h = LN2(fc2(act(fc1(a))) + a)
// attn is softmax(q k^T / sqrt(hs) + padding mask) v, and in layer l the row's PromptSource may add
// its prompt branch exactly as in the LLaMA forward (model/forward.ts): promptLayer(l) gives the
// prompt keys/values (through the layer's frozen key/value projections, biases included) and the
// effective gates, and the gated branch, g_h softmax(q pk^T / sqrt(hs)) pv, is added to attn
// (promptAttention, the same kernel); a `joint` layer (the vpt baseline) instead puts the prompt
// keys in one softmax with the tokens (prefixAttention). Zero gates leave attn untouched, bit for bit.
//
// Backward runs from d(output) down to the lowest adapted layer only, through frozen weights
// (matmulBack, layerNormBack, geluBack: input gradients only, no weight gradients), and returns the
// hook gradients (d pk, d pv, d gate per adapted layer) for the method's paramGrads. Activations
// are grow-only buffers; a training forward keeps, per adapted layer, the LayerNorm inputs and
// statistics, q/k/v, the prompt probabilities and the MLP pre-activation.

import type { Backend, GeluKind, PromptShape } from '../../backend/backend.js';
import { check } from '../../core/errors.js';
import type { Matrix } from '../../core/weights.js';
import type { PromptLayer, PromptLayerGrads, PromptProjections, PromptSource, SourceGrads } from '../method.js';

/** One encoder layer's frozen weights (f32). */
export interface EncoderLayerWeights {
  wq: Matrix; // (C, C)
  bq: Float32Array | null; // (C), null without qkv bias
  wk: Matrix;
  bk: Float32Array | null;
  wv: Matrix;
  bv: Float32Array | null;
  wo: Matrix; // (C, C) attention output
  bo: Float32Array;
  ln1w: Float32Array; // ViT layernorm_before / RoBERTa attention.output.LayerNorm
  ln1b: Float32Array;
  ln2w: Float32Array; // ViT layernorm_after / RoBERTa output.LayerNorm
  ln2b: Float32Array;
  fc1: Matrix; // (I, C) intermediate.dense
  fc1b: Float32Array;
  fc2: Matrix; // (C, I) output.dense
  fc2b: Float32Array;
}

/** The stack's shape: width, heads, MLP width, activation, LayerNorm eps, and where the norms sit. */
export interface StackShape {
  C: number; // width
  H: number; // heads (hs = C / H; no GQA in these encoders)
  I: number; // MLP hidden width
  act: GeluKind;
  eps: number;
  preNorm: boolean; // true: ViT (pre-LN), false: RoBERTa (post-LN)
}

export interface EncoderForwardOptions {
  source?: PromptSource<unknown> | null; // the prompt method (null / absent: the base model)
  train?: boolean; // keep activations for backward()
  keep?: boolean; // return every hidden state (HF hidden_states; tests)
}

export interface EncoderOutput {
  last: Float32Array; // (B, T, C) last_hidden_state
  hidden?: Float32Array[]; // N+1 x (B, T, C) when asked for
}

const EMPTY = new Float32Array(0);

/** What one layer keeps for backward (or scratch when not training that layer). */
class LayerActs {
  x1 = EMPTY; // (M, C) LN1 input: pre-LN h_in, post-LN y1 = Wo attn + bo + h_in
  mean1 = EMPTY; // (M)
  rstd1 = EMPTY;
  q = EMPTY; // (M, C)
  k = EMPTY;
  v = EMPTY;
  probs = EMPTY; // (B, H, T, K) gated prompt softmax
  x2 = EMPTY; // (M, C) LN2 input: pre-LN h_mid, post-LN y2
  mean2 = EMPTY;
  rstd2 = EMPTY;
  u = EMPTY; // (M, I) MLP pre-activation

  ensure(M: number, C: number, I: number, probs: number): void {
    if (this.q.length < M * C) {
      for (const k of ['x1', 'q', 'k', 'v', 'x2'] as const) this[k] = new Float32Array(M * C);
      for (const k of ['mean1', 'rstd1', 'mean2', 'rstd2'] as const) this[k] = new Float32Array(M);
      this.u = new Float32Array(M * I);
    }
    if (this.probs.length < probs) this.probs = new Float32Array(probs);
  }
}

export class EncoderStack {
  private readonly scratch = new LayerActs();
  private readonly saved: LayerActs[];
  private M = 0;
  private a = EMPTY; // (M, C) normed input / residual scratch
  private att = EMPTY; // (M, C) attention output
  private tmp = EMPTY; // (M, C)
  private g = EMPTY; // (M, I) activation output
  private d: Record<'da' | 'datt' | 'dq' | 'dk' | 'dv' | 'dy', Float32Array> = { da: EMPTY, datt: EMPTY, dq: EMPTY, dk: EMPTY, dv: EMPTY, dy: EMPTY };
  private dg = EMPTY; // (M, I)
  private hook: PromptLayerGrads[] = [];
  private last: { B: number; T: number; mask: Int32Array | null; source: PromptSource<unknown>; lo: number } | null = null;

  constructor(
    private readonly be: Backend,
    readonly layers: readonly EncoderLayerWeights[],
    readonly shape: StackShape,
  ) {
    this.saved = layers.map(() => new LayerActs());
  }

  /** The attention shape a prompt method sees (PromptHost.attnShape; no GQA in these encoders). */
  get attnShape() {
    const { C, H } = this.shape;
    return { width: C, layers: this.layers.length, heads: H, kvHeads: H, headDim: C / H };
  }

  /** Layer l's frozen key / value projections, biases included (PromptHost.promptProjections). */
  promptProjections(l: number): PromptProjections {
    const L = this.layers[l];
    return { wk: L.wk, bk: L.bk, wv: L.wv, bv: L.bv };
  }

  private ensure(M: number): void {
    if (M <= this.M) return;
    const { C, I } = this.shape;
    this.M = M;
    this.a = new Float32Array(M * C);
    this.att = new Float32Array(M * C);
    this.tmp = new Float32Array(M * C);
    this.g = new Float32Array(M * I);
  }

  private qkv(out: Float32Array, x: Float32Array, w: Matrix, b: Float32Array | null, M: number): void {
    this.be.matmul(out, x, w, M);
    if (b) this.be.biasAdd(out, b, M, this.shape.C);
  }

  /**
   * Run every layer on h (B*T, C) in place. `mask` (B*T) 0/1 hides padded keys (null: none);
   * `source` adds its prompt branch in its adapted layers; `train` keeps what backward needs from
   * the source's first layer up; `keep` receives a copy of h before the first layer and after each
   * (HF hidden_states).
   */
  run(h: Float32Array, B: number, T: number, mask: Int32Array | null, source: PromptSource<unknown> | null, train: boolean, keep?: Float32Array[]): void {
    const be = this.be,
      { C, H, I, act, eps, preNorm } = this.shape;
    const M = B * T,
      N = this.layers.length;
    this.ensure(M);
    const lo = train && source ? source.firstLayer : N;
    const K = source?.promptLength ?? 0;
    keep?.push(h.slice(0, M * C));
    const { a, att, tmp, g } = this;
    for (let l = 0; l < N; l++) {
      const L = this.layers[l];
      const save = l >= lo;
      const A = save ? this.saved[l] : this.scratch;
      A.ensure(M, C, I, B * H * T * K);
      let x = h; // the q/k/v input
      if (preNorm) {
        if (save) A.x1.set(h.subarray(0, M * C));
        be.layerNorm(a, h, L.ln1w, L.ln1b, M, C, eps, A.mean1, A.rstd1);
        x = a;
      }
      this.qkv(A.q, x, L.wq, L.bq, M);
      this.qkv(A.k, x, L.wk, L.bk, M);
      this.qkv(A.v, x, L.wv, L.bv, M);
      const p = source ? source.promptLayer(l) : null;
      this.attend(att, A, p, B, T, mask);
      be.matmul(tmp, att, L.wo, M);
      be.biasAdd(tmp, L.bo, M, C);
      if (preNorm) {
        be.add(h, tmp, M * C);
        if (save) A.x2.set(h.subarray(0, M * C));
        be.layerNorm(a, h, L.ln2w, L.ln2b, M, C, eps, A.mean2, A.rstd2);
      } else {
        be.add(tmp, h, M * C); // y1
        if (save) A.x1.set(tmp.subarray(0, M * C));
        be.layerNorm(a, tmp, L.ln1w, L.ln1b, M, C, eps, A.mean1, A.rstd1);
      }
      be.matmul(A.u, a, L.fc1, M);
      be.biasAdd(A.u, L.fc1b, M, I);
      be.gelu(g, A.u, M * I, act);
      be.matmul(tmp, g, L.fc2, M);
      be.biasAdd(tmp, L.fc2b, M, C);
      if (preNorm) be.add(h, tmp, M * C);
      else {
        be.add(tmp, a, M * C); // y2
        if (save) A.x2.set(tmp.subarray(0, M * C));
        be.layerNorm(h, tmp, L.ln2w, L.ln2b, M, C, eps, A.mean2, A.rstd2);
      }
      keep?.push(h.slice(0, M * C));
    }
    this.last = train && source ? { B, T, mask, source, lo } : null; // a linear probe trains no layer: nothing to keep
  }

  /** attn (B*T, C) of one layer, with the row's prompt branch (gated, or joint for vpt). */
  private attend(att: Float32Array, A: LayerActs, p: PromptLayer | null, B: number, T: number, mask: Int32Array | null): void {
    const { C, H } = this.shape;
    const s: PromptShape = { B, T, K: 0, H, Hkv: H, hs: C / H };
    if (p?.joint) {
      this.be.prefixAttention(att, A.q, A.k, A.v, p.pk, p.pv, { ...s, K: p.K }, mask, false);
      return;
    }
    this.be.prefixAttention(att, A.q, A.k, A.v, EMPTY, EMPTY, s, mask, false);
    if (p) this.be.promptAttention(att, A.q, p.pk, p.pv, p.gate, { ...s, K: p.K }, A.probs);
  }

  /**
   * Backward after run(train: true): dh (B*T, C) = d loss / d output (overwritten: scratch) down to
   * the source's first layer. Returns the hook gradients of every adapted layer.
   */
  back(dh: Float32Array): SourceGrads<unknown> {
    const r = this.last;
    check(r !== null, 'encoder backward: no training forward with a prompt source ran before it');
    const be = this.be,
      { C, H, I, act, preNorm } = this.shape;
    const { B, T, mask, source, lo } = r;
    const M = B * T,
      N = this.layers.length,
      K = source.promptLength;
    if (this.d.da.length < M * C) for (const k of Object.keys(this.d) as (keyof typeof this.d)[]) this.d[k] = new Float32Array(M * C);
    if (this.dg.length < M * I) this.dg = new Float32Array(M * I);
    if (this.hook.length !== N || (this.hook[N - 1]?.dpk.length ?? 0) < K * C)
      this.hook = Array.from({ length: N }, () => ({ dpk: new Float32Array(K * C), dpv: new Float32Array(K * C), dgate: new Float32Array(H) }));
    const { da, datt, dq, dk, dv, dy } = this.d,
      dg = this.dg;
    for (let l = N - 1; l >= lo; l--) {
      const L = this.layers[l],
        A = this.saved[l];
      if (preNorm) {
        be.matmulBack(dg, dh, L.fc2, M);
        be.geluBack(dg, dg, A.u, M * I, act);
        be.matmulBack(da, dg, L.fc1, M);
        be.layerNormBack(dh, da, A.x2, L.ln2w, A.mean2, A.rstd2, M, C, true); // dh = d h_mid
      } else {
        be.layerNormBack(dy, dh, A.x2, L.ln2w, A.mean2, A.rstd2, M, C, false); // d y2
        be.matmulBack(dg, dy, L.fc2, M);
        be.geluBack(dg, dg, A.u, M * I, act);
        be.matmulBack(da, dg, L.fc1, M);
        be.add(da, dy, M * C); // d a (LN1 output: fc1 input and residual)
        be.layerNormBack(dh, da, A.x1, L.ln1w, A.mean1, A.rstd1, M, C, false); // dh = d y1
      }
      be.matmulBack(datt, dh, L.wo, M);
      const p = source.promptLayer(l);
      const g = this.hook[l];
      g.dpk.fill(0);
      g.dpv.fill(0);
      g.dgate.fill(0);
      const s: PromptShape = { B, T, K: 0, H, Hkv: H, hs: C / H };
      const below = l > lo; // gradients to q/k/v are needed to reach lower adapted layers
      if (p?.joint) be.prefixAttentionBack(dq, dk, dv, g.dpk, g.dpv, datt, A.q, A.k, A.v, p.pk, p.pv, { ...s, K: p.K }, mask, false);
      else {
        if (below) be.prefixAttentionBack(dq, dk, dv, EMPTY, EMPTY, datt, A.q, A.k, A.v, EMPTY, EMPTY, s, mask, false);
        if (p) be.promptAttentionBack(below ? dq : null, g.dpk, g.dpv, g.dgate, datt, A.q, p.pk, p.pv, p.gate, A.probs, { ...s, K: p.K });
      }
      if (!below) break;
      be.matmulBack(da, dq, L.wq, M);
      be.matmulBack(da, dk, L.wk, M, true);
      be.matmulBack(da, dv, L.wv, M, true);
      if (preNorm)
        be.layerNormBack(dh, da, A.x1, L.ln1w, A.mean1, A.rstd1, M, C, true); // d h_in
      else be.add(dh, da, M * C); // d h_in = d y1 + through q/k/v
    }
    return { source, layers: this.hook };
  }
}
