// The CLIP vision tower in the Hugging Face layout (`CLIPVisionModel`, `CLIPVisionModelWithProjection`
// or a whole `CLIPModel`, whose text tower is skipped): config.json + model.safetensors (F32, F16 or
// BF16, kept as f32 here), any ViT shape (B/32, B/16, L/14, the tiny test tower). The forward runs on
// the backend's kernels:
//   pixels (B, 3, S, S) -> patches (B, n, 3p^2) . patch_embedding^T -> [class; patches] + position
//   -> pre_layrnorm (= hidden[0]) -> N x { h += out_proj(attn(q, k, v of layer_norm1(h)));
//   h += fc2(act(fc1(layer_norm2(h)))) } (= hidden[i]) -> pooled = post_layernorm(hidden[N][:, 0])
//   -> image_embeds = pooled . visual_projection^T (when the file has it).
// Everything is checked against ../shared/fixtures/clip-tiny-encode (made by refclip.py).

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GELU, type Backend, type GeluKind } from '../backend/backend.js';
import { atFile, check, LlamaAdapterError } from '../core/errors.js';
import { readSafetensors, type SafetensorsFile } from '../core/safetensors.js';
import type { Matrix } from '../core/weights.js';
import { TensorSample } from '../formats/fingerprint.js';

/** A CLIPVisionConfig (HF field meanings; defaults = ViT-B/32, as HF's). */
export interface ClipVisionConfig {
  hiddenSize: number; // C, the tower's width
  intermediateSize: number; // MLP hidden width
  projectionDim: number; // visual_projection output (when present)
  numLayers: number; // N encoder layers
  numHeads: number; // attention heads (C / numHeads = head size)
  numChannels: number; // input channels (3)
  imageSize: number; // S, the square input side
  patchSize: number; // p (S / p patches per side)
  hiddenAct: 'quick_gelu' | 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh';
  layerNormEps: number;
}

const DEFAULTS: ClipVisionConfig = {
  hiddenSize: 768,
  intermediateSize: 3072,
  projectionDim: 512,
  numLayers: 12,
  numHeads: 12,
  numChannels: 3,
  imageSize: 224,
  patchSize: 32,
  hiddenAct: 'quick_gelu',
  layerNormEps: 1e-5,
};

const ACTS: Record<ClipVisionConfig['hiddenAct'], GeluKind> = { quick_gelu: GELU.quick, gelu: GELU.erf, gelu_new: GELU.tanh, gelu_pytorch_tanh: GELU.tanh };

interface LayerW {
  ln1w: Float32Array;
  ln1b: Float32Array;
  wq: Matrix;
  bq: Float32Array;
  wk: Matrix;
  bk: Float32Array;
  wv: Matrix;
  bv: Float32Array;
  wo: Matrix;
  bo: Float32Array;
  ln2w: Float32Array;
  ln2b: Float32Array;
  fc1: Matrix;
  fc1b: Float32Array;
  fc2: Matrix;
  fc2b: Float32Array;
}

/** What encode() returns; hidden and embeddings only when asked for. */
export interface ClipOutput {
  embeddings?: Float32Array; // (B, n+1, C) before pre_layrnorm
  hidden?: Float32Array[]; // N+1 x (B, n+1, C): HF hidden_states
  cls: Float32Array[]; // N+1 x (B, C): post_layernorm(hidden[i][:, 0]) for every i
  pooled: Float32Array; // (B, C) = cls[N]
  imageEmbeds: Float32Array | null; // (B, projectionDim)
}

function num(c: Record<string, unknown>, key: string, file: string, def: number): number {
  const v = c[key] ?? def;
  check(typeof v === 'number' && Number.isFinite(v) && v > 0, `${file}: "${key}" must be a positive number (got ${JSON.stringify(v)})`);
  return v as number;
}

