// loadModel(): model file + tokenizer + backend -> LlamaModel.

import { getBackend, getBackendAsync, type BackendName } from '../backend/index.js';
import type { Backend } from '../backend/backend.js';
import { useNativeBuffers } from '../backend/native.js';
import { CONFIG_LIMITS } from '../core/config.js';
import { isQuantized, type ModelWeights, type WeightDtype } from '../core/weights.js';
import { check, LlamaAdapterError } from '../core/errors.js';
import { readModelFile } from '../formats/registry.js';
import { LlamaModel } from './model.js';
import { loadTokenizer } from '../tokenizer/load.js';

export interface LoadModelOptions {
  tokenizer?: string; // tokenizer path (default: the one found beside the model)
  backend?: BackendName; // 'auto' (default: webgpu on a GPU, else native, else ts), 'native', 'ts' or 'webgpu'
  threads?: number; // native backend threads (default: all cores)
  /** In-memory dtype of the frozen matrices (default f32; a quantized type quantizes at load; a GGUF's quantized tensors stay as stored). */
  dtype?: WeightDtype;
  /** Context length to allocate RoPE tables for (default: the model's). */
  maxSeqLen?: number;
  /** Refuse base weights holding NaN/Inf (one pass over every weight; default off). */
  checkTensors?: boolean;
}

export async function loadModel(path: string, o: LoadModelOptions = {}): Promise<LlamaModel> {
  // the weights are read before the backend is chosen: where the native one may run, read them
  // into its huge-page buffers
  const name = o.backend ?? ((process.env.LLAMA_ADAPTER_BACKEND as BackendName | undefined) || 'auto');
  if (name === 'auto' || name === 'native') useNativeBuffers();
  const mf = readModelFile(path, { dtype: o.dtype ?? 'f32', checkTensors: o.checkTensors });
  const tokPath = o.tokenizer ?? mf.tokenizerPath;
  if (!tokPath) {
    throw new LlamaAdapterError(`${path}: no tokenizer found beside the model (pass --tokenizer PATH: tokenizer.json, tokenizer.model or tokenizer.bin)`);
  }
  const tokenizer = await loadTokenizer(tokPath);
  if (tokenizer.vocabSize !== mf.config.vocabSize) {
    throw new LlamaAdapterError(`${tokPath}: tokenizer has ${tokenizer.vocabSize} tokens but the model ${path} has a vocabulary of ${mf.config.vocabSize}`);
  }
  if (o.maxSeqLen !== undefined) {
    check(
      Number.isSafeInteger(o.maxSeqLen) && o.maxSeqLen > 0 && o.maxSeqLen <= CONFIG_LIMITS.maxSeqLen,
      `maxSeqLen ${o.maxSeqLen} must be a positive integer up to ${CONFIG_LIMITS.maxSeqLen}`,
    );
  }
  const config = o.maxSeqLen ? { ...mf.config, maxSeqLen: o.maxSeqLen } : mf.config;
  const backend = await backendFor(mf.weights, o.backend, o.threads);
  return new LlamaModel(config, mf.weights, tokenizer, backend, mf.fingerprint, {
    path,
    format: mf.format,
    sourceDtypes: mf.sourceDtypes,
    dtype: o.dtype ?? 'f32',
  });
}

/** The backend for these weights: one without quantized kernels is refused by name, and 'auto' then takes a host backend. */
async function backendFor(w: ModelWeights, name: BackendName | undefined, threads: number | undefined): Promise<Backend> {
  const b = await getBackendAsync(name, threads);
  if (!b.missing?.includes('quantized')) return b;
  const q = [w.tokEmbd, w.output, ...w.layers.flatMap((L) => [L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3])].find(isQuantized);
  if (!q) return b;
  if ((name || process.env.LLAMA_ADAPTER_BACKEND || 'auto') === 'auto') return getBackend('auto', threads);
  throw new LlamaAdapterError(
    `the ${b.name} backend has no kernels for quantized (${q.dtype}) weights: use --backend native or ts, or load with --dtype f32 or bf16`,
  );
}
