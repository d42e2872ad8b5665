// Image preprocessing as CLIP's processor does it (HF CLIPImageProcessor, PIL path): shorter side
// to `size` with PIL's bicubic resample (a port of Pillow's libImaging/Resample.c: Keys a = -0.5,
// support 2 x the downscale factor, 22-bit fixed-point weights, horizontal pass first with 8-bit
// rounding and clipping between the passes), centre crop, x / 255, (x - mean) / std in float32.
// Bit-exact against PIL on the uint8 resize (../shared/fixtures/clip-preprocess).

import type { RgbImage } from './image.js';

/** OpenAI CLIP's normalisation (HF OPENAI_CLIP_MEAN / OPENAI_CLIP_STD). */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** How an encoder wants its pixels. */
export interface PreprocessConfig {
  size: number; // shortest side after the resize, and the square crop
  mean: readonly number[]; // per channel, applied after x / 255
  std: readonly number[];
  layout: 'chw' | 'hwc'; // CLIP / PyTorch (3, S, S) or TF.js (S, S, 3)
  crop: 'hf' | 'openai'; // crop offset rounding: floor (HF) or round half to even (OpenAI CLIP / torchvision)
}

const PRECISION_BITS = 32 - 8 - 2; // Pillow's Resample.c

function bicubic(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc: per output index its first input index and integer weights. */
function coeffs(inSize: number, outSize: number): { xmin: Int32Array; ks: Int32Array[] } {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const xmin = new Int32Array(outSize);
  const ks: Int32Array[] = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.trunc(center + support + 0.5), inSize) - lo;
    const k = new Float64Array(n);
    let ww = 0;
    for (let x = 0; x < n; x++) ww += k[x] = bicubic((x + lo - center + 0.5) * ss);
    const ki = new Int32Array(n);
    for (let x = 0; x < n; x++) {
      const v = ww !== 0 ? k[x] / ww : k[x];
      ki[x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    xmin[xx] = lo;
    ks.push(ki);
  }
  return { xmin, ks };
}

function clip8(acc: number): number {
  const v = Math.floor(acc / (1 << PRECISION_BITS));
  return Math.min(255, Math.max(0, v));
}

/** PIL Image.resize((w, h), BICUBIC) of an RGB image, bit for bit. */
export function resizeBicubic(img: RgbImage, w: number, h: number): RgbImage {
  let cur = img;
  if (w !== cur.width) {
    const { xmin, ks } = coeffs(cur.width, w);
    const out = new Uint8Array(w * cur.height * 3);
    const src = cur.data,
      W = cur.width;
    for (let y = 0; y < cur.height; y++)
      for (let x = 0; x < w; x++) {
        const k = ks[x],
          o = (y * W + xmin[x]) * 3;
        let r = 1 << (PRECISION_BITS - 1),
          g = r,
          b = r;
        for (let j = 0; j < k.length; j++) {
          r += src[o + 3 * j] * k[j];
          g += src[o + 3 * j + 1] * k[j];
          b += src[o + 3 * j + 2] * k[j];
        }
        const d = (y * w + x) * 3;
        out[d] = clip8(r);
        out[d + 1] = clip8(g);
        out[d + 2] = clip8(b);
      }
    cur = { width: w, height: cur.height, data: out };
  }
  if (h !== cur.height) {
    const { xmin, ks } = coeffs(cur.height, h);
    const out = new Uint8Array(w * h * 3);
    const src = cur.data,
      row = w * 3;
    for (let y = 0; y < h; y++) {
      const k = ks[y],
        base = xmin[y] * row;
      for (let i = 0; i < row; i++) {
        let acc = 1 << (PRECISION_BITS - 1);
        for (let j = 0; j < k.length; j++) acc += src[base + j * row + i] * k[j];
        out[y * row + i] = clip8(acc);
      }
    }
    cur = { width: w, height: h, data: out };
  }
  return cur;
}

/** (w, h) with the shorter side `size` and the longer int(size * long / short) (HF / torchvision). */
export function shortestSideSize(w: number, h: number, size: number): { w: number; h: number } {
  if (w <= h) return { w: size, h: Math.trunc((size * h) / w) };
  return { w: Math.trunc((size * w) / h), h: size };
}

/** Python's round() (half to even) of x. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Top-left of the centred crop: HF floors, OpenAI CLIP / torchvision round half to even. */
export function cropOffsets(w: number, h: number, crop: number, mode: 'hf' | 'openai'): { top: number; left: number } {
  if (mode === 'hf') return { top: Math.floor((h - crop) / 2), left: Math.floor((w - crop) / 2) };
  return { top: roundHalfEven((h - crop) / 2), left: roundHalfEven((w - crop) / 2) };
}

/**
 * The encoder's input for one image: resize (shorter side to `size`), centre crop, scale to
 * [0, 1], normalise, in the config's layout: (3, size, size) or (size, size, 3) float32.
 * An image smaller than the crop after the resize cannot happen (the resize makes its shorter side `size`).
 */
export function preprocessImage(img: RgbImage, c: PreprocessConfig): Float32Array {
  const { w, h } = shortestSideSize(img.width, img.height, c.size);
  const r = resizeBicubic(img, w, h);
  const { top, left } = cropOffsets(w, h, c.size, c.crop);
  const S = c.size;
  const out = new Float32Array(3 * S * S);
  const mean = c.mean.map(Math.fround),
    std = c.std.map(Math.fround);
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++)
      for (let ch = 0; ch < 3; ch++) {
        const u = r.data[((top + y) * w + left + x) * 3 + ch];
        const v = Math.fround(Math.fround(Math.fround(u * (1 / 255)) - mean[ch]) / std[ch]);
        out[c.layout === 'chw' ? (ch * S + y) * S + x : (y * S + x) * 3 + ch] = v;
      }
  return out;
}