/** The vision config of a CLIPVisionConfig or CLIPModel config.json (fields under vision_config). */
export function readClipConfig(file: string): ClipVisionConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new LlamaAdapterError(`${file}: cannot read the CLIP config (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  check(raw !== null && typeof raw === 'object' && !Array.isArray(raw), `${file}: expected a JSON object`);
  const top = raw as Record<string, unknown>;
  const v = (typeof top.vision_config === 'object' && top.vision_config !== null ? top.vision_config : top) as Record<string, unknown>;
  const act = (v.hidden_act ?? DEFAULTS.hiddenAct) as string;
  check(act in ACTS, `${file}: hidden_act "${act}" is not supported (expected ${Object.keys(ACTS).join(', ')})`);
  const int = (k: string, d: number): number => {
    const x = num(v, k, file, d);
    check(Number.isInteger(x) && x <= 1 << 20, `${file}: "${k}" must be an integer up to 2^20 (got ${x})`);
    return x;
  };
  const c: ClipVisionConfig = {
    hiddenSize: int('hidden_size', DEFAULTS.hiddenSize),
    intermediateSize: int('intermediate_size', DEFAULTS.intermediateSize),
    // a CLIPModel keeps projection_dim at the top level
    projectionDim: top.vision_config ? num(top, 'projection_dim', file, DEFAULTS.projectionDim) : int('projection_dim', DEFAULTS.projectionDim),
    numLayers: int('num_hidden_layers', DEFAULTS.numLayers),
    numHeads: int('num_attention_heads', DEFAULTS.numHeads),
    numChannels: int('num_channels', DEFAULTS.numChannels),
    imageSize: int('image_size', DEFAULTS.imageSize),
    patchSize: int('patch_size', DEFAULTS.patchSize),
    hiddenAct: act as ClipVisionConfig['hiddenAct'],
    layerNormEps: num(v, 'layer_norm_eps', file, DEFAULTS.layerNormEps),
  };
  check(c.hiddenSize % c.numHeads === 0, `${file}: hidden_size ${c.hiddenSize} is not a multiple of num_attention_heads ${c.numHeads}`);
  check(c.imageSize % c.patchSize === 0, `${file}: image_size ${c.imageSize} is not a multiple of patch_size ${c.patchSize}`);
  check(c.numChannels === 3, `${file}: num_channels is ${c.numChannels}; only RGB towers (3) are supported`);
  return c;
}

/** The 1-based encoder layers whose CLS tokens make the multi-scale feature: [N(m+1)/M for m < M] (refmultimodal.default_layers). */
export function defaultFeatureLayers(nLayers: number, M = 3): number[] {
  return Array.from({ length: M }, (_, m) => Math.floor((nLayers * (m + 1)) / M)).filter((l, i, a) => l >= 1 && a.indexOf(l) === i);
}

export class ClipVision {
  readonly path: string;
  readonly fingerprint: string;
  private readonly patchW: Matrix; // (C, 3 p^2)
  private readonly classEmb: Float32Array; // (C)
  private readonly posEmb: Float32Array; // (n+1, C)
  private readonly preW: Float32Array;
  private readonly preB: Float32Array;
  private readonly postW: Float32Array;
  private readonly postB: Float32Array;
  private readonly layers: LayerW[];
  private readonly proj: Matrix | null; // (projectionDim, C)

  constructor(
    dir: string,
    readonly config: ClipVisionConfig,
    f: SafetensorsFile,
  ) {
    this.path = dir;
    const c = config;
    const C = c.hiddenSize,
      p = c.patchSize,
      n = (c.imageSize / p) ** 2 + 1;
    const prefix = f.has('vision_model.embeddings.class_embedding') ? 'vision_model.' : '';
    const hash = createHash('sha256');
    const file = f.path;
    const tensor = (name: string, shape: number[]): Float32Array => {
      const full = prefix + name;
      check(f.has(full), `${file}: missing tensor "${full}"`);
      const got = f.info(full).shape;
      check(
        got.length === shape.length && got.every((d, i) => d === shape[i]),
        `${file}: tensor "${full}" has shape [${got}], expected [${shape}] for this config`,
      );
      const data = f.tensorF32(full);
      for (let i = 0; i < data.length; i++)
        if (!Number.isFinite(data[i])) throw new LlamaAdapterError(`${file}: tensor "${full}" holds ${data[i]} at element ${i}`);
      const s = new TensorSample(shape);
      s.feedF32(data);
      hash.update(`${name} ${shape.join('x')}\n`);
      hash.update(new Uint8Array(s.values.buffer, s.values.byteOffset, s.values.byteLength));
      return data;
    };
    const mat = (name: string, rows: number, cols: number, shape = [rows, cols]): Matrix => ({ dtype: 'f32', rows, cols, data: tensor(name, shape) });
    this.classEmb = tensor('embeddings.class_embedding', [C]);
    this.patchW = mat('embeddings.patch_embedding.weight', C, 3 * p * p, [C, 3, p, p]);
    this.posEmb = tensor('embeddings.position_embedding.weight', [n, C]);
    this.preW = tensor('pre_layrnorm.weight', [C]);
    this.preB = tensor('pre_layrnorm.bias', [C]);
    const I = c.intermediateSize;
    this.layers = Array.from({ length: c.numLayers }, (_, i) => {
      const L = `encoder.layers.${i}.`;
      return {
        ln1w: tensor(`${L}layer_norm1.weight`, [C]),
        ln1b: tensor(`${L}layer_norm1.bias`, [C]),
        wq: mat(`${L}self_attn.q_proj.weight`, C, C),
        bq: tensor(`${L}self_attn.q_proj.bias`, [C]),
        wk: mat(`${L}self_attn.k_proj.weight`, C, C),
        bk: tensor(`${L}self_attn.k_proj.bias`, [C]),
        wv: mat(`${L}self_attn.v_proj.weight`, C, C),
        bv: tensor(`${L}self_attn.v_proj.bias`, [C]),
        wo: mat(`${L}self_attn.out_proj.weight`, C, C),
        bo: tensor(`${L}self_attn.out_proj.bias`, [C]),
        ln2w: tensor(`${L}layer_norm2.weight`, [C]),
        ln2b: tensor(`${L}layer_norm2.bias`, [C]),
        fc1: mat(`${L}mlp.fc1.weight`, I, C),
        fc1b: tensor(`${L}mlp.fc1.bias`, [I]),
        fc2: mat(`${L}mlp.fc2.weight`, C, I),
        fc2b: tensor(`${L}mlp.fc2.bias`, [C]),
      };
    });
    this.postW = tensor('post_layernorm.weight', [C]);
    this.postB = tensor('post_layernorm.bias', [C]);
    if (f.has('visual_projection.weight')) {
      const [P] = f.info('visual_projection.weight').shape;
      this.proj = { dtype: 'f32', rows: P, cols: C, data: tensor2(f, 'visual_projection.weight', [P, C]) };
      this.config = { ...c, projectionDim: P }; // the weight's shape wins over the config
    } else this.proj = null;
    this.fingerprint = hash.digest('hex').slice(0, 16);
  }

  /** Tokens per image: patches + CLS. */
  get tokens(): number {
    return (this.config.imageSize / this.config.patchSize) ** 2 + 1;
  }

  /** A readable shape string (recorded in adapter files). */
  get shape(): string {
    const c = this.config;
    return `clip-vit C=${c.hiddenSize} layers=${c.numLayers} heads=${c.numHeads} mlp=${c.intermediateSize} patch=${c.patchSize} image=${c.imageSize} act=${c.hiddenAct}`;
  }

  /**
   * Run the tower on B preprocessed images (B, 3, S, S). `keep` = also return the embeddings and
   * every hidden state (for tests); the CLS token after post_layernorm of every entry is always
   * returned (cls[i] for hidden[i]).
   */
  encode(be: Backend, pixels: Float32Array, B: number, keep = false): ClipOutput {
    const c = this.config;
    const C = c.hiddenSize,
      S = c.imageSize,
      p = c.patchSize,
      H = c.numHeads,
      hs = C / H,
      I = c.intermediateSize;
    check(pixels.length === B * 3 * S * S, `CLIP encode: ${pixels.length} pixel values for ${B} images of 3x${S}x${S}`);
    const T = this.tokens,
      n = T - 1,
      M = B * T;
    const tiles = new Float32Array(B * n * 3 * p * p); // (B, n, 3p^2)
    be.patches(tiles, pixels, B, 3, S, p);
    const e = new Float32Array(B * n * C); // (B*n, C)
    be.matmul(e, tiles, this.patchW, B * n);
    const h = new Float32Array(M * C); // (B, T, C) residual stream
    for (let b = 0; b < B; b++) {
      h.set(this.classEmb, b * T * C);
      h.set(e.subarray(b * n * C, (b + 1) * n * C), (b * T + 1) * C);
      be.add(h.subarray(b * T * C, (b + 1) * T * C), this.posEmb, T * C);
    }
    const out: ClipOutput = { cls: [], pooled: new Float32Array(0), imageEmbeds: null };
    if (keep) {
      out.embeddings = h.slice();
      out.hidden = [];
    }
    be.layerNorm(h, h, this.preW, this.preB, M, C, c.layerNormEps);
    const a = new Float32Array(M * C), // (M, C) normed input
      q = new Float32Array(M * C),
      k = new Float32Array(M * C),
      v = new Float32Array(M * C),
      att = new Float32Array(M * C),
      mlp = new Float32Array(M * I); // (M, I)
    const clsRows = new Float32Array(B * C); // (B, C)
    const takeCls = (): void => {
      for (let b = 0; b < B; b++) clsRows.set(h.subarray(b * T * C, b * T * C + C), b * C);
      const o = new Float32Array(B * C);
      be.layerNorm(o, clsRows, this.postW, this.postB, B, C, c.layerNormEps);
      out.cls.push(o);
      if (keep) out.hidden!.push(h.slice());
    };
    takeCls();
    const act = ACTS[c.hiddenAct];
    const shape = { B, T, S: T, H, Hkv: H, hs };
    for (const L of this.layers) {
      be.layerNorm(a, h, L.ln1w, L.ln1b, M, C, c.layerNormEps);
      be.matmul(q, a, L.wq, M);
      be.biasAdd(q, L.bq, M, C);
      be.matmul(k, a, L.wk, M);
      be.biasAdd(k, L.bk, M, C);
      be.matmul(v, a, L.wv, M);
      be.biasAdd(v, L.bv, M, C);
      be.encoderAttention(att, q, k, v, shape);
      be.matmul(a, att, L.wo, M);
      be.biasAdd(a, L.bo, M, C);
      be.add(h, a, M * C);
      be.layerNorm(a, h, L.ln2w, L.ln2b, M, C, c.layerNormEps);
      be.matmul(mlp, a, L.fc1, M);
      be.biasAdd(mlp, L.fc1b, M, I);
      be.gelu(mlp, mlp, M * I, act);
      be.matmul(a, mlp, L.fc2, M);
      be.biasAdd(a, L.fc2b, M, C);
      be.add(h, a, M * C);
      takeCls();
    }
    out.pooled = out.cls[c.numLayers];
    if (this.proj) {
      out.imageEmbeds = new Float32Array(B * this.proj.rows);
      be.matmul(out.imageEmbeds, out.pooled, this.proj, B);
    }
    return out;
  }
}

function tensor2(f: SafetensorsFile, name: string, shape: number[]): Float32Array {
  const got = f.info(name).shape;
  check(got.length === shape.length && got.every((d, i) => d === shape[i]), `${f.path}: tensor "${name}" has shape [${got}], expected [${shape}]`);
  return f.tensorF32(name);
}

/** True when `dir` holds an HF CLIP directory (config.json naming a CLIP vision tower or a CLIPModel). */
export function isClipDir(dir: string): boolean {
  const cfg = path.join(dir, 'config.json');
  if (!fs.existsSync(cfg)) return false;
  try {
    const j = JSON.parse(fs.readFileSync(cfg, 'utf8')) as { model_type?: unknown; vision_config?: unknown };
    return j.model_type === 'clip_vision_model' || j.model_type === 'clip' || typeof j.vision_config === 'object';
  } catch {
    return false;
  }
}

/** Load an HF CLIP vision tower from a directory (config.json + model.safetensors). */
export function loadClipVision(dir: string): ClipVision {
  const cfgPath = path.join(dir, 'config.json');
  const config = readClipConfig(cfgPath);
  const st = path.join(dir, 'model.safetensors');
  return atFile(st, () => new ClipVision(dir, config, readSafetensors(st)));
}
