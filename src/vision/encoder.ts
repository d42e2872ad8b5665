// The image encoders behind the ImageEncoder interface (image-encoder.ts), and the registry that opens one
// from a path: an HF CLIP directory (clip.ts, on the backend's kernels) or a TF.js layers model
// (tfjs.ts: e.g. nsfwjs's ImageNet-initialised MobileNetV2, loaded lazily so @tensorflow/tfjs is
// imported by nothing else). An encoder is frozen: it maps preprocessed pixels to one global
// feature vector per image (the multi-scale set concatenated), and names itself (format, shape,
// weight fingerprint, which layers) so an adapter file can refuse another encoder.

import type { Backend } from '../backend/backend.js';
import { check, LlamaAdapterError } from '../core/errors.js';
import { defaultFeatureLayers, isClipDir, loadClipVision, type ClipVision } from './clip.js';
import type { EncoderIdentity, ImageEncoder } from './image-encoder.js';
import { CLIP_MEAN, CLIP_STD, type PreprocessConfig } from './preprocess.js';

export interface EncoderOptions {
  backend: Backend; // runs CLIP towers (a TF.js model runs on TF.js's CPU backend)
  layers?: number[]; // multi-scale layers (default: CLIP [N/3, 2N/3, N]; TF.js: the encoder's default set)
}

/** CLIP as an ImageEncoder: the CLS token after post_layernorm at each chosen layer, concatenated (refmultimodal.global_features). */
export class ClipEncoder implements ImageEncoder {
  readonly identity: EncoderIdentity;
  readonly preprocess: PreprocessConfig;
  readonly path: string;

  constructor(
    readonly tower: ClipVision,
    private readonly be: Backend,
    layers?: number[],
  ) {
    const N = tower.config.numLayers;
    const ls = layers ?? defaultFeatureLayers(N);
    check(
      ls.length > 0 && ls.every((l) => Number.isInteger(l) && l >= 0 && l <= N),
      `${tower.path}: feature layers must be integers from 0 to ${N} (got ${ls.join(',')})`,
    );
    this.identity = { format: 'hf-clip', shape: tower.shape, fingerprint: tower.fingerprint, layers: ls, featureDim: ls.length * tower.config.hiddenSize };
    this.preprocess = { size: tower.config.imageSize, mean: CLIP_MEAN, std: CLIP_STD, layout: 'chw', crop: 'hf' };
    this.path = tower.path;
  }

  async features(pixels: Float32Array, B: number): Promise<Float32Array> {
    const out = this.tower.encode(this.be, pixels, B);
    const C = this.tower.config.hiddenSize,
      ls = this.identity.layers,
      F = this.identity.featureDim;
    const f = new Float32Array(B * F); // (B, M*C)
    for (let b = 0; b < B; b++) ls.forEach((l, m) => f.set(out.cls[l].subarray(b * C, (b + 1) * C), b * F + m * C));
    return f;
  }
}

/** Open an image encoder: an HF CLIP directory, or a TF.js layers model (a model.json, or `nsfwjs:mobilenet_v2` for the one nsfwjs ships). */
export async function loadImageEncoder(path: string, o: EncoderOptions): Promise<ImageEncoder> {
  if (isClipDir(path)) return new ClipEncoder(loadClipVision(path), o.backend, o.layers);
  if (path.startsWith('nsfwjs:') || path.endsWith('.json')) {
    const { loadTfjsEncoder } = await import('./tfjs.js'); // TF.js only for this kind of encoder
    return loadTfjsEncoder(path, o.layers);
  }
  throw new LlamaAdapterError(
    `${path}: not an image encoder this library reads (expected an HF CLIP directory with config.json, a TF.js model.json, or nsfwjs:mobilenet_v2)`,
  );
}
