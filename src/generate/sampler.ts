// Token sampling from one row of logits: repetition penalty, OpenAI's presence and frequency
// penalties, greedy (temperature 0), temperature, top-k, top-p (nucleus). Scratch buffers are
// allocated once per sampler, not per token.

import { rowKernels } from '../backend/ts/elementwise.js';
import { Rng } from '../core/rng.js';

export interface SamplingOptions {
  temperature?: number; // 0 = greedy (default 0.8)
  topK?: number; // keep the k most likely tokens (0 = off)
  topP?: number; // keep the smallest set with cumulative probability >= p (1 = off)
  repetitionPenalty?: number; // > 1 discourages tokens already in the context (CTRL-style; 1 = off)
  presencePenalty?: number; // subtracted from the logit of every token generated so far (OpenAI; 0 = off)
  frequencyPenalty?: number; // subtracted once per earlier occurrence in the generated text (OpenAI; 0 = off)
  seed?: number; // RNG seed (same seed, same text)
}

export class Sampler {
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly repetitionPenalty: number;
  readonly presencePenalty: number;
  readonly frequencyPenalty: number;
  private rng: Rng;
  private probs: Float32Array; // (V)
  private idx: Int32Array; // (V) candidate indices

  /**
   * `argmax` picks the greedy token (the engine passes its backend's kernel, which is several
   * times faster than a JavaScript scan over a large vocabulary).
   */
  constructor(
    readonly vocabSize: number,
    o: SamplingOptions = {},
    private readonly argmaxOf: (x: Float32Array, n: number) => number = argmax,
  ) {
    this.temperature = o.temperature ?? 0.8;
    this.topK = o.topK ?? 0;
    this.topP = o.topP ?? 1;
    this.repetitionPenalty = o.repetitionPenalty ?? 1;
    this.presencePenalty = o.presencePenalty ?? 0;
    this.frequencyPenalty = o.frequencyPenalty ?? 0;
    this.rng = new Rng(o.seed ?? 0);
    this.probs = new Float32Array(vocabSize);
    this.idx = new Int32Array(vocabSize);
  }

  /**
   * Pick the next id from logits (V) (modified in place); `seen` = ids of the context so far,
   * `counts` = how often each id occurs in the generated text (for the OpenAI penalties).
   */
  sample(logits: Float32Array, seen: Iterable<number>, counts?: ReadonlyMap<number, number>): number {
    const V = this.vocabSize;
    if (this.repetitionPenalty !== 1) {
      const p = this.repetitionPenalty;
      for (const id of seen) logits[id] = logits[id] > 0 ? logits[id] / p : logits[id] * p;
    }
    if (counts && (this.presencePenalty !== 0 || this.frequencyPenalty !== 0)) {
      for (const [id, n] of counts) logits[id] -= this.presencePenalty + n * this.frequencyPenalty;
    }
    if (this.temperature <= 0) return this.argmaxOf(logits, V);
    const probs = this.probs;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
    let sum = 0;
    for (let i = 0; i < V; i++) {
      const e = Math.exp((logits[i] - max) / this.temperature);
      probs[i] = e;
      sum += e;
    }
    for (let i = 0; i < V; i++) probs[i] /= sum;
    const useK = this.topK > 0 && this.topK < V;
    const useP = this.topP > 0 && this.topP < 1;
    if (!useK && !useP) return this.pickFrom(probs, V);
    // candidates: with top-p alone, tokens below (1-p)/(V-1) can never be in the nucleus
    const idx = this.idx;
    let n = 0;
    const cutoff = useP && !useK ? (1 - this.topP) / (V - 1) : -1;
    for (let i = 0; i < V; i++) if (probs[i] >= cutoff) idx[n++] = i;
    const cand = idx.subarray(0, n);
    cand.sort((a, b) => probs[b] - probs[a] || a - b);
    if (useK) n = Math.min(n, this.topK);
    let total = 0;
    let last = n - 1;
    for (let i = 0; i < n; i++) {
      total += probs[idx[i]];
      if (useP && total >= this.topP) {
        last = i;
        break;
      }
    }
    const r = this.rng.uniform() * total;
    let acc = 0;
    for (let i = 0; i <= last; i++) {
      acc += probs[idx[i]];
      if (r < acc) return idx[i];
    }
    return idx[last];
  }

  private pickFrom(probs: Float32Array, V: number): number {
    const r = this.rng.uniform();
    let acc = 0;
    for (let i = 0; i < V; i++) {
      acc += probs[i];
      if (r < acc) return i;
    }
    return V - 1;
  }
}

/** The first index of the largest of x[0..n) (NaN never wins): the TypeScript backend's kernel. */
export function argmax(x: Float32Array, n: number): number {
  return rowKernels.argmax(x, n);
}
