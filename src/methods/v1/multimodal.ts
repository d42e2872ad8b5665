// Multimodal LLaMA-Adapter v1 (paper sec. 3.3, eq. 9-10), as ../shared/reference/refmultimodal.py
// defines it: a frozen image encoder's multi-scale global features F (per image, vision/encoder.ts)
// are projected to the model width, I_p = LayerNorm(F proj.weight^T + proj.bias) (with
// proj_norm.weight / bias, eps 1e-5), and added to every prompt row of every adapted layer:
// P_l + repeat(I_p), before the frozen key/value projections. It is the text Adapter (prompts,
// gates) plus the projection, and the per-image prompt source is that adapter's withOffset(I_p):
// no copy of the model or the adapter. Rows without an image use P_l alone. Trainable: prompts,
// gates and the projection (the one filter, isParam); the encoder is frozen and named in the file.
// Gradients: the image sources' hook gradients give d I_p = sum_l sum_k (dpk Wk + dpv Wv) per
// image, then the LayerNorm and Linear backward give the projection's gradients.

import { check, LlamaAdapterError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import type { Matrix } from '../../core/weights.js';
import { trainableTensors, type AdapterMethod, type MethodHost, type PromptLayer, type PromptSource, type SourceGrads } from '../../model/method.js';
import { describeEncoder, sameEncoder, type EncoderIdentity } from '../../vision/image-encoder.js';
import { type Adapter, createAdapter, type CreateAdapterOptions } from './adapter.js';
import { PROJ_NAMES } from './adapter-format.js';

/** The projection's parameter names (as in the adapter file and the reference fixtures). */

const PROJ_EPS = 1e-5;

export class MultimodalAdapter implements AdapterMethod {
  readonly host: MethodHost;
  readonly firstLayer: number;
  readonly promptLength: number;
  readonly projW: Float32Array; // (D, F) proj.weight
  readonly projB: Float32Array; // (D) proj.bias
  readonly normW: Float32Array; // (D) proj_norm.weight
  readonly normB: Float32Array; // (D) proj_norm.bias
  /** Free-form provenance saved in the file (training arguments etc.), shared with the text adapter. */
  get meta(): Record<string, string> {
    return this.text.meta;
  }
  private ver = 0;
  private readonly sources = new WeakMap<Float32Array, { version: number; source: PromptSource }>(); // features -> source
  private readonly made = new WeakMap<PromptSource, Float32Array>(); // source -> its image's features (F)

  /** `text`: the prompts and gates (its own file fields); `encoder`: what the features come from. */
  constructor(
    readonly text: Adapter,
    readonly encoder: EncoderIdentity,
  ) {
    this.host = text.host;
    this.firstLayer = text.firstLayer;
    this.promptLength = text.promptLength;
    const D = text.host.config.dim,
      F = encoder.featureDim;
    check(Number.isInteger(F) && F >= 1, `image feature width must be a positive integer (got ${F})`);
    this.projW = new Float32Array(D * F);
    this.projB = new Float32Array(D);
    this.normW = new Float32Array(D).fill(1);
    this.normB = new Float32Array(D);
  }

  get featureDim(): number {
    return this.encoder.featureDim;
  }

  /** Rows without an image: the text adapter's prompts. */
  promptLayer(l: number): PromptLayer | null {
    return this.text.promptLayer(l);
  }

  tensors(): Map<string, Float32Array> {
    const m = this.text.tensors();
    m.set('proj.weight', this.projW);
    m.set('proj.bias', this.projB);
    m.set('proj_norm.weight', this.normW);
    m.set('proj_norm.bias', this.normB);
    return m;
  }

  isParam(name: string): boolean {
    return (PROJ_NAMES as readonly string[]).includes(name) || this.text.isParam(name);
  }

  shapeOf(name: string): number[] {
    const D = this.host.config.dim;
    if (name === 'proj.weight') return [D, this.featureDim];
    if ((PROJ_NAMES as readonly string[]).includes(name)) return [D];
    return this.text.shapeOf(name);
  }

  parameters(): Map<string, Float32Array> {
    return trainableTensors(this);
  }

  invalidate(): void {
    this.ver++;
    this.text.invalidate();
  }

  get version(): number {
    return this.ver;
  }

  private projMatrix(): Matrix {
    return { dtype: 'f32', rows: this.host.config.dim, cols: this.featureDim, data: this.projW };
  }

  /** z (B, D) = feats W^T + b (before the LayerNorm), for B images' features (B, F). */
  private linear(feats: Float32Array, B: number): Float32Array {
    const be = this.host.backend,
      D = this.host.config.dim;
    const z = new Float32Array(B * D);
    be.matmul(z, feats, this.projMatrix(), B);
    be.biasAdd(z, this.projB, B, D);
    return z;
  }

  /** I_p (B, D) for B images' features (B, F). */
  imagePrompt(feats: Float32Array, B = 1): Float32Array {
    check(
      feats.length === B * this.featureDim,
      `image features have ${feats.length} values, expected ${B} x ${this.featureDim} (${describeEncoder(this.encoder)})`,
    );
    const D = this.host.config.dim;
    const z = this.linear(feats, B);
    this.host.backend.layerNorm(z, z, this.normW, this.normB, B, D, PROJ_EPS);
    return z;
  }

  /**
   * The prompt source of a row with this image (features (F) from this adapter's encoder): the text
   * adapter with I_p added to every prompt row. Cached per features array and adapter version (a
   * source made before the parameters changed keeps its old I_p: ask again after invalidate()).
   */
  forImage(feats: Float32Array): PromptSource {
    const hit = this.sources.get(feats);
    if (hit && hit.version === this.ver) return hit.source;
    const source = this.text.withOffset(this.imagePrompt(feats));
    this.sources.set(feats, { version: this.ver, source });
    this.made.set(source, feats);
    return source;
  }

  /** Per-row sources: forImage(f) for a row with features, this adapter (prompts alone) for null. */
  rowSources(features: readonly (Float32Array | null)[]): PromptSource[] {
    return features.map((f) => (f ? this.forImage(f) : this));
  }

  paramGrads(hook: readonly SourceGrads[], out: Map<string, Float32Array>): void {
    this.text.paramGrads(hook, out); // prompts and gates: the offset is constant per row group
    const be = this.host.backend,
      c = this.host.config;
    const D = c.dim,
      F = this.featureDim,
      K = this.promptLength,
      kv = c.nKvHeads * c.headDim;
    const dW = out.get('proj.weight')!,
      dB = out.get('proj.bias')!,
      dNW = out.get('proj_norm.weight')!,
      dNB = out.get('proj_norm.bias')!;
    dW.fill(0);
    dB.fill(0);
    dNW.fill(0);
    dNB.fill(0);
    const imgs = hook.filter((h) => this.made.has(h.source));
    for (const h of hook)
      if (h.source !== this && !this.made.has(h.source)) throw new LlamaAdapterError('multimodal adapter: a row source was not made by this adapter');
    const G = imgs.length;
    if (G === 0) return;
    // d I_p (G, D) = sum over adapted layers and prompt rows of dpk Wk + dpv Wv
    const dIp = new Float32Array(G * D),
      colK = new Float32Array(kv),
      colV = new Float32Array(kv);
    const feats = new Float32Array(G * F);
    imgs.forEach((h, g) => {
      feats.set(this.made.get(h.source)!, g * F);
      const row = dIp.subarray(g * D, (g + 1) * D);
      for (let l = this.firstLayer; l < c.nLayers; l++) {
        const { dpk, dpv } = h.layers[l];
        colK.fill(0);
        colV.fill(0);
        for (let k = 0; k < K; k++) {
          be.add(colK, dpk.subarray(k * kv, (k + 1) * kv), kv);
          be.add(colV, dpv.subarray(k * kv, (k + 1) * kv), kv);
        }
        const { wk, wv } = this.text.projections(l);
        be.matmulBack(row, colK, wk, 1, true);
        be.matmulBack(row, colV, wv, 1, true);
      }
    });
    // LayerNorm backward: xhat = (z - mu) rstd; dz = rstd (g - mean(g) - xhat mean(g xhat)), g = dIp * w
    const z = this.linear(feats, G);
    const mean = new Float32Array(G),
      rstd = new Float32Array(G),
      ln = new Float32Array(G * D);
    be.layerNorm(ln, z, this.normW, this.normB, G, D, PROJ_EPS, mean, rstd);
    const dzT = new Float32Array(D * G); // (D, G): dz transposed, for the weight gradient
    for (let g = 0; g < G; g++) {
      let sg = 0,
        sgx = 0;
      for (let i = 0; i < D; i++) {
        const xh = (z[g * D + i] - mean[g]) * rstd[g];
        const gi = dIp[g * D + i] * this.normW[i];
        dNW[i] += dIp[g * D + i] * xh;
        dNB[i] += dIp[g * D + i];
        sg += gi;
        sgx += gi * xh;
      }
      for (let i = 0; i < D; i++) {
        const xh = (z[g * D + i] - mean[g]) * rstd[g];
        const dz = rstd[g] * (dIp[g * D + i] * this.normW[i] - sg / D - (xh * sgx) / D);
        dzT[i * G + g] = dz;
        dB[i] += dz;
      }
    }
    // dW (D, F) = dz^T (D, G) . feats (G, F): feats as a (G, F) matrix in matmulBack
    be.matmulBack(dW, dzT, { dtype: 'f32', rows: G, cols: F, data: feats }, D);
  }

  /** Refuse features from another encoder than the one this adapter was made or trained for. */
  checkEncoder(e: EncoderIdentity, where: string): void {
    if (!sameEncoder(e, this.encoder)) {
      throw new LlamaAdapterError(
        `${where}: this multimodal adapter was trained with image encoder ${describeEncoder(this.encoder)}, not ${describeEncoder(e)} (its projection fits only that encoder's features)`,
      );
    }
  }
}

export interface CreateMultimodalOptions extends CreateAdapterOptions {
  encoder: EncoderIdentity;
}

/** A new multimodal adapter: the text adapter as createAdapter makes it (zero gates), projection weight ~ N(0, 1/F), bias 0, norm 1 / 0. */
export function createMultimodalAdapter(host: MethodHost, o: CreateMultimodalOptions): MultimodalAdapter {
  const m = new MultimodalAdapter(createAdapter(host, o), o.encoder);
  const rng = new Rng(((o.seed ?? 0) * 7919 + 17) >>> 0);
  const s = 1 / Math.sqrt(m.featureDim);
  for (let i = 0; i < m.projW.length; i++) m.projW[i] = rng.normal() * s;
  m.invalidate();
  return m;
}
