// The plain-TypeScript backend: the portable oracle every other backend is tested against.

import type { AdamwStep, AttnShape, Backend, PromptShape } from '../backend.js';
import type { Matrix } from '../../core/weights.js';
import { LinearKernels } from './linear.js';
import { AttentionKernels } from './attention.js';
import * as ew from './elementwise.js';
import * as loss from './loss.js';

export class TsBackend implements Backend {
  readonly name = 'ts' as const;
  readonly threads = 1;
  private lin = new LinearKernels();
  private att = new AttentionKernels();

  matmul(out: Float32Array, x: Float32Array, w: Matrix, M: number, accumulate = false): void {
    this.lin.matmul(out, x, w, M, accumulate);
  }
  matmulBack(out: Float32Array, dy: Float32Array, w: Matrix, M: number, accumulate = false): void {
    this.lin.matmulBack(out, dy, w, M, accumulate);
  }
  gemm(tA: boolean, tB: boolean, M: number, N: number, K: number, alpha: number, A: Float32Array, lda: number, B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number): void {
    this.lin.gemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  rmsnorm(out: Float32Array, x: Float32Array, w: Float32Array, rows: number, dim: number, eps: number, rstd?: Float32Array): void {
    ew.rmsnorm(out, x, w, rows, dim, eps, rstd);
  }
  rmsnormBack(dx: Float32Array, dy: Float32Array, x: Float32Array, w: Float32Array, rstd: Float32Array, rows: number, dim: number, accumulate: boolean): void {
    ew.rmsnormBack(dx, dy, x, w, rstd, rows, dim, accumulate);
  }
  rope(x: Float32Array, B: number, T: number, nHeads: number, headDim: number, pos: Int32Array, cos: Float32Array, sin: Float32Array, inverse: boolean): void {
    ew.rope(x, B, T, nHeads, headDim, pos, cos, sin, inverse);
  }
  siluGate(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
    ew.siluGate(out, a, b, n);
  }
  siluGateBack(da: Float32Array, db: Float32Array, dy: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
    ew.siluGateBack(da, db, dy, a, b, n);
  }
  add(x: Float32Array, y: Float32Array, n: number): void {
    ew.add(x, y, n);
  }
  toBf16(out: Uint16Array, x: Float32Array, n: number): void {
    ew.toBf16(out, x, n);
  }

  fromBf16(out: Float32Array, x: Uint16Array, n: number): void {
    ew.fromBf16(out, x, n);
  }

  embed(out: Float32Array, table: Matrix, ids: Int32Array, n: number): void {
    ew.embed(out, table, ids, n);
  }
  attention(out: Float32Array, q: Float32Array, kc: Float32Array, vc: Float32Array, pos: Int32Array, s: AttnShape, probs?: Float32Array): void {
    this.att.attention(out, q, kc, vc, pos, s, probs);
  }
  attentionBack(dq: Float32Array, dk: Float32Array, dv: Float32Array, dout: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, s: AttnShape): void {
    this.att.attentionBack(dq, dk, dv, dout, q, k, v, s);
  }
  promptAttention(out: Float32Array, q: Float32Array, pk: Float32Array, pv: Float32Array, gate: Float32Array, s: PromptShape, probs?: Float32Array): void {
    this.att.promptAttention(out, q, pk, pv, gate, s, probs);
  }
  promptAttentionBack(dq: Float32Array | null, dpk: Float32Array, dpv: Float32Array, dgate: Float32Array, dout: Float32Array, q: Float32Array, pk: Float32Array, pv: Float32Array, gate: Float32Array, probs: Float32Array, s: PromptShape): void {
    this.att.promptAttentionBack(dq, dpk, dpv, dgate, dout, q, pk, pv, gate, probs, s);
  }
  crossEntropy(logits: Float32Array, targets: Int32Array, rows: number, V: number, dlogits: Float32Array | null, scale: number): number {
    return loss.crossEntropy(logits, targets, rows, V, dlogits, scale);
  }
  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number, o: AdamwStep): void {
    loss.adamw(p, g, m, v, n, o);
  }
}
