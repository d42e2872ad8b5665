// ggml's block-quantized weight types (the layouts of ggml-common.h, the quantizers and
// dequantizers of ggml-quants.c) and the exact semantics of a product with a quantized matrix.
// This is the oracle the native kernels (native/quant.cc) are tested against.
//
// A product x · W^T with a quantized W is computed as llama.cpp's CPU backend computes it: each
// row of x is first quantized per block to 8 bits (the weight type's "vec_dot type": Q8_0 for
// Q8_0 / Q4_0 / Q5_0, Q8_1 for Q4_1, Q8_K for the K-quants), then every block contributes its
// exact integer dot product times the two scales. The input gradient (dy · W, training) uses W
// dequantized exactly, in fp32 (no quantization of dy): the straight-through gradient QLoRA uses.
//
// Block layouts (bytes; d, m, dmin are IEEE halves):
//   Q8_0 (32 values, 34 B):  d, qs int8[32]                        y = d·q
//   Q4_0 (32, 18 B):         d, qs[16] (low nibbles: values 0-15, high: 16-31)   y = d·(q - 8)
//   Q4_1 (32, 20 B):         d, m, qs[16]                          y = d·q + m
//   Q5_0 (32, 22 B):         d, qh u32 (5th bits), qs[16]          y = d·(q - 16)
//   Q4_K (256, 144 B):       d, dmin, scales[12] (8 x 6-bit scale/min), qs[128]   y = d·sc·q - dmin·m
//   Q5_K (256, 176 B):       d, dmin, scales[12], qh[32], qs[128]  as Q4_K with a 5th bit
//   Q6_K (256, 210 B):       ql[128], qh[64], scales int8[16], d   y = d·sc·(q - 32)
import { LlamaAdapterError } from './errors.js';
import { f16Bits, f16Value, f16ToF32, bf16ToF32, type Matrix, type QuantDtype } from './weights.js';

/** The 8-bit activation formats products quantize x into (ggml's vec_dot types). */
type ActKind = 'q8_0' | 'q8_1' | 'q8_k';

export interface QuantType {
  name: string; // ggml's name
  ggml: number; // ggml_type id (GGUF tensor type)
  block: number; // values per block
  bytes: number; // bytes per block
  act: ActKind;
}

export const QUANT_TYPES: Readonly<Record<QuantDtype, QuantType>> = {
  q8_0: { name: 'Q8_0', ggml: 8, block: 32, bytes: 34, act: 'q8_0' },
  q4_0: { name: 'Q4_0', ggml: 2, block: 32, bytes: 18, act: 'q8_0' },
  q4_1: { name: 'Q4_1', ggml: 3, block: 32, bytes: 20, act: 'q8_1' },
  q5_0: { name: 'Q5_0', ggml: 6, block: 32, bytes: 22, act: 'q8_0' },
  q4_k: { name: 'Q4_K', ggml: 12, block: 256, bytes: 144, act: 'q8_k' },
  q5_k: { name: 'Q5_K', ggml: 13, block: 256, bytes: 176, act: 'q8_k' },
  q6_k: { name: 'Q6_K', ggml: 14, block: 256, bytes: 210, act: 'q8_k' },
};

export const QUANT_DTYPES = Object.keys(QUANT_TYPES) as QuantDtype[];

export function isQuantDtype(s: unknown): s is QuantDtype {
  return typeof s === 'string' && Object.hasOwn(QUANT_TYPES, s);
}

/** Bytes of one row of `cols` values (cols must be a multiple of the block size). */
export function quantRowBytes(dtype: QuantDtype, cols: number): number {
  const t = QUANT_TYPES[dtype];
  return (cols / t.block) * t.bytes;
}

// ---------------------------------------------------------------- small helpers

const f32 = Math.fround;

/** Round half to even (what nearest_int's 1.5·2^23 trick and _MM_ROUND_NEAREST do). */
function rne(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r & 1 ? r - 1 : r;
}

