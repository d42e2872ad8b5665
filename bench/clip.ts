// `npm run bench -- --clip NAME|DIR`: a frozen image encoder (a CLIP vision tower, or a TF.js model
// such as nsfwjs:mobilenet_v2 on TF.js's wasm backend). Times
// ClipEncoder.features (every layer, the multi-scale CLS features) on batches of images, and with
// --compare-pytorch the same weights and pixels through refclip.encode (bench/clip_torch.py, the
// independent PyTorch math) in the same run; then one multimodal adapter training step per batch
// on --config with each row's image features already cached (the training loop never runs the
// encoder), next to the same step of a text adapter. JSON lines as run.ts, each with other_load_pct.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BackendName } from '../src/backend/index.js';
import { getBackend } from '../src/backend/index.js';
import { nativeInfo } from '../src/backend/native.js';
import { check, LlamaAdapterError } from '../src/core/errors.js';
import { loadClipVision } from '../src/vision/clip.js';
import { ClipEncoder, loadImageEncoder } from '../src/vision/encoder.js';
import { CLIP_SHAPES, writeSyntheticClip } from './clip-synthetic.js';
import { buildModel, repoRoot, resolveConfig, sharedDir } from './configs.js';
import { clipFlops, trainFlops } from './flops.js';
import { cpuSnapshot, otherLoadPercent, waitForIdle } from './machine.js';
import { measureTrain, median, trainBatch } from './measure.js';
import { runPythonPeer, torchStatus } from './peer.js';
import { round, type BenchLine } from './run.js';

export interface ClipBenchOptions {
  clip: string; // clip-tiny (the fixture), vit-b16, vit-l14 (synthetic, written once to the temp folder), or an HF CLIP directory
  config: string; // the language model for the multimodal training step
  backend: BackendName;
  threads?: number;
  images: number; // images per encoder forward
  steps: number; // timed repetitions (at least)
  batch: number; // training rows (B)
  seq: number; // training tokens per row (T)
  promptLength: number; // K
  adapterLayers: number; // L (0 = all but the first two, at least 1)
  comparePytorch: boolean;
  python: string;
  waitIdle: number;
}

const log = (msg: string): void => {
  process.stderr.write(`bench: ${msg}\n`);
};

/** The tower's folder: the fixture, a synthetic shape (written once per seed under the temp folder), or a path. */
function towerDir(name: string): string {
  if (isTfjs(name)) return name;
  if (name === 'clip-tiny') return path.join(sharedDir(), 'fixtures/clip-tiny');
  const shape = CLIP_SHAPES[name];
  if (shape) {
    const dir = path.join(os.tmpdir(), `llama-adapter-bench-${name}`);
    const cfg = path.join(dir, 'config.json');
    const same =
      fs.existsSync(cfg) && fs.existsSync(path.join(dir, 'model.safetensors')) && JSON.parse(fs.readFileSync(cfg, 'utf8')).hidden_size === shape.hidden_size;
    if (!same) {
      log(`writing synthetic ${name} weights (HF layout, seed 0) to ${dir}`);
      writeSyntheticClip(dir, shape);
    }
    return dir;
  }
  if (fs.existsSync(path.join(name, 'config.json'))) return name;
  throw new LlamaAdapterError(`bench --clip: "${name}" is not clip-tiny, ${Object.keys(CLIP_SHAPES).join(', ')} or an HF CLIP directory`);
}

/** A TF.js model (e.g. nsfwjs:mobilenet_v2): timed the same way, without FLOP count or PyTorch peer. */
const isTfjs = (name: string): boolean => name.startsWith('nsfwjs:') || name.endsWith('.json');

/** The deterministic pixels both sides use: x[i] = 1.5 sin(0.0073 i), rounded to float32 (bench/clip_torch.py). */
function pixels(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = 1.5 * Math.sin(0.0073 * i);
  return x;
}

