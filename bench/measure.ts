// The measurements: the backend's matrix-multiply peak, one adapter training step (forward,
// backward, AdamW), a prefill, and KV-cached greedy decoding. Each returns seconds and counts;
// run.ts turns them into JSON lines.

import { createAdapter } from '../src/methods/v1/adapter.js';
import { createMultimodalAdapter, MultimodalAdapter } from '../src/methods/v1/multimodal.js';
import type { EncoderIdentity } from '../src/vision/image-encoder.js';
import type { Backend } from '../src/backend/backend.js';
import { loadNativeBackend } from '../src/backend/native.js';
import { check } from '../src/core/errors.js';
import type { LlamaModel } from '../src/model/model.js';
import { zerosLike } from '../src/model/method.js';
import { AdamW } from '../src/train/optimizer.js';
import { Rng } from '../src/core/rng.js';
import { toBf16, type Matrix } from '../src/core/weights.js';
import { generateBatch } from '../src/generate/generate.js';

const now = (): number => performance.now() / 1000;

/** The middle value (the upper one of an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** Run fn up to maxReps times, stopping early once budgetS seconds have passed (at least once); median seconds. */
function timeReps(fn: () => void, maxReps: number, budgetS: number): { seconds: number; reps: number } {
  const times: number[] = [];
  const start = now();
  while (times.length < Math.max(1, maxReps)) {
    const t0 = now();
    fn();
    times.push(now() - t0);
    if (now() - start > budgetS) break;
  }
  return { seconds: median(times), reps: times.length };
}

/** timeReps for an async fn. */
/**
 * Median of runs of fn, after warm-up runs (at least warmRuns, and until warmS seconds have
 * passed): up to maxReps runs within budgetS seconds, and more until minS seconds (at most 200).
 */
async function timeRepsAsync(
  fn: () => Promise<void>,
  maxReps: number,
  budgetS: number,
  o: { warmRuns: number; warmS?: number; minS?: number },
): Promise<{ seconds: number; reps: number }> {
  const w0 = now();
  for (let i = 0; i < o.warmRuns || now() - w0 < (o.warmS ?? 0); i++) await fn();
  const minS = o.minS ?? 0;
  const times: number[] = [];
  const start = now();
  for (;;) {
    const t0 = now();
    await fn();
    times.push(now() - t0);
    const elapsed = now() - start;
    if (times.length >= 200 || (times.length >= Math.max(1, maxReps) && elapsed >= minS) || elapsed > budgetS) break;
  }
  return { seconds: median(times), reps: times.length };
}

export function randomF32(n: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.uniform() - 0.5;
  return a;
}

export interface PeakResult {
  gflops: number; // best median GFLOP/s among the kernels tried for this dtype
  kernel: string; // which kernel and shape gave it
  fp32Gemm: number; // fp32 1024x1024x1024 GFLOP/s (always measured): native gemm, else backend matmul
}

/**
 * The machine's matrix-multiply peak: fp32 GEMM 1024^3 with B transposed as in the model's x·W^T
 * (the native gemm on a native backend, which is not a Backend kernel; else matmul with an f32
 * weight), and matmul with a weight of the run's dtype (M=1024, 1024x1024); on a native backend
 * also 512x4096x4096. The best median is the peak the run's GFLOP/s is compared with. On a device
 * backend each timed matmul ends with a sync of one output value (the wait, not the copy).
 */
