// The base model as read from a file: what every format loader returns (the one loaded-model type
// above the formats is LlamaModel, src/model/model.ts), and the options every loader takes.
// ("Checkpoint" in this library means only the training state, OUT.ckpt.safetensors.)
import type { LlamaConfig } from '../core/config.js';
import { LlamaAdapterError } from '../core/errors.js';
import { canQuantize, isQuantDtype, QUANT_DTYPES } from '../core/quant.js';
import type { ModelWeights, WeightDtype } from '../core/weights.js';

/** 'synthetic' = random weights made in memory by formats/synthetic.ts. */
export type ModelFormat = 'hf-safetensors' | 'llama2c-fp32' | 'llama2c-q80' | 'gguf' | 'synthetic';

export interface ModelFile {
  path: string; // what the user passed
  format: ModelFormat;
  config: LlamaConfig;
  weights: ModelWeights;
  sourceDtypes: string[]; // dtypes found in the file(s), in order of first use, e.g. ['F32'] or ['Q8_0', 'F32']
  /**
   * A tokenizer found beside the model: for a directory its tokenizer.json or tokenizer.model;
   * for a .bin file tokenizer.bin / tok{vocab}.bin / tokenizer.model / tokenizer.json in the same
   * folder (first found); null if none.
   */
  tokenizerPath: string | null;
  /** Hash of a sample of the weights as loaded in f32, before any bf16 rounding (fingerprint.ts). */
  fingerprint: string;
}

export interface ReadModelOptions {
  /**
   * dtype of the big matrices (norms are always f32); default 'f32'. A quantized type quantizes
   * every matrix at load; a GGUF's quantized tensors stay as stored whatever this says.
   */
  dtype?: WeightDtype;
  lazy?: boolean; // read files at offsets even when they are small (tests, memory-tight callers)
  /** Refuse weights holding NaN/Inf, naming the tensor (one pass over every weight; default off, see README). */
  checkTensors?: boolean;
}

export function resolveDtype(dtype: unknown): WeightDtype {
  if (dtype === undefined || dtype === 'f32') return 'f32';
  if (dtype === 'bf16' || dtype === 'f16' || (isQuantDtype(dtype) && canQuantize(dtype))) return dtype;
  const quant = QUANT_DTYPES.filter(canQuantize).join(', ');
  throw new LlamaAdapterError(`dtype ${JSON.stringify(dtype)} is not supported (use f32, bf16, f16 or a quantized type: ${quant})`);
}
