// AdamW over an adapter's parameters (betas 0.9/0.95 as the paper). Decoupled weight decay on
// matrices (the prompts) only, never on gates: the official code's param-group split. The moment
// buffers are plain Float32Arrays keyed like adapter.parameters(), saved in training checkpoints.

import type { Backend } from '../backend/backend.js';

export interface AdamwOptions {
  beta1: number; // default 0.9
  beta2: number; // default 0.95
  eps: number; // default 1e-8
  weightDecay: number; // on matrices; default 0.02
}

export class AdamW {
  readonly m = new Map<string, Float32Array>(); // first moments
  readonly v = new Map<string, Float32Array>(); // second moments
  step = 0; // optimizer steps taken

  constructor(
    private readonly params: Map<string, Float32Array>,
    private readonly shapes: Map<string, number[]>,
    readonly o: AdamwOptions,
  ) {
    for (const [k, p] of params) {
      this.m.set(k, new Float32Array(p.length));
      this.v.set(k, new Float32Array(p.length));
    }
  }

  /** Weight decay applies to matrices (2-D tensors) only. */
  decays(name: string): boolean {
    return (this.shapes.get(name)?.length ?? 0) >= 2;
  }

  update(be: Backend, grads: Map<string, Float32Array>, lr: number): void {
    this.step++;
    for (const [k, p] of this.params) {
      be.adamw(p, grads.get(k)!, this.m.get(k)!, this.v.get(k)!, p.length, {
        lr,
        beta1: this.o.beta1,
        beta2: this.o.beta2,
        eps: this.o.eps,
        weightDecay: this.decays(k) ? this.o.weightDecay : 0,
        step: this.step,
      });
    }
  }
}

/** Global L2 norm of a gradient map. */
export function gradNorm(grads: Map<string, Float32Array>): number {
  let s = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return Math.sqrt(s);
}