export async function measurePeak(be: Backend, dtype: 'f32' | 'bf16'): Promise<PeakResult> {
  const rng = new Rng(1);
  const budget = be.name === 'native' ? 3 : 6;
  const reps = be.name === 'native' ? 7 : 3;
  const native = be.name === 'native' ? loadNativeBackend(be.threads).backend : null;
  const matmul = async (M: number, N: number, K: number, dt: 'f32' | 'bf16'): Promise<number> => {
    const x = randomF32(M * K, rng),
      wf = randomF32(N * K, rng),
      out = new Float32Array(M * N);
    const w: Matrix = dt === 'f32' ? { dtype: 'f32', rows: N, cols: K, data: wf } : { dtype: 'bf16', rows: N, cols: K, data: toBf16(wf) };
    be.matmul(out, x, w, Math.min(M, 16)); // warm-up (a device also compiles and uploads here)
    be.matmul(out, x, w, M);
    await be.memory.sync(out.subarray(0, 1));
    const t = await timeRepsAsync(
      async () => {
        be.matmul(out, x, w, M);
        await be.memory.sync(out.subarray(0, 1));
      },
      reps,
      budget,
      { warmRuns: 0 },
    );
    return (2 * M * N * K) / t.seconds / 1e9;
  };
  const gemm = async (M: number, N: number, K: number): Promise<number> => {
    if (!native) return matmul(M, N, K, 'f32');
    const A = randomF32(M * K, rng),
      B = randomF32(N * K, rng),
      C = new Float32Array(M * N);
    native.gemm(false, true, Math.min(M, 64), Math.min(N, 64), K, 1, A, K, B, K, 0, C, N); // warm-up
    const t = timeReps(() => native.gemm(false, true, M, N, K, 1, A, K, B, K, 0, C, N), reps, budget);
    return (2 * M * N * K) / t.seconds / 1e9;
  };
  const fp32Gemm = await gemm(1024, 1024, 1024);
  const tried: [string, number][] = [[`${native ? 'gemm' : 'matmul'} fp32 1024x1024x1024`, fp32Gemm]];
  tried.push([`matmul ${dtype} 1024x1024x1024`, await matmul(1024, 1024, 1024, dtype)]);
  if (native) {
    if (dtype === 'f32') tried.push(['gemm fp32 512x4096x4096', await gemm(512, 4096, 4096)]);
    tried.push([`matmul ${dtype} 512x4096x4096`, await matmul(512, 4096, 4096, dtype)]);
  }
  // a bf16 run is compared with the bf16 kernels only (they can be faster than fp32)
  const pool = dtype === 'bf16' ? tried.filter(([k]) => k.includes('bf16')) : tried;
  const [kernel, gflops] = pool.reduce((a, b) => (b[1] > a[1] ? b : a));
  return { gflops, kernel, fp32Gemm };
}

export interface TrainBenchOptions {
  B: number;
  T: number;
  K: number;
  L: number;
  steps: number; // timed steps (at least; more until 0.5 s) after the warm-up
  afterWarmup?: () => void; // called between the warm-up and the timed steps (--profile resets there)
  /** Train a multimodal adapter instead, each row with its own image's cached features of this encoder (F values, random here). */
  multimodal?: EncoderIdentity;
}

export interface TrainResult {
  stepSeconds: number; // median
  steps: number;
  lossRows: number;
  loss: number; // loss of the last step (sanity)
  adapterParams: number;
}

/** Token rows as bench_torch.py makes them: ids uniform in [3, vocab); targets = the next token on positions T/2 .. T-2, -100 elsewhere. */
export function trainBatch(vocab: number, B: number, T: number, seed = 0): { tokens: number[][]; targets: number[][]; lossRows: number } {
  const rng = new Rng(seed);
  const lo = Math.min(3, vocab - 1);
  const tokens = Array.from({ length: B }, () => Array.from({ length: T }, () => lo + Math.floor(rng.uniform() * (vocab - lo))));
  let lossRows = 0;
  const targets = tokens.map((row) =>
    row.map((_, t) => {
      if (t >= T >> 1 && t < T - 1) {
        lossRows++;
        return row[t + 1];
      }
      return -100;
    }),
  );
  return { tokens, targets, lossRows };
}

/**
 * Forward + backward + AdamW step of a fresh adapter (K prompts, top L layers); median over `steps`
 * after one warm-up. A step ends with its parameters on the host (a device backend syncs them, as
 * finetune does).
 */
