// Trainable task heads over a frozen backbone's features, with the Hugging Face names and layouts so
// a head trained here drops into the HF model class: `classifier` (ViTForImageClassification: a
// Linear on the CLS token; also the linear probe of any backbone), `qa_outputs`
// (RobertaForQuestionAnswering: a Linear (2, C) on every token: start / end logits) and
// `classifier.dense` + tanh + `classifier.out_proj` (RobertaForSequenceClassification, on <s>).
// Forward keeps its input; backward gives the parameter gradients and d features. The products run
// on the backend's matmul kernels; the small per-head reductions (bias sums, tanh) are loops over
// the head's (rows, outputs) values.

import type { Backend } from '../../backend/backend.js';
import { LlamaAdapterError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import type { Matrix } from '../../core/weights.js';

export type HeadKind = 'linear' | 'roberta-classifier';

export interface TaskHead {
  readonly kind: HeadKind;
  readonly name: string; // key prefix in files ('classifier', 'qa_outputs')
  readonly outputs: number; // values per feature row
  /** Parameters by file name (live arrays). */
  tensors(): Map<string, Float32Array>;
  shapeOf(name: string): number[];
  /** out (n, outputs) for features (n, C); keeps them for backward. */
  forward(be: Backend, feats: Float32Array, n: number): Float32Array;
  /** From d out (n, outputs): writes the parameter gradients into `grads` (keyed like tensors()), returns d features (n, C). */
  backward(be: Backend, dOut: Float32Array, grads: Map<string, Float32Array>): Float32Array;
}

/** dW (out, C) = dY^T X and db (out) = column sums of dY, for dY (n, out) and X (n, C). */
function linearGrads(be: Backend, dY: Float32Array, X: Float32Array, n: number, out: number, C: number, dW: Float32Array, db: Float32Array): void {
  const dYT = new Float32Array(out * n); // (out, n)
  db.fill(0);
  for (let i = 0; i < n; i++)
    for (let o = 0; o < out; o++) {
      dYT[o * n + i] = dY[i * out + o];
      db[o] += dY[i * out + o];
    }
  be.matmulBack(dW, dYT, { dtype: 'f32', rows: n, cols: C, data: X }, out); // (out, n) . (n, C)
}

/** y = x W^T + b. */
export class LinearTaskHead implements TaskHead {
  readonly kind = 'linear';
  readonly w: Float32Array; // (outputs, C)
  readonly b: Float32Array; // (outputs)
  private x: Float32Array = new Float32Array(0); // (n, C) input of the last forward
  private n = 0;

  constructor(
    readonly name: string,
    readonly C: number,
    readonly outputs: number,
  ) {
    this.w = new Float32Array(outputs * C);
    this.b = new Float32Array(outputs);
  }

  private mat(): Matrix {
    return { dtype: 'f32', rows: this.outputs, cols: this.C, data: this.w };
  }

  tensors(): Map<string, Float32Array> {
    return new Map([
      [`${this.name}.weight`, this.w],
      [`${this.name}.bias`, this.b],
    ]);
  }

  shapeOf(name: string): number[] {
    if (name === `${this.name}.weight`) return [this.outputs, this.C];
    if (name === `${this.name}.bias`) return [this.outputs];
    throw new LlamaAdapterError(`"${name}" is not a tensor of head ${this.name}`);
  }

  forward(be: Backend, feats: Float32Array, n: number): Float32Array {
    this.x = feats;
    this.n = n;
    const y = new Float32Array(n * this.outputs);
    be.matmul(y, feats, this.mat(), n);
    be.biasAdd(y, this.b, n, this.outputs);
    return y;
  }

  backward(be: Backend, dOut: Float32Array, grads: Map<string, Float32Array>): Float32Array {
    const { n, C, outputs } = this;
    linearGrads(be, dOut, this.x, n, outputs, C, grads.get(`${this.name}.weight`)!, grads.get(`${this.name}.bias`)!);
    const dx = new Float32Array(n * C);
    be.matmulBack(dx, dOut, this.mat(), n);
    return dx;
  }
}

/** RobertaClassificationHead: out_proj(tanh(dense(x))) (HF applies it to the <s> token). */
export class RobertaClassifierHead implements TaskHead {
  readonly kind = 'roberta-classifier';
  readonly name = 'classifier';
  readonly dense: LinearTaskHead; // classifier.dense (C, C)
  readonly outProj: LinearTaskHead; // classifier.out_proj (labels, C)
  private y: Float32Array = new Float32Array(0); // tanh output (n, C)

  constructor(
    readonly C: number,
    readonly outputs: number,
  ) {
    this.dense = new LinearTaskHead('classifier.dense', C, C);
    this.outProj = new LinearTaskHead('classifier.out_proj', C, outputs);
  }

  tensors(): Map<string, Float32Array> {
    return new Map([...this.dense.tensors(), ...this.outProj.tensors()]);
  }

  shapeOf(name: string): number[] {
    return name.startsWith('classifier.dense.') ? this.dense.shapeOf(name) : this.outProj.shapeOf(name);
  }

  forward(be: Backend, feats: Float32Array, n: number): Float32Array {
    const z = this.dense.forward(be, feats, n);
    for (let i = 0; i < z.length; i++) z[i] = Math.tanh(z[i]);
    this.y = z;
    return this.outProj.forward(be, z, n);
  }

  backward(be: Backend, dOut: Float32Array, grads: Map<string, Float32Array>): Float32Array {
    const dy = this.outProj.backward(be, dOut, grads);
    for (let i = 0; i < dy.length; i++) dy[i] *= 1 - this.y[i] * this.y[i];
    return this.dense.backward(be, dy, grads);
  }
}

/** Fresh head weights as HF initialises them: N(0, 0.02^2) matrices, zero biases. */
export function initHead(h: TaskHead, seed: number): void {
  const rng = new Rng(seed);
  for (const [name, t] of h.tensors()) {
    if (name.endsWith('.bias')) t.fill(0);
    else for (let i = 0; i < t.length; i++) t[i] = rng.normal() * 0.02;
  }
}

/** Mean cross-entropy of logits (n, V) against labels (n) (< 0: no loss) and d loss / d logits. */
export function crossEntropyMean(
  be: Backend,
  logits: Float32Array,
  labels: Int32Array,
  n: number,
  V: number,
): { loss: number; dlogits: Float32Array; count: number } {
  let count = 0;
  for (let i = 0; i < n; i++) if (labels[i] >= 0) count++;
  const dlogits = new Float32Array(n * V);
  if (count === 0) return { loss: 0, dlogits, count };
  return { loss: be.crossEntropy(logits, labels, n, V, dlogits, 1 / count) / count, dlogits, count };
}

/**
 * HF's extractive-QA loss from qa_outputs (B*T, 2) (start, end per token): positions clamped to
 * [0, T], T ignored; cross-entropy over all T positions (padding included, as HF); (start + end) / 2,
 * each the mean over its counted rows. Returns the loss and d loss / d qa_outputs (B*T, 2).
 */
export function spanLoss(be: Backend, out: Float32Array, B: number, T: number, starts: Int32Array, ends: Int32Array): { loss: number; dOut: Float32Array } {
  const dOut = new Float32Array(B * T * 2);
  let loss = 0;
  for (const [col, pos] of [
    [0, starts],
    [1, ends],
  ] as const) {
    const logits = new Float32Array(B * T),
      tg = new Int32Array(B);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) logits[b * T + t] = out[(b * T + t) * 2 + col];
      const p = Math.min(Math.max(pos[b], 0), T);
      tg[b] = p === T ? -1 : p;
    }
    const ce = crossEntropyMean(be, logits, tg, B, T);
    loss += ce.loss / 2;
    for (let i = 0; i < B * T; i++) dOut[i * 2 + col] = ce.dlogits[i] / 2;
  }
  return { loss, dOut };
}
