// Options and result type shared by the format loaders.
import { LlamaAdapterError } from '../core/errors.js';
import type { LlamaConfig } from '../core/config.js';
import type { ModelWeights, WeightDtype } from '../core/weights.js';

export interface LoadOptions {
  dtype?: WeightDtype; // dtype of the big matrices (norms are always f32); default 'f32'
  lazy?: boolean; // read files at offsets even when they are small (tests, memory-tight callers)
}

export function resolveDtype(dtype: unknown): WeightDtype {
  if (dtype === undefined || dtype === 'f32') return 'f32';
  if (dtype === 'bf16') return 'bf16';
  throw new LlamaAdapterError(`dtype ${JSON.stringify(dtype)} is not supported (use "f32" or "bf16")`);
}

/** What a format loader hands to loadCheckpoint. */
export interface LoadedModel {
  config: LlamaConfig;
  weights: ModelWeights;
  sourceDtypes: string[]; // dtypes found in the file(s), in order of first use
  fingerprint: string; // see fingerprint.ts
}