/** (scale, min) of sub-block j of a K-quant's 12 packed scale bytes at `o` (get_scale_min_k4). */
function scaleMinK4(b: Uint8Array, o: number, j: number): [number, number] {
  if (j < 4) return [b[o + j] & 63, b[o + j + 4] & 63];
  return [(b[o + j + 4] & 0xf) | ((b[o + j - 4] >> 6) << 4), (b[o + j + 4] >> 4) | ((b[o + j] >> 6) << 4)];
}

const half = (b: Uint8Array, o: number): number => f16Value(b[o] | (b[o + 1] << 8));
const i8 = (v: number): number => (v << 24) >> 24;

// ---------------------------------------------------------------- dequantization

/** out[outOff .. +n) = the n values (a whole number of blocks) stored at data[off ..). */
export function dequantizeRow(dtype: QuantDtype, data: Uint8Array, off: number, out: Float32Array, outOff: number, n: number): void {
  const t = QUANT_TYPES[dtype];
  for (let b = 0; b < n / t.block; b++) {
    const o = off + b * t.bytes;
    const y = outOff + b * t.block;
    switch (dtype) {
      case 'q8_0': {
        const d = half(data, o);
        for (let j = 0; j < 32; j++) out[y + j] = d * i8(data[o + 2 + j]);
        break;
      }
      case 'q4_0': {
        const d = half(data, o);
        for (let j = 0; j < 16; j++) {
          out[y + j] = ((data[o + 2 + j] & 0xf) - 8) * d;
          out[y + j + 16] = ((data[o + 2 + j] >> 4) - 8) * d;
        }
        break;
      }
      case 'q4_1': {
        const d = half(data, o);
        const m = half(data, o + 2);
        for (let j = 0; j < 16; j++) {
          out[y + j] = (data[o + 4 + j] & 0xf) * d + m;
          out[y + j + 16] = (data[o + 4 + j] >> 4) * d + m;
        }
        break;
      }
      case 'q5_0': {
        const d = half(data, o);
        const qh = (data[o + 2] | (data[o + 3] << 8) | (data[o + 4] << 16) | (data[o + 5] << 24)) >>> 0;
        for (let j = 0; j < 16; j++) {
          const h0 = ((qh >>> j) << 4) & 0x10;
          const h1 = (qh >>> (j + 12)) & 0x10;
          out[y + j] = (((data[o + 6 + j] & 0xf) | h0) - 16) * d;
          out[y + j + 16] = (((data[o + 6 + j] >> 4) | h1) - 16) * d;
        }
        break;
      }
      case 'q4_k':
      case 'q5_k': {
        const five = dtype === 'q5_k';
        const d = half(data, o);
        const dmin = half(data, o + 2);
        const qh = o + 16; // q5_k only
        const qs = o + (five ? 48 : 16);
        for (let c = 0; c < 4; c++) {
          const [sc1, m1] = scaleMinK4(data, o + 4, 2 * c);
          const [sc2, m2] = scaleMinK4(data, o + 4, 2 * c + 1);
          const d1 = f32(d * sc1),
            mm1 = f32(dmin * m1),
            d2 = f32(d * sc2),
            mm2 = f32(dmin * m2);
          for (let l = 0; l < 32; l++) {
            const q = data[qs + 32 * c + l];
            const hi1 = five && data[qh + l] & (1 << (2 * c)) ? 16 : 0;
            const hi2 = five && data[qh + l] & (2 << (2 * c)) ? 16 : 0;
            out[y + 64 * c + l] = f32(d1 * ((q & 0xf) + hi1)) - mm1;
            out[y + 64 * c + 32 + l] = f32(d2 * ((q >> 4) + hi2)) - mm2;
          }
        }
        break;
      }
      case 'q6_k': {
        const d = half(data, o + 208);
        for (let h = 0; h < 2; h++) {
          const ql = o + 64 * h;
          const qh = o + 128 + 32 * h;
          const sc = o + 192 + 8 * h;
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const q1 = ((data[ql + l] & 0xf) | ((data[qh + l] & 3) << 4)) - 32;
            const q2 = ((data[ql + l + 32] & 0xf) | (((data[qh + l] >> 2) & 3) << 4)) - 32;
            const q3 = ((data[ql + l] >> 4) | (((data[qh + l] >> 4) & 3) << 4)) - 32;
            const q4 = ((data[ql + l + 32] >> 4) | (((data[qh + l] >> 6) & 3) << 4)) - 32;
            const yy = y + 128 * h;
            out[yy + l] = f32(d * i8(data[sc + is])) * q1;
            out[yy + l + 32] = f32(d * i8(data[sc + is + 2])) * q2;
            out[yy + l + 64] = f32(d * i8(data[sc + is + 4])) * q3;
            out[yy + l + 96] = f32(d * i8(data[sc + is + 6])) * q4;
          }
        }
        break;
      }
    }
  }
}

