// Shared by the format loaders: turns each tensor, as it is read, into a canonical Matrix of the
// requested dtype, and feeds the fingerprint its float32 values before any bf16 rounding.
import { LlamaAdapterError } from '../core/errors.js';
import type { LlamaConfig } from '../core/config.js';
import { toBf16, type Matrix, type ModelWeights, type WeightDtype } from '../core/weights.js';
import { FingerprintCollector } from './fingerprint.js';

export interface LoadOptions {
  dtype?: WeightDtype; // dtype of the big matrices (norms are always f32); default 'f32'
  lazy?: boolean; // read files at offsets even when they are small (tests, memory-tight callers)
}

export function resolveDtype(dtype: unknown): WeightDtype {
  if (dtype === undefined || dtype === 'f32') return 'f32';
  if (dtype === 'bf16') return 'bf16';
  throw new LlamaAdapterError(`dtype ${JSON.stringify(dtype)} is not supported (use "f32" or "bf16")`);
}

export class MatrixBuilder {
  readonly dtype: WeightDtype;
  readonly fp: FingerprintCollector;

  constructor(dtype: WeightDtype, nLayers: number) {
    this.dtype = dtype;
    this.fp = new FingerprintCollector(nLayers);
  }

  /** A (rows, cols) matrix from float32 values; `data` becomes (or is rounded into) the result. */
  fromF32(role: string, rows: number, cols: number, data: Float32Array): Matrix {
    this.fp.offerF32(role, [rows, cols], data);
    if (this.dtype === 'f32') return { dtype: 'f32', rows, cols, data };
    return { dtype: 'bf16', rows, cols, data: toBf16(data) };
  }

  /** A (rows, cols) matrix from bf16 bit patterns (kept as-is for bf16, widened exactly for f32). */
  fromBf16(role: string, rows: number, cols: number, data: Uint16Array): Matrix {
    this.fp.offerBf16(role, [rows, cols], data);
    if (this.dtype === 'bf16') return { dtype: 'bf16', rows, cols, data };
    const out = new Float32Array(data.length);
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < data.length; i++) u[i] = data[i] << 16;
    return { dtype: 'f32', rows, cols, data: out };
  }

  /**
   * A norm vector (always float32). For bf16 loads it is copied, so that a view on an in-memory
   * file does not keep the whole (f32) file alive next to its bf16 conversion.
   */
  norm(role: string, data: Float32Array): Float32Array {
    this.fp.offerF32(role, [data.length], data);
    return this.dtype === 'bf16' ? data.slice() : data;
  }
}

/** What a format loader hands to loadCheckpoint. */
export interface LoadedModel {
  config: LlamaConfig;
  weights: ModelWeights;
  sourceDtypes: string[]; // dtypes found in the file(s), in order of first use
  fingerprint: string; // see fingerprint.ts
}