export async function measureTrain(model: LlamaModel, o: TrainBenchOptions): Promise<TrainResult> {
  const c = model.config;
  check(o.T <= c.maxSeqLen, `bench: --seq ${o.T} is longer than the model's context of ${c.maxSeqLen}`);
  const options = { promptLength: o.K, adapterLayers: o.L, seed: 0 };
  const adapter = o.multimodal ? createMultimodalAdapter(model, { ...options, encoder: o.multimodal }) : createAdapter(model, options);
  const params = adapter.parameters();
  const shapes = new Map([...params.keys()].map((k) => [k, adapter.shapeOf(k)]));
  const opt = new AdamW(params, shapes, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.02 });
  const grads = zerosLike(adapter);
  const { tokens, targets, lossRows } = trainBatch(c.vocabSize, o.B, o.T);
  // a different image per row: features as the cache holds them (computed once, never in the step)
  const rng = new Rng(2);
  const feats = o.multimodal ? tokens.map(() => randomF32(o.multimodal!.featureDim, rng)) : [];
  let loss = NaN;
  const step = async (): Promise<void> => {
    const sources = adapter instanceof MultimodalAdapter ? adapter.rowSources(feats) : undefined;
    loss = (await model.lossAndGradsAsync(tokens, targets, adapter, grads, sources)).loss;
    opt.update(model.backend, grads, 1e-3);
    await model.backend.memory.sync(...params.values());
    adapter.invalidate();
  };
  // Warm-up: one step (it allocates the training activations), and more until 0.3 s have passed:
  // on small models the first steps ran at half speed (JIT, first touches), so a median of five
  // steps after a single warm-up swung between 55k and 105k tok/s on tinystories-656k.
  const w0 = now();
  for (let i = 0; i < 1 || now() - w0 < 0.3; i++) await step();
  o.afterWarmup?.();
  // Timed: at least o.steps steps and 0.5 s (at most 200 steps); the PyTorch peer is given the
  // same number of timed steps.
  const times: number[] = [];
  const t1 = now();
  while (times.length < Math.max(1, o.steps) || (now() - t1 < 0.5 && times.length < 200)) {
    const t0 = now();
    await step();
    times.push(now() - t0);
  }
  check(Number.isFinite(loss), `bench: training loss is ${loss}`);
  const adapterParams = [...params.values()].reduce((a, v) => a + v.length, 0);
  return { stepSeconds: median(times), steps: times.length, lossRows, loss, adapterParams };
}

/** Median seconds of greedy generateBatch([prompt]) runs producing exactly maxTokens tokens (timing rules: timeRepsAsync). */
function timeGreedy(
  model: LlamaModel,
  prompt: readonly number[],
  maxTokens: number,
  maxReps: number,
  warm: { warmRuns: number; warmS?: number; minS?: number },
): Promise<{ seconds: number; reps: number }> {
  return timeRepsAsync(() => greedyRun(model, prompt, maxTokens), maxReps, 20, warm);
}

/** One greedy generation of exactly maxTokens tokens after `prompt` (the unit decode and prefill time). */
async function greedyRun(model: LlamaModel, prompt: readonly number[], maxTokens: number): Promise<void> {
  const [r] = await generateBatch(model, [prompt], { temperature: 0, maxTokens, stopTokens: [] });
  check(r.ids.length === maxTokens, `bench: generation produced ${r.ids.length} of ${maxTokens} tokens`);
}

/** Seconds of one run of the decode kind (greedy, n tokens after BOS), to pair with one run of a peer. */
export async function decodeOnce(model: LlamaModel, n: number): Promise<number> {
  const c = model.config;
  const t0 = now();
  await greedyRun(model, [c.bosId], Math.min(n, c.maxSeqLen - 1));
  return now() - t0;
}

export interface PrefillResult {
  seconds: number; // median seconds of one prefill
  T: number;
  reps: number;
}

/** A prefill of T tokens (batch 1, BOS + random ids) through generateBatch with maxTokens 1: one forward, logits of the last position only. */
export async function measurePrefill(model: LlamaModel, T: number, maxReps: number): Promise<PrefillResult> {
  const c = model.config;
  T = Math.min(T, c.maxSeqLen - 1);
  check(T >= 1, 'bench: the model context is too short for a prefill');
  const ids = trainBatch(c.vocabSize, 1, T, 1).tokens[0];
  ids[0] = c.bosId;
  const t = await timeGreedy(model, ids, 1, maxReps, { warmRuns: 1 });
  return { seconds: t.seconds, T, reps: t.reps };
}

export interface DecodeResult {
  seconds: number; // median seconds for n tokens
  n: number;
  reps: number;
}

/**
 * KV-cached greedy decoding from BOS, batch 1, n tokens, no adapter (as bench_torch.py). The
 * prompt is BOS alone, so the "prefill" is itself a one-token step at position 0: n forward
 * steps at positions 0..n-1 produce n tokens, exactly the peer's loop.
 */
export async function measureDecode(model: LlamaModel, n: number, maxReps: number): Promise<DecodeResult> {
  const c = model.config;
  n = Math.min(n, c.maxSeqLen - 1);
  // Warm-up: full runs, at least 2 and 0.3 s, so the JIT has compiled the decode loop (a single
  // short run left tinystories-656k timings swinging between 8k and 21k tok/s); timed: at least
  // maxReps runs and 0.5 s (fast models get many runs).
  const t = await timeGreedy(model, [c.bosId], n, maxReps, { warmRuns: 2, warmS: 0.3, minS: 0.5 });
  return { seconds: t.seconds, n, reps: t.reps };
}
