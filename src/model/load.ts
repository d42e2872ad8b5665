// loadModel(): model file + tokenizer + backend -> LlamaModel.

import { getBackend, type BackendName } from '../backend/index.js';
import { CONFIG_LIMITS } from '../core/config.js';
import type { WeightDtype } from '../core/weights.js';
import { check, LlamaAdapterError } from '../core/errors.js';
import { readModelFile } from '../formats/registry.js';
import { LlamaModel } from './model.js';
import { loadTokenizer } from '../tokenizer/load.js';

export interface LoadModelOptions {
  tokenizer?: string; // tokenizer path (default: the one found beside the model)
  backend?: BackendName; // 'auto' (default), 'native' or 'ts'
  threads?: number; // native backend threads (default: all cores)
  /** In-memory dtype of the frozen matrices (default f32; a quantized type quantizes at load; a GGUF's quantized tensors stay as stored). */
  dtype?: WeightDtype;
  /** Context length to allocate RoPE tables for (default: the model's). */
  maxSeqLen?: number;
  /** Refuse base weights holding NaN/Inf (one pass over every weight; default off). */
  checkTensors?: boolean;
}

export async function loadModel(path: string, o: LoadModelOptions = {}): Promise<LlamaModel> {
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
  const backend = getBackend(o.backend, o.threads);
  return new LlamaModel(config, mf.weights, tokenizer, backend, mf.fingerprint, {
    path,
    format: mf.format,
    sourceDtypes: mf.sourceDtypes,
    dtype: o.dtype ?? 'f32',
  });
}