/** The values of any matrix as float32 (f32: its own array; bf16 / f16 widened; quantized: dequantized). */
export function matrixToF32(m: Matrix): Float32Array {
  if (m.dtype === 'f32') return m.data;
  if (m.dtype === 'bf16') return bf16ToF32(m.data);
  if (m.dtype === 'f16') return f16ToF32(m.data);
  const out = new Float32Array(m.rows * m.cols);
  const rb = quantRowBytes(m.dtype, m.cols);
  for (let r = 0; r < m.rows; r++) dequantizeRow(m.dtype, m.data, r * rb, out, r * m.cols, m.cols);
  return out;
}

// ---------------------------------------------------------------- quantization (writers)

/** Whether `dtype` can be written (quantized from float32) here. */
export function canQuantize(dtype: QuantDtype): boolean {
  return dtype !== 'q5_k';
}

/**
 * Quantize n values (a whole number of blocks) of src at srcOff into out at byte outOff, with
 * ggml's reference quantizers (quantize_row_*_ref: what llama-quantize writes without an
 * importance matrix).
 */
export function quantizeRow(dtype: QuantDtype, src: Float32Array, srcOff: number, n: number, out: Uint8Array, outOff: number): void {
  const t = QUANT_TYPES[dtype];
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const setHalf = (o: number, v: number): void => dv.setUint16(o, f16Bits(v), true);
  for (let b = 0; b < n / t.block; b++) {
    const x = src.subarray(srcOff + b * t.block, srcOff + (b + 1) * t.block);
    const o = outOff + b * t.bytes;
    switch (dtype) {
      case 'q8_0': {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[j]));
        const d = f32(amax / 127);
        const id = d ? f32(1 / d) : 0;
        setHalf(o, d);
        for (let j = 0; j < 32; j++) out[o + 2 + j] = roundAway(f32(x[j] * id)) & 0xff;
        break;
      }
      case 'q4_0':
      case 'q5_0': {
        const five = dtype === 'q5_0';
        let amax = 0;
        let max = 0;
        for (let j = 0; j < 32; j++) {
          if (amax < Math.abs(x[j])) {
            amax = Math.abs(x[j]);
            max = x[j];
          }
        }
        const d = f32(max / (five ? -16 : -8));
        const id = d ? f32(1 / d) : 0;
        setHalf(o, d);
        const qs = o + (five ? 6 : 2);
        let qh = 0;
        for (let j = 0; j < 16; j++) {
          const top = five ? 31 : 15;
          const x0 = Math.min(top, Math.trunc(f32(f32(x[j] * id) + (five ? 16.5 : 8.5))));
          const x1 = Math.min(top, Math.trunc(f32(f32(x[j + 16] * id) + (five ? 16.5 : 8.5))));
          out[qs + j] = (x0 & 0xf) | ((x1 & 0xf) << 4);
          qh |= ((x0 & 0x10) >> 4) << j;
          qh |= ((x1 & 0x10) >> 4) << (j + 16);
        }
        if (five) dv.setUint32(o + 2, qh >>> 0, true);
        break;
      }
      case 'q4_1': {
        let min = Infinity;
        let max = -Infinity;
        for (let j = 0; j < 32; j++) {
          min = Math.min(min, x[j]);
          max = Math.max(max, x[j]);
        }
        const d = f32(f32(max - min) / 15);
        const id = d ? f32(1 / d) : 0;
        setHalf(o, d);
        setHalf(o + 2, min);
        for (let j = 0; j < 16; j++) {
          const x0 = Math.min(15, Math.trunc(f32(f32(f32(x[j] - min) * id) + 0.5)));
          const x1 = Math.min(15, Math.trunc(f32(f32(f32(x[j + 16] - min) * id) + 0.5)));
          out[o + 4 + j] = x0 | (x1 << 4);
        }
        break;
      }
      case 'q4_k':
        quantizeQ4K(x, out, o, setHalf);
        break;
      case 'q6_k':
        quantizeQ6K(x, out, o, setHalf);
        break;
      case 'q5_k':
        throw new LlamaAdapterError('quantizing to Q5_K is not supported (it can be read, not written)');
    }
  }
}