export async function runClipBench(o: ClipBenchOptions, emit: (line: BenchLine) => void): Promise<void> {
  const dir = towerDir(o.clip);
  const be = getBackend(o.backend, o.threads);
  const tower = isTfjs(o.clip) ? null : loadClipVision(dir);
  const enc = tower ? new ClipEncoder(tower, be) : await loadImageEncoder(o.clip, { backend: be });
  const simd = be.name === 'native' ? (nativeInfo()?.simd ?? null) : null;
  const tfjs: BenchLine = tower ? {} : { tfjs_backend: await (await import('../src/vision/tfjs.js')).tfjsBackend() };
  const base: BenchLine = { config: o.clip, backend: be.name, threads: be.threads, simd, ...tfjs };
  const settle = async (): Promise<void> => {
    if (o.waitIdle > 0) await waitForIdle(o.waitIdle, log);
  };
  const B = o.images;
  const S = enc.preprocess.size;
  const px = pixels(B * 3 * S * S);
  const flops = tower ? clipFlops(tower.config, B) : null;

  // the encoder: a warm-up forward, then at least `steps` forwards and 2 s (at most 20 s)
  await settle();
  log(`image-encode: ${o.clip} (${enc.identity.shape}), ${B} images per forward`);
  let f = await enc.features(px, B);
  const times: number[] = [];
  const a = cpuSnapshot();
  const t1 = performance.now();
  while (times.length < o.steps || (performance.now() - t1 < 2000 && times.length < 200)) {
    const t0 = performance.now();
    f = await enc.features(px, B);
    times.push((performance.now() - t0) / 1000);
    if (performance.now() - t1 > 20000) break;
  }
  const other = otherLoadPercent(a, cpuSnapshot());
  const sec = median(times);
  const F = enc.identity.featureDim;
  const C = tower?.config.hiddenSize ?? 0;
  const pooled0 = [...f.subarray(F - C, F - C + 8)]; // image 0, the last layer's CLS after post_layernorm (CLIP)
  const ours = B / sec;
  emit({
    ...base,
    kind: 'image-encode',
    images: B,
    reps: times.length,
    batch_seconds: round(sec),
    images_per_s: round(ours),
    gflops: flops === null ? null : round(flops / sec / 1e9),
    feature_dim: F,
    other_load_pct: other,
    peak_rss_mb: round(process.resourceUsage().maxRSS / 1024),
  });

  if (o.comparePytorch && !tower) emit({ ...base, kind: 'compare', skipped: 'the PyTorch peer runs CLIP towers only' });
  if (o.comparePytorch && tower && flops !== null) {
    const script = path.join(repoRoot(), 'bench/clip_torch.py');
    const st = torchStatus(o.python, script);
    if (!st.ok) emit({ ...base, kind: 'compare', skipped: st.reason });
    else {
      await settle();
      log(`image-encode: PyTorch ${st.version} peer (refclip.encode) on the same weights and pixels`);
      const reference = path.join(sharedDir(), 'reference');
      const pa = cpuSnapshot();
      const run = await runPythonPeer(
        o.python,
        script,
        [dir, '--batch', String(B), '--threads', String(be.threads), '--reps', String(Math.max(o.steps, 3)), '--reference', reference],
        be.threads,
      );
      const line = run.lines.find((l) => l.kind === 'image-encode');
      check(line, `bench: ${run.command} printed no image-encode line`);
      const theirs = line.images_per_s as number;
      const check8 = line.check as number[];
      const diff = Math.max(...check8.map((v, i) => Math.abs(v - pooled0[i])));
      const { check: _, ...shown } = line;
      emit({
        ...(shown as BenchLine),
        config: o.clip,
        peer: true,
        other_load_pct: otherLoadPercent(pa, cpuSnapshot(), run.cpuSeconds ?? 0),
        peak_rss_mb: run.peakRssMb === null ? null : round(run.peakRssMb),
        gflops: round(flops / (line.batch_seconds as number) / 1e9),
      });
      emit({ ...base, kind: 'image-encode', ratio_vs_pytorch: round(ours / theirs), pooled_max_abs_diff: round(diff) });
      check(diff < 1e-3, `bench: our pooled output differs from the PyTorch peer's by ${diff}`);
    }
  }

  // multimodal training with cached features, next to the same text adapter step
  await settle();
  const cfg = resolveConfig(o.config);
  const { model } = await buildModel(cfg, 'f32', o.backend, o.threads);
  const L = o.adapterLayers || Math.max(1, model.config.nLayers - 2);
  const shape = { B: o.batch, T: Math.min(o.seq, model.config.maxSeqLen), K: o.promptLength, L };
  const lossRows = trainBatch(model.config.vocabSize, shape.B, shape.T).lossRows;
  const tbase: BenchLine = { config: o.config, backend: model.backend.name, threads: model.backend.threads, simd, B: shape.B, T: shape.T, K: shape.K, L };
  for (const kind of ['train', 'train-mm'] as const) {
    await settle();
    log(`${kind}: ${o.config}, B=${shape.B} T=${shape.T} K=${shape.K} L=${L}${kind === 'train-mm' ? `, cached ${o.clip} features (F=${F}) per row` : ''}`);
    const sa = cpuSnapshot();
    const r = await measureTrain(model, { ...shape, steps: o.steps, multimodal: kind === 'train-mm' ? enc.identity : undefined });
    emit({
      ...tbase,
      kind,
      ...(kind === 'train-mm' ? { image_encoder: o.clip, feature_dim: F } : {}),
      tokens_per_s: round((shape.B * shape.T) / r.stepSeconds),
      step_s: round(r.stepSeconds),
      steps: r.steps,
      adapter_params: r.adapterParams,
      gflops: round(trainFlops(model.config, { ...shape, lossRows }) / r.stepSeconds / 1e9),
      other_load_pct: otherLoadPercent(sa, cpuSnapshot()),
    });
  }
}
