// The training loop of the task methods (methods/prompts/task.ts) on any backbone: shuffled
// mini-batches per epoch, AdamW (0.9 / 0.999, decoupled weight decay on matrices: prompts and head
// weights, never gates or biases) over trainableTensors(method) (the one filter), linear warmup and
// a half-cycle cosine (train/schedule.ts), an optional step budget; and the evaluations: accuracy
// for classification, the official SQuAD scores for span extraction.

import { check } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import type { Backbone } from '../../methods/prompts/backbones.js';
import { type TaskMethod, taskStep } from '../../methods/prompts/task.js';
import { trainableTensors, zerosLike } from '../../model/method.js';
import type { RobertaInput } from '../../model/encoders/roberta.js';
import { AdamW } from '../optimizer.js';
import { learningRate } from '../schedule.js';
import type { TaskDataset } from './batches.js';
import { bestAnswer, type QaFeature, type SquadExample, squadScores } from './squad.js';

export interface TrainTaskOptions {
  epochs: number;
  batchSize: number;
  lr: number; // peak learning rate
  weightDecay?: number; // default 0.01 (matrices only)
  warmupSteps?: number; // default: a tenth of the steps
  maxSteps?: number; // stop after this many optimizer steps
  seed?: number; // shuffling (default 0)
  onStep?: (s: { step: number; totalSteps: number; epoch: number; loss: number; lr: number }) => void;
  onEpoch?: (epoch: number) => void;
}

export interface TrainTaskResult {
  steps: number;
  losses: number[]; // per step
  seconds: number;
  examples: number; // rows trained on (all epochs)
}

/** Train `m` on `data` (the method's parameters change in place). */
export function trainTask<In>(bb: Backbone<In>, m: TaskMethod, data: TaskDataset<In>, o: TrainTaskOptions): TrainTaskResult {
  check(Number.isInteger(o.batchSize) && o.batchSize >= 1, `batch size must be a positive integer (got ${o.batchSize})`);
  check(Number.isInteger(o.epochs) && o.epochs >= 1, `epochs must be a positive integer (got ${o.epochs})`);
  check(data.size > 0, 'no training records');
  const be = bb.view.backend;
  const params = trainableTensors(m);
  const shapes = new Map([...params.keys()].map((k) => [k, m.shapeOf(k)]));
  const opt = new AdamW(params, shapes, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: o.weightDecay ?? 0.01 });
  const perEpoch = Math.ceil(data.size / o.batchSize);
  const totalSteps = Math.min(o.maxSteps ?? Infinity, perEpoch * o.epochs);
  const warmupSteps = o.warmupSteps ?? Math.floor(totalSteps / 10);
  const grads = zerosLike(m);
  const rng = new Rng(o.seed ?? 0);
  const losses: number[] = [];
  const t0 = performance.now();
  let step = 0,
    examples = 0;
  for (let epoch = 0; epoch < o.epochs && step < totalSteps; epoch++) {
    const order = Array.from({ length: data.size }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    for (let s = 0; s < order.length && step < totalSteps; s += o.batchSize) {
      const idx = order.slice(s, s + o.batchSize);
      const { x, targets } = data.batch(idx);
      const { loss } = taskStep(bb, m, x, targets, grads);
      check(Number.isFinite(loss), `training stopped at step ${step + 1}: the loss is ${loss}`);
      const lr = learningRate({ peakLr: o.lr, minLr: 0, totalSteps, warmupSteps }, step);
      opt.update(be, grads, lr);
      m.invalidate();
      losses.push(loss);
      examples += idx.length;
      step++;
      o.onStep?.({ step, totalSteps, epoch: epoch + 1, loss, lr });
    }
    o.onEpoch?.(epoch + 1);
  }
  return { steps: step, losses, seconds: (performance.now() - t0) / 1000, examples };
}

/** Classification accuracy and mean loss of `m` on `data` (in order, batches of `batchSize`); also the predicted class ids. */
export function evaluateClassification<In>(
  bb: Backbone<In>,
  m: TaskMethod,
  data: TaskDataset<In>,
  batchSize = 32,
): { accuracy: number; loss: number; predictions: Int32Array } {
  let right = 0,
    loss = 0;
  const predictions = new Int32Array(data.size);
  for (let s = 0; s < data.size; s += batchSize) {
    const idx = Array.from({ length: Math.min(batchSize, data.size - s) }, (_, i) => s + i);
    const { x, targets } = data.batch(idx);
    check('labels' in targets, 'evaluateClassification: not a classification dataset');
    const r = taskStep(bb, m, x, targets, null);
    const V = m.head.outputs;
    for (let b = 0; b < r.n; b++) {
      let best = 0;
      for (let c = 1; c < V; c++) if (r.out[b * V + c] > r.out[b * V + best]) best = c;
      predictions[s + b] = best;
      if (best === targets.labels[b]) right++;
    }
    loss += r.loss * r.n;
  }
  return { accuracy: right / data.size, loss: loss / data.size, predictions };
}

/** SQuAD exact match / F1 (x 100) of `m` on the examples whose features `data` batches. */
export function evaluateQa(
  bb: Backbone<RobertaInput>,
  m: TaskMethod,
  examples: readonly SquadExample[],
  features: readonly QaFeature[],
  words: readonly { start: number; end: number }[][],
  data: TaskDataset<RobertaInput>,
  batchSize = 16,
): { exact_match: number; f1: number; total: number; predictions: Map<string, string> } {
  const per: { f: QaFeature; start: Float32Array; end: Float32Array }[][] = examples.map(() => []);
  for (let s = 0; s < data.size; s += batchSize) {
    const idx = Array.from({ length: Math.min(batchSize, data.size - s) }, (_, i) => s + i);
    const { x, targets } = data.batch(idx);
    const r = taskStep(bb, m, x, targets, null);
    idx.forEach((fi, b) => {
      const start = new Float32Array(x.T),
        end = new Float32Array(x.T);
      for (let t = 0; t < x.T; t++) {
        start[t] = r.out[(b * x.T + t) * 2];
        end[t] = r.out[(b * x.T + t) * 2 + 1];
      }
      per[features[fi].example].push({ f: features[fi], start, end });
    });
  }
  const allowNull = examples.some((e) => e.answers.length === 0);
  const predictions = new Map(examples.map((ex, e) => [ex.id, bestAnswer(ex, words[e], per[e], allowNull)]));
  return { ...squadScores(examples, predictions), predictions };
}
