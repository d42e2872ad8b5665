// The image-encoder interface the multimodal method stands on: a frozen encoder maps preprocessed
// pixels to one global feature vector per image (the multi-scale set concatenated) and names
// itself (format, shape, weight fingerprint, which layers), so an adapter file can refuse another.

import type { PreprocessConfig } from './preprocess.js';

/** What an adapter file records of the encoder its projection was trained on. */
export interface EncoderIdentity {
  format: 'hf-clip' | 'tfjs-layers'; // which loader
  shape: string; // architecture summary (widths, depth, input size)
  fingerprint: string; // hash of the weights
  layers: number[]; // which layers make the multi-scale feature (1-based for CLIP; layer indices for TF.js)
  featureDim: number; // F, length of one image's feature vector
}

export interface ImageEncoder {
  readonly identity: EncoderIdentity;
  readonly path: string; // where it was loaded from
  readonly preprocess: PreprocessConfig;
  /** Global features (B, F) of B preprocessed images laid out as `preprocess` says. */
  features(pixels: Float32Array, B: number): Promise<Float32Array>;
}

/** The same encoder identity? (what loading an adapter onto an encoder checks) */
export function sameEncoder(a: EncoderIdentity, b: EncoderIdentity): boolean {
  return (
    a.format === b.format &&
    a.shape === b.shape &&
    a.fingerprint === b.fingerprint &&
    a.featureDim === b.featureDim &&
    a.layers.join(',') === b.layers.join(',')
  );
}

/** A readable one-line description. */
export function describeEncoder(e: EncoderIdentity): string {
  return `${e.format} (${e.shape}; layers ${e.layers.join(',')}; ${e.featureDim} features; fingerprint ${e.fingerprint})`;
}
