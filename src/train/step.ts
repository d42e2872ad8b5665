// One optimizer step, the part of training every loop shares (finetune() on files; a page training
// in the browser): the mean loss and gradient of one or more micro-batches, a refusal before
// anything is applied when either is not finite, global-norm clipping, the AdamW update, and, on a
// device backend, the updated parameters brought back to the host (the gate rule, checkpoints and
// saved files read them) before the adapter is told they changed. No file system here.

import type { AdapterMethod, PromptSource } from '../model/method.js';
import { trainableTensors, zerosLike } from '../model/method.js';
import type { LlamaModel } from '../model/model.js';
import { type AdamW, gradNorm } from './optimizer.js';

/** A padded micro-batch: token rows, targets (IGNORE = no loss) and, optionally, each row's prompt source. */
export interface MicroBatch {
  tokens: number[][];
  targets: number[][];
  sources?: readonly PromptSource[];
}

/** Gradient buffers a training loop keeps across steps (zerosLike the adapter). */
export interface StepBuffers {
  grads: Map<string, Float32Array>; // the step's mean gradient
  micro: Map<string, Float32Array>; // one micro-batch's
}

export function stepBuffers(a: AdapterMethod): StepBuffers {
  return { grads: zerosLike(a), micro: zerosLike(a) };
}

/**
 * Train `adapter` one step on `batches` (averaged) at learning rate `lr`, clipping the global
 * gradient norm to `clip` (0 / undefined: no clipping). A non-finite loss or gradient norm calls
 * `diverged(loss, norm)`, which must throw: nothing of the step is applied. Returns the mean loss
 * and the gradient norm before clipping.
 */
export async function optimizerStep(
  model: LlamaModel,
  adapter: AdapterMethod,
  opt: AdamW,
  batches: readonly MicroBatch[],
  lr: number,
  clip: number | undefined,
  bufs: StepBuffers,
  diverged: (loss: number, norm: number) => never,
): Promise<{ loss: number; norm: number }> {
  const { grads, micro } = bufs;
  for (const g of grads.values()) g.fill(0);
  let lossSum = 0;
  for (const b of batches) {
    const r = await model.lossAndGradsAsync(b.tokens, b.targets, adapter, micro, b.sources);
    lossSum += r.loss;
    for (const [k, g] of grads) {
      const m = micro.get(k)!;
      for (let e = 0; e < g.length; e++) g[e] += m[e] / batches.length;
    }
  }
  const norm = gradNorm(grads);
  const loss = lossSum / batches.length;
  if (!Number.isFinite(loss) || !Number.isFinite(norm)) diverged(loss, norm);
  if (clip && norm > clip) {
    const s = clip / (norm + 1e-6);
    for (const g of grads.values()) for (let e = 0; e < g.length; e++) g[e] *= s;
  }
  opt.update(model.backend, grads, lr);
  await model.backend.memory.sync(...trainableTensors(adapter).values());
  adapter.invalidate();
  return { loss, norm };
}
