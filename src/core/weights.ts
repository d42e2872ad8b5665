// Frozen weights in canonical form, and the dtype conversions (bf16 / f16 <-> f32) the library
// uses. Every model format maps its tensors onto these fields through one role table
// (formats/roles.ts: GGUF's names, shapes, RoPE row order), so model code never knows where a
// tensor came from.

/**
 * ggml's block-quantized types kept as blocks in memory (core/quant.ts has their layouts and the
 * exact semantics of products with them): each row is cols / blockSize blocks, as GGUF stores it.
 */
export type QuantDtype = 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q4_k' | 'q5_k' | 'q6_k';

/**
 * A matrix (rows, cols), row-major. bf16 is stored as the upper 16 bits of the fp32 pattern, f16
 * as IEEE half bit patterns; a quantized matrix is its raw ggml blocks (rows * cols / blockSize
 * blocks, row by row).
 */
export type Matrix =
  | { dtype: 'f32'; rows: number; cols: number; data: Float32Array }
  | { dtype: 'bf16'; rows: number; cols: number; data: Uint16Array }
  | { dtype: 'f16'; rows: number; cols: number; data: Uint16Array }
  | { dtype: QuantDtype; rows: number; cols: number; data: Uint8Array };

export type WeightDtype = Matrix['dtype'];

export function isQuantized(m: Matrix): m is Extract<Matrix, { dtype: QuantDtype }> {
  return m.dtype !== 'f32' && m.dtype !== 'bf16' && m.dtype !== 'f16';
}

export interface LayerWeights {
  attnNorm: Float32Array; // (dim)
  wq: Matrix; // (nHeads*hs, dim)
  wk: Matrix; // (nKvHeads*hs, dim)
  wv: Matrix; // (nKvHeads*hs, dim)
  wo: Matrix; // (dim, nHeads*hs)
  ffnNorm: Float32Array; // (dim)
  w1: Matrix; // (hidden, dim)  gate
  w3: Matrix; // (hidden, dim)  up
  w2: Matrix; // (dim, hidden)  down
}

export interface ModelWeights {
  tokEmbd: Matrix; // (vocab, dim)
  layers: LayerWeights[];
  outputNorm: Float32Array; // (dim)
  output: Matrix; // (vocab, dim); === tokEmbd when tied
}

/** Round-to-nearest-even fp32 -> bf16 (NaN kept quiet). */
export function toBf16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  toBf16Into(out, src, src.length);
  return out;
}

/** out[i] = the first n values of src rounded to bf16 (ties to even; NaN stays a quiet NaN). */
export function toBf16Into(out: Uint16Array, src: Float32Array, n: number): void {
  const u = new Uint32Array(src.buffer, src.byteOffset, n);
  for (let i = 0; i < n; i++) out[i] = bf16RoundBits(u[i]) >>> 16;
}

/** The fp32 bit pattern x rounded to bf16 (ties to even; NaN kept quiet): the bf16 value is the upper 16 bits. */
function bf16RoundBits(x: number): number {
  return (x & 0x7fffffff) > 0x7f800000 ? (x | 0x00400000) >>> 0 : x + 0x7fff + ((x >>> 16) & 1);
}

/**
 * dst[i] = src[i] rounded to the nearest bf16 (ties to even; NaN stays a quiet NaN), as fp32.
 * The rounding a bf16-weight product applies to its activations (see Backend.matmul).
 */
export function roundBf16(dst: Float32Array, src: Float32Array, n = src.length): void {
  const s = new Uint32Array(src.buffer, src.byteOffset, n);
  const d = new Uint32Array(dst.buffer, dst.byteOffset, n);
  for (let i = 0; i < n; i++) d[i] = bf16RoundBits(s[i]) & 0xffff0000;
}

/** bf16 bit patterns -> float32 (exact). */
export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  bf16ToF32Into(out, src, src.length);
  return out;
}

/** out[i] = the first n bf16 bit patterns of src widened to float32 (exact: the upper 16 bits). */
export function bf16ToF32Into(out: Float32Array, src: Uint16Array, n: number): void {
  const u = new Uint32Array(out.buffer, out.byteOffset, n);
  for (let i = 0; i < n; i++) u[i] = src[i] << 16;
}

let f16Table: Float32Array | null = null;

/** IEEE half bit patterns -> float32 (exact). */
export function f16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  f16ToF32Into(out, src, src.length);
  return out;
}

/** out[i] = the first n IEEE half bit patterns of src as float32 (exact), via a 65536-entry table. */
export function f16ToF32Into(out: Float32Array, src: Uint16Array, n: number): void {
  const t = halfTable();
  for (let i = 0; i < n; i++) out[i] = t[src[i]];
}

/** The value of one IEEE half bit pattern. */
export function f16Value(h: number): number {
  return halfTable()[h & 0xffff];
}

function halfTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >>> 10) & 0x1f;
      const m = h & 0x3ff;
      if (e === 0) f16Table[h] = s * m * 2 ** -24;
      else if (e === 31) f16Table[h] = m ? NaN : s * Infinity;
      else f16Table[h] = s * (1 + m / 1024) * 2 ** (e - 15);
    }
  }
  return f16Table;
}

/** float32 -> IEEE half bit patterns, round to nearest even (overflow -> inf, NaN kept). */
export function toF16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  toF16Into(out, src, src.length);
  return out;
}

/** out[i] = the first n values of src as IEEE half bit patterns (round to nearest even). */
export function toF16Into(out: Uint16Array, src: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = f16Bits(src[i]);
}

const f16Scratch = new Float32Array(1);
const f16ScratchBits = new Uint32Array(f16Scratch.buffer);

/** The IEEE half bit pattern of x (as float32 first), round to nearest even (overflow -> inf, NaN kept). */
export function f16Bits(x: number): number {
  f16Scratch[0] = x;
  const b = f16ScratchBits[0];
  const sign = (b >>> 16) & 0x8000;
  const e32 = (b >>> 23) & 0xff;
  let m = b & 0x7fffff;
  if (e32 === 0xff) return sign | 0x7c00 | (m ? 0x200 | (m >>> 13) : 0);
  const e = e32 - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    m |= 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (m >>> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry may round up to inf: correct
  return sign | h;
}
