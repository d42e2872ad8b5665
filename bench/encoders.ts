// `npm run bench -- --encoder vit-b16|roberta-base [--compare-pytorch]`: adapter training speed on a
// ViT-B/16- or RoBERTa-base-shaped encoder with seeded random weights (model/encoders/synthetic.ts):
// one step = forward, backward to the prompts and gates (input gradients only through the frozen
// weights) and the head, and AdamW, with zero-init gated prompts (tanh per head, K prompts in the top
// L layers) and a task head (ViT: a 10-class classifier on CLS; RoBERTa: the span head). One warm-up
// step, then the mean of --steps. The PyTorch peer (bench/peer_encoders.py, refencoders.py's eager
// HF math) runs the same shape, batch, K and L with the same threads in the same run. Lines carry
// images_per_s (ViT) or tokens_per_s (RoBERTa) and other_load_pct.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type BackendName, getBackend } from '../src/backend/index.js';
import { nativeInfo } from '../src/backend/native.js';
import { check } from '../src/core/errors.js';
import { packageRoot } from '../src/core/package-root.js';
import { Rng } from '../src/core/rng.js';
import { type Backbone, RobertaBackbone, VitBackbone } from '../src/methods/prompts/backbones.js';
import { createTaskMethod, type TaskTargets, taskStep } from '../src/methods/prompts/task.js';
import { loadEncoder } from '../src/model/encoders/load.js';
import type { RobertaModel } from '../src/model/encoders/roberta.js';
import { ROBERTA_BASE, VIT_B16, writeSyntheticRoberta, writeSyntheticVit } from '../src/model/encoders/synthetic.js';
import type { VitModel } from '../src/model/encoders/vit.js';
import { trainableTensors, zerosLike } from '../src/model/method.js';
import { AdamW } from '../src/train/optimizer.js';
import { sharedDir } from './configs.js';
import { cpuSnapshot, otherLoadPercent } from './machine.js';
import { type BenchLine, round } from './run.js';

export const ENCODER_CONFIGS = ['vit-b16', 'roberta-base'] as const;
export type EncoderConfigName = (typeof ENCODER_CONFIGS)[number];

export interface EncoderBenchOptions {
  encoder: EncoderConfigName;
  backend: BackendName;
  threads?: number;
  steps: number;
  batch: number;
  seq: number; // RoBERTa tokens per row
  promptLength: number;
  adapterLayers: number; // 0 = all
  comparePytorch: boolean;
  python: string;
}

const log = (msg: string): void => {
  process.stderr.write(`bench: ${msg}\n`);
};

