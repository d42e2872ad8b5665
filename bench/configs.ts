// Benchmark configurations: the real models in ../shared/assets (by name), any checkpoint path,
// and the synthetic shapes of the PyTorch peer (bench_torch.py SHAPES, random weights: speed does
// not depend on the values). Builds a LlamaModel with the ids-only tokenizer.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { getBackendAsync, type BackendName } from '../src/backend/index.js';
import { LlamaAdapterError } from '../src/core/errors.js';
import { readModelFile } from '../src/formats/registry.js';
import type { ModelFile } from '../src/formats/model-file.js';
import { syntheticModelFile, type SyntheticShape } from '../src/formats/synthetic.js';
import { LlamaModel } from '../src/model/model.js';
import { IdTokenizer } from './id-tokenizer.js';
import type { KernelProfile } from './profile.js';
import type { WeightDtype } from '../src/core/weights.js';
import { packageRoot } from '../src/core/package-root.js';

/** Same shapes as bench_torch.py: name -> dim, hidden, layers, heads, kv heads, vocab. */
export const SHAPES: Readonly<Record<string, SyntheticShape>> = {
  medium: { dim: 768, hiddenDim: 2048, nLayers: 12, nHeads: 12, nKvHeads: 12, vocabSize: 32000 }, // stories110M-like
  large: { dim: 2048, hiddenDim: 5632, nLayers: 22, nHeads: 32, nKvHeads: 4, vocabSize: 32000 }, // TinyLlama-1.1B-like
  '7b-layer': { dim: 4096, hiddenDim: 11008, nLayers: 1, nHeads: 32, nKvHeads: 32, vocabSize: 32000 }, // one 7B block
  // the whole LLaMA-7B shape (6.7B parameters): for the bf16 memory check (13.5 GB of weights);
  // the PyTorch peer has no such shape (its fp32 copy alone would need 27 GB)
  '7b': { dim: 4096, hiddenDim: 11008, nLayers: 32, nHeads: 32, nKvHeads: 32, vocabSize: 32000 },
};

/** The repository root. */
export function repoRoot(): string {
  const root = packageRoot();
  if (!root) throw new Error('bench: cannot find the llama-adapter repository root');
  return root;
}

/** ../shared relative to the repository root. */
export function sharedDir(): string {
  return path.resolve(repoRoot(), '..', 'shared');
}

/** The real models, by name, relative to the shared folder. */
const NAMED: Readonly<Record<string, string>> = {
  stories260K: 'assets/models/stories260K/stories260K.bin',
  'tinystories-656k': 'assets/models/tinystories-656k',
};

export type ResolvedConfig = { kind: 'synthetic'; name: string; shape: SyntheticShape } | { kind: 'path'; name: string; path: string };

/** A config name (synthetic shape or named real model) or a checkpoint path. */
export function resolveConfig(name: string): ResolvedConfig {
  const shape = SHAPES[name];
  if (shape) return { kind: 'synthetic', name, shape };
  const rel = NAMED[name];
  const p = rel ? path.join(sharedDir(), rel) : path.resolve(name);
  if (!fs.existsSync(p)) {
    const known = [...Object.keys(SHAPES), ...Object.keys(NAMED)].join(', ');
    throw new LlamaAdapterError(`bench: no configuration "${name}" (${p} does not exist); use a checkpoint path or one of: ${known}`);
  }
  return { kind: 'path', name, path: p };
}

export interface BenchModel {
  model: LlamaModel;
  loadSeconds: number; // time to read or generate the weights
  weightsMb: number; // bytes of the frozen weights in memory / 2^20
}

/** Load or generate the checkpoint and wrap it in a LlamaModel on the chosen backend (kernel-timed when profile is given). */
export async function buildModel(
  cfg: ResolvedConfig,
  dtype: WeightDtype,
  backend: BackendName,
  threads: number | undefined,
  profile?: KernelProfile,
): Promise<BenchModel> {
  const raw = await getBackendAsync(backend, threads);
  if (profile && raw.memory.device) throw new LlamaAdapterError(`bench: --profile times kernel calls on the host; the ${raw.name} backend only queues them`);
  const be = profile ? profile.wrap(raw) : raw;
  const t0 = performance.now();
  const mf: ModelFile = cfg.kind === 'synthetic' ? syntheticModelFile(cfg.shape, 0, dtype) : readModelFile(cfg.path, { dtype });
  const loadSeconds = (performance.now() - t0) / 1000;
  const c = mf.config;
  const tok = new IdTokenizer(c.vocabSize, c.bosId, c.eosId);
  const model = new LlamaModel(c, mf.weights, tok, be, mf.fingerprint, {
    path: mf.path,
    format: mf.format,
    sourceDtypes: mf.sourceDtypes,
    dtype,
  });
  return { model, loadSeconds, weightsMb: weightBytes(mf) / 2 ** 20 };
}

function weightBytes(mf: ModelFile): number {
  const W = mf.weights;
  const seen = new Set<ArrayBufferView>();
  let n = 0;
  const add = (a: ArrayBufferView): void => {
    if (seen.has(a)) return;
    seen.add(a);
    n += a.byteLength;
  };
  add(W.tokEmbd.data);
  add(W.output.data);
  add(W.outputNorm);
  for (const L of W.layers) {
    for (const m of [L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3]) add(m.data);
    add(L.attnNorm);
    add(L.ffnNorm);
  }
  return n;
}