/** C's roundf: half away from zero. */
function roundAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

/** make_qkx2_quants(32, 15, x, weights, L, &min, Laux, -1, 0.1, 20, false): returns [scale, -min]. */
function makeQkx2(x: Float32Array, w: Float32Array, L: Uint8Array, lOff: number): [number, number] {
  const n = x.length;
  const nmax = 15;
  let min = x[0];
  let max = x[0];
  let sumW = w[0];
  let sumX = f32(sumW * x[0]);
  for (let i = 1; i < n; i++) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sumW = f32(sumW + w[i]);
    sumX = f32(sumX + f32(w[i] * x[i]));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lOff, lOff + n);
    return [0, -min];
  }
  let iscale = f32(nmax / f32(max - min));
  let scale = f32(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(0, Math.min(nmax, rne(f32(iscale * f32(x[i] - min)))));
    L[lOff + i] = l;
    const diff = f32(f32(f32(scale * l) + min) - x[i]);
    bestError = f32(bestError + f32(w[i] * f32(diff * diff)));
  }
  const aux = new Uint8Array(n);
  for (let is = 0; is <= 20; is++) {
    iscale = f32(f32(f32(-1 + f32(0.1 * is)) + nmax) / f32(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(0, Math.min(nmax, rne(f32(iscale * f32(x[i] - min)))));
      aux[i] = l;
      sumL = f32(sumL + f32(w[i] * l));
      sumL2 = f32(sumL2 + f32(f32(w[i] * l) * l));
      sumXL = f32(sumXL + f32(f32(w[i] * l) * x[i]));
    }
    const D = f32(f32(sumW * sumL2) - f32(sumL * sumL));
    if (D > 0) {
      let thisScale = f32(f32(f32(sumW * sumXL) - f32(sumX * sumL)) / D);
      let thisMin = f32(f32(f32(sumL2 * sumX) - f32(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = f32(sumXL / sumL2);
      }
      let cur = 0;
      for (let i = 0; i < n; i++) {
        const diff = f32(f32(f32(thisScale * aux[i]) + thisMin) - x[i]);
        cur = f32(cur + f32(w[i] * f32(diff * diff)));
      }
      if (cur < bestError) {
        L.set(aux, lOff);
        bestError = cur;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return [scale, -min];
}

function quantizeQ4K(x: Float32Array, out: Uint8Array, o: number, setHalf: (o: number, v: number) => void): void {
  const L = new Uint8Array(256);
  const w = new Float32Array(32);
  const scales = new Float32Array(8);
  const mins = new Float32Array(8);
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    const xs = x.subarray(32 * j, 32 * j + 32);
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = f32(sumX2 + f32(xs[l] * xs[l]));
    const av = f32(Math.sqrt(f32(sumX2 / 32)));
    for (let l = 0; l < 32; l++) w[l] = f32(av + Math.abs(xs[l]));
    [scales[j], mins[j]] = makeQkx2(xs, w, L, 32 * j);
    if (scales[j] > maxScale) maxScale = scales[j];
    if (mins[j] > maxMin) maxMin = mins[j];
  }
  const invScale = maxScale > 0 ? f32(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? f32(63 / maxMin) : 0;
  const sc = o + 4;
  out.fill(0, sc, sc + 12);
  for (let j = 0; j < 8; j++) {
    const ls = Math.min(63, rne(f32(invScale * scales[j])) & 0xff);
    const lm = Math.min(63, rne(f32(invMin * mins[j])) & 0xff);
    if (j < 4) {
      out[sc + j] = ls;
      out[sc + j + 4] = lm;
    } else {
      out[sc + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
      out[sc + j - 4] |= (ls >> 4) << 6;
      out[sc + j] |= (lm >> 4) << 6;
    }
  }
  setHalf(o, f32(maxScale / 63));
  setHalf(o + 2, f32(maxMin / 63));
  const d = half(out, o);
  const dmin = half(out, o + 2);
  for (let j = 0; j < 8; j++) {
    const [s, m] = scaleMinK4(out, sc, j);
    const dd = f32(d * s);
    if (!dd) continue;
    const dm = f32(dmin * m);
    for (let ii = 0; ii < 32; ii++) L[32 * j + ii] = Math.max(0, Math.min(15, rne(f32(f32(x[32 * j + ii] + dm) / dd))));
  }
  for (let c = 0; c < 4; c++) for (let l = 0; l < 32; l++) out[o + 16 + 32 * c + l] = L[64 * c + l] | (L[64 * c + 32 + l] << 4);
}

/** make_qx_quants(16, 32, x, L, rmse_type 1, NULL): returns the scale; L gets values 0..63. */
function makeQx(x: Float32Array, L: Int8Array, lOff: number): number {
  const nmax = 32;
  let max = 0;
  let amax = 0;
  for (let i = 0; i < x.length; i++) {
    const ax = Math.abs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15) {
    L.fill(0, lOff, lOff + x.length);
    return 0;
  }
  const pass = (iscale: number, store: boolean): [number, number] => {
    let sumlx = 0;
    let suml2 = 0;
    for (let i = 0; i < x.length; i++) {
      const l = Math.max(-nmax, Math.min(nmax - 1, rne(f32(iscale * x[i]))));
      if (store) L[lOff + i] = l + nmax;
      const w = f32(x[i] * x[i]);
      sumlx = f32(sumlx + f32(f32(w * x[i]) * l));
      suml2 = f32(suml2 + f32(f32(w * l) * l));
    }
    return [sumlx, suml2];
  };
  let iscale = f32(-nmax / max);
  let [sumlx, suml2] = pass(iscale, true);
  let scale = suml2 ? f32(sumlx / suml2) : 0;
  let best = f32(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = f32(-f32(nmax + f32(0.1 * is)) / max);
    [sumlx, suml2] = pass(iscale, false);
    if (suml2 > 0 && f32(sumlx * sumlx) > f32(best * suml2)) {
      pass(iscale, true);
      scale = f32(sumlx / suml2);
      best = f32(scale * sumlx);
    }
  }
  return scale;
}

function quantizeQ6K(x: Float32Array, out: Uint8Array, o: number, setHalf: (o: number, v: number) => void): void {
  const L = new Int8Array(256);
  const scales = new Float32Array(16);
  let maxScale = 0;
  let maxAbs = 0;
  for (let ib = 0; ib < 16; ib++) {
    scales[ib] = makeQx(x.subarray(16 * ib, 16 * ib + 16), L, 16 * ib);
    if (Math.abs(scales[ib]) > maxAbs) {
      maxAbs = Math.abs(scales[ib]);
      maxScale = scales[ib];
    }
  }
  out.fill(0, o, o + 210);
  if (maxAbs < 1e-15) return;
  const iscale = f32(-128 / maxScale);
  setHalf(o + 208, f32(1 / iscale));
  for (let ib = 0; ib < 16; ib++) out[o + 192 + ib] = Math.min(127, rne(f32(iscale * scales[ib]))) & 0xff;
  const d = half(out, o + 208);
  for (let j = 0; j < 16; j++) {
    const dd = f32(d * i8(out[o + 192 + j]));
    if (!dd) continue;
    for (let ii = 0; ii < 16; ii++) L[16 * j + ii] = Math.max(-32, Math.min(31, rne(f32(x[16 * j + ii] / dd)))) + 32;
  }
  for (let h = 0; h < 2; h++) {
    const ql = o + 64 * h;
    const qh = o + 128 + 32 * h;
    const j = 128 * h;
    for (let l = 0; l < 32; l++) {
      const q1 = L[j + l] & 0xf;
      const q2 = L[j + l + 32] & 0xf;
      const q3 = L[j + l + 64] & 0xf;
      const q4 = L[j + l + 96] & 0xf;
      out[ql + l] = q1 | (q3 << 4);
      out[ql + l + 32] = q2 | (q4 << 4);
      out[qh + l] = (L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6);
    }
  }
}

/** A float32 matrix quantized to `dtype` (cols must be a multiple of its block size). */
export function quantizeMatrix(dtype: QuantDtype, rows: number, cols: number, data: Float32Array): Matrix {
  const rb = quantRowBytes(dtype, cols);
  const out = new Uint8Array(rows * rb);
  for (let r = 0; r < rows; r++) quantizeRow(dtype, data, r * cols, cols, out, r * rb);
  return { dtype, rows, cols, data: out };
}

// ---------------------------------------------------------------- products (the oracle)

/** One row of activations quantized for products with a weight type (the vec_dot type's blocks). */
export interface QuantizedActs {
  q: Int8Array; // (K) the 8-bit values
  d: Float32Array; // (K / 32 or K / 256) block scales as the product uses them (Q8_0/Q8_1: rounded to half)
  s: Float32Array; // Q8_1 only: (K / 32) d·sum(q) rounded to half
  bsums: Int32Array; // Q8_K only: (K / 16) sums of q per 16 values
}

export function actsBuffer(K: number): QuantizedActs {
  return { q: new Int8Array(K), d: new Float32Array(Math.ceil(K / 32)), s: new Float32Array(Math.ceil(K / 32)), bsums: new Int32Array(Math.ceil(K / 16)) };
}

/**
 * Quantize x[off .. off + K) for products with `dtype` weights, into `a`, as llama.cpp's x86 CPU
 * backend does (quantize_row_q8_0 / q8_1 with 127/amax and round-to-nearest-even; Q8_K: the
 * reference quantizer, -127/max of the largest-magnitude value), in float32 arithmetic.
 */
export function quantizeActs(dtype: QuantDtype, x: Float32Array, off: number, K: number, a: QuantizedActs): void {
  const act = QUANT_TYPES[dtype].act;
  if (act === 'q8_k') {
    for (let b = 0; b < K / 256; b++) {
      const o = off + 256 * b;
      let max = 0;
      let amax = 0;
      for (let j = 0; j < 256; j++) {
        const ax = Math.abs(x[o + j]);
        if (ax > amax) {
          amax = ax;
          max = x[o + j];
        }
      }
      if (!amax) {
        a.d[b] = 0;
        a.q.fill(0, 256 * b, 256 * b + 256);
      } else {
        const iscale = f32(-127 / max);
        for (let j = 0; j < 256; j++) a.q[256 * b + j] = Math.min(127, rne(f32(iscale * x[o + j])));
        a.d[b] = f32(1 / iscale);
      }
      for (let j = 0; j < 16; j++) {
        let s = 0;
        for (let i = 0; i < 16; i++) s += a.q[256 * b + 16 * j + i];
        a.bsums[16 * b + j] = s;
      }
    }
    return;
  }
  for (let b = 0; b < K / 32; b++) {
    const o = off + 32 * b;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[o + j]));
    const d = f32(amax / 127);
    const id = amax !== 0 ? f32(127 / amax) : 0;
    let sum = 0;
    for (let j = 0; j < 32; j++) {
      const q = rne(f32(x[o + j] * id));
      a.q[32 * b + j] = q;
      sum += q;
    }
    a.d[b] = f16Value(f16Bits(d));
    if (act === 'q8_1') a.s[b] = f16Value(f16Bits(f32(d * sum)));
  }
}

/** The product of one quantized weight row (K values at data[off ..)) with quantized activations. */
export function dotRow(dtype: QuantDtype, data: Uint8Array, off: number, a: QuantizedActs, K: number): number {
  const t = QUANT_TYPES[dtype];
  const q = a.q;
  let sum = 0;
  for (let b = 0; b < K / t.block; b++) {
    const o = off + b * t.bytes;
    const y = b * t.block;
    switch (dtype) {
      case 'q8_0': {
        let s = 0;
        for (let j = 0; j < 32; j++) s += i8(data[o + 2 + j]) * q[y + j];
        sum += half(data, o) * a.d[b] * s;
        break;
      }
      case 'q4_0':
      case 'q5_0':
      case 'q4_1': {
        const five = dtype === 'q5_0';
        const qs = o + (dtype === 'q4_0' ? 2 : dtype === 'q4_1' ? 4 : 6);
        const qh = five ? (data[o + 2] | (data[o + 3] << 8) | (data[o + 4] << 16) | (data[o + 5] << 24)) >>> 0 : 0;
        const off0 = dtype === 'q4_0' ? 8 : five ? 16 : 0;
        let s = 0;
        for (let j = 0; j < 16; j++) {
          const lo = (data[qs + j] & 0xf) | (five ? ((qh >>> j) << 4) & 0x10 : 0);
          const hi = (data[qs + j] >> 4) | (five ? (qh >>> (j + 12)) & 0x10 : 0);
          s += (lo - off0) * q[y + j] + (hi - off0) * q[y + j + 16];
        }
        sum += half(data, o) * a.d[b] * s;
        if (dtype === 'q4_1') sum += half(data, o + 2) * a.s[b];
        break;
      }
      case 'q4_k':
      case 'q5_k': {
        const five = dtype === 'q5_k';
        const qs = o + (five ? 48 : 16);
        let isum = 0;
        let msum = 0;
        for (let j = 0; j < 8; j++) {
          const [sc, m] = scaleMinK4(data, o + 4, j);
          const c = j >> 1;
          const shift = j & 1 ? 4 : 0;
          let s = 0;
          for (let l = 0; l < 32; l++) {
            let v = (data[qs + 32 * c + l] >> shift) & 0xf;
            if (five && data[o + 16 + l] & (1 << j)) v += 16;
            s += v * q[y + 32 * j + l];
          }
          isum += sc * s;
          msum += m * (a.bsums[16 * b + 2 * j] + a.bsums[16 * b + 2 * j + 1]);
        }
        sum += a.d[b] * half(data, o) * isum - a.d[b] * half(data, o + 2) * msum;
        break;
      }
      case 'q6_k': {
        let isum = 0;
        for (let h = 0; h < 2; h++) {
          const ql = o + 64 * h;
          const qh = o + 128 + 32 * h;
          for (let l = 0; l < 32; l++) {
            const vals = [
              ((data[ql + l] & 0xf) | ((data[qh + l] & 3) << 4)) - 32,
              ((data[ql + l + 32] & 0xf) | (((data[qh + l] >> 2) & 3) << 4)) - 32,
              ((data[ql + l] >> 4) | (((data[qh + l] >> 4) & 3) << 4)) - 32,
              ((data[ql + l + 32] >> 4) | (((data[qh + l] >> 6) & 3) << 4)) - 32,
            ];
            for (let k = 0; k < 4; k++) {
              const idx = 128 * h + 32 * k + l;
              isum += i8(data[o + 192 + (idx >> 4)]) * vals[k] * q[y + idx];
            }
          }
        }
        sum += half(data, o + 208) * a.d[b] * isum;
        break;
      }
    }
  }
  return sum;
}