export async function runEncoderBench(o: EncoderBenchOptions, emit: (line: BenchLine) => void): Promise<void> {
  const be = getBackend(o.backend, o.threads);
  const vit = o.encoder === 'vit-b16';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-enc-'));
  log(`writing a seeded random ${o.encoder} (HF layout) to ${dir}`);
  let model: VitModel | RobertaModel;
  try {
    if (vit) writeSyntheticVit(dir, VIT_B16, 0, 10);
    else writeSyntheticRoberta(dir, ROBERTA_BASE, 0);
    model = loadEncoder(dir, be);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const N = model.config.layers,
    L = o.adapterLayers || N;
  check(L <= N, `--adapter-layers ${L} > the model's ${N} layers`);
  const rng = new Rng(1);
  let bb: Backbone<unknown>, x: unknown, targets: TaskTargets, units: number;
  if (model.kind === 'vit') {
    const S = model.config.imageSize;
    const pixels = Float32Array.from({ length: o.batch * 3 * S * S }, () => rng.normal());
    bb = new VitBackbone(model) as Backbone<unknown>;
    x = { pixels, B: o.batch };
    targets = { labels: Int32Array.from({ length: o.batch }, (_, i) => i % 10) };
    units = o.batch;
  } else {
    const T = o.seq,
      V = model.config.vocabSize;
    const ids = Int32Array.from({ length: o.batch * T }, (_, i) => (i % T === 0 ? 0 : i % T === T - 1 ? 2 : 3 + rng.int(V - 3)));
    bb = new RobertaBackbone(model, 'all') as Backbone<unknown>;
    x = { ids, B: o.batch, T, mask: new Int32Array(o.batch * T).fill(1) };
    targets = {
      starts: Int32Array.from({ length: o.batch }, (_, b) => 1 + ((b * 7) % (T / 2))),
      ends: Int32Array.from({ length: o.batch }, (_, b) => T / 2 + ((b * 5) % (T / 2 - 1))),
      B: o.batch,
      T,
    };
    units = o.batch * T;
  }
  const labels = vit ? Array.from({ length: 10 }, (_, i) => String(i)) : [];
  const m = createTaskMethod(bb, {
    task: vit ? 'image-classification' : 'question-answering',
    labels,
    prompts: { mode: 'tanh', promptLength: o.promptLength, adapterLayers: L },
  });
  const params = trainableTensors(m);
  const opt = new AdamW(params, new Map([...params.keys()].map((k) => [k, m.shapeOf(k)])), { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
  const grads = zerosLike(m);
  const step = (): void => {
    taskStep(bb, m, x, targets, grads);
    opt.update(be, grads, 1e-3);
    m.invalidate();
  };
  log(`${o.encoder}: ${m.parameterCount} trainable parameters (K=${o.promptLength}, L=${L}), batch ${o.batch}${vit ? '' : ` x ${o.seq} tokens`}; warm-up step`);
  step();
  const a = cpuSnapshot(),
    t0 = performance.now();
  for (let i = 0; i < o.steps; i++) step();
  const stepS = (performance.now() - t0) / 1000 / o.steps;
  const other = otherLoadPercent(a, cpuSnapshot());
  const unit = vit ? 'images_per_s' : 'tokens_per_s';
  const base: BenchLine = {
    config: o.encoder,
    kind: 'train',
    batch: o.batch,
    seq: vit ? null : o.seq,
    prompt_length: o.promptLength,
    adapter_layers: L,
    steps: o.steps,
  };
  const ours = units / stepS;
  emit({
    ...base,
    backend: be.name,
    threads: be.threads,
    simd: be.name === 'native' ? (nativeInfo()?.simd ?? null) : null,
    [unit]: round(ours),
    step_s: round(stepS),
    peak_rss_mb: round(process.resourceUsage().maxRSS / 1024),
    other_load_pct: other,
  });
  if (!o.comparePytorch) return;
  const script = path.join(packageRoot() ?? '.', 'bench/peer_encoders.py');
  const args = [
    script,
    o.encoder,
    '--threads',
    String(be.threads),
    '--steps',
    String(o.steps),
    '--batch',
    String(o.batch),
    '--seq',
    String(o.seq),
    '--prompt-length',
    String(o.promptLength),
    '--layers',
    String(L),
  ];
  const n = String(be.threads);
  const env = { ...process.env, PYTHONPATH: path.join(sharedDir(), 'reference'), OMP_NUM_THREADS: n, OPENBLAS_NUM_THREADS: n, MKL_NUM_THREADS: n };
  const time = fs.existsSync('/usr/bin/time');
  const q0 = cpuSnapshot();
  const rusage = path.join(os.tmpdir(), `llama-adapter-peer-${process.pid}`);
  const r = time
    ? spawnSync('/usr/bin/time', ['-f', '%M %U %S', '-o', rusage, o.python, ...args], { encoding: 'utf8', env })
    : spawnSync(o.python, args, { encoding: 'utf8', env });
  check(r.status === 0, `the PyTorch peer failed (${o.python} ${args.join(' ')}): ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`);
  let peerCpu = 0,
    peerRss: number | null = null;
  if (time) {
    const [kb, u, s] = fs.readFileSync(rusage, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
    peerCpu = u + s;
    peerRss = round(kb / 1024);
    fs.rmSync(rusage, { force: true });
  }
  const line = JSON.parse(
    r.stdout
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .pop() ?? '{}',
  ) as Record<string, number | string>;
  const theirs = Number(line[unit]);
  emit({
    ...base,
    backend: 'pytorch',
    threads: Number(line.threads),
    [unit]: round(theirs),
    step_s: round(Number(line.step_s)),
    peak_rss_mb: peerRss,
    other_load_pct: otherLoadPercent(q0, cpuSnapshot(), peerCpu),
    peer: `torch ${line.torch}`,
    peer_command: [o.python, ...args].join(' '),
  });
  emit({ ...base, kind: 'ratio', [`${unit}_ratio`]: round(ours / theirs) });
}
