// Frozen weights in canonical form. Every checkpoint format maps onto these names (GGUF's
// naming), so model code never knows where a tensor came from:
//   tok_embd (vocab, dim)           output (vocab, dim)  [same object as tok_embd when tied]
//   output_norm (dim)
//   blk.{i}.attn_norm (dim)         blk.{i}.ffn_norm (dim)
//   blk.{i}.attn_q (nHeads*hs, dim) blk.{i}.attn_k / attn_v (nKvHeads*hs, dim)
//   blk.{i}.attn_output (dim, nHeads*hs)
//   blk.{i}.ffn_gate (hidden, dim)  [w1]   blk.{i}.ffn_up (hidden, dim) [w3]
//   blk.{i}.ffn_down (dim, hidden)  [w2]
// RoPE convention: q/k rows are in the interleaved (Meta / llama2.c) order; HF checkpoints are
// permuted back at load (see formats/hf.ts), so one RoPE kernel serves every source.

/** A matrix (rows, cols), row-major. bf16 is stored as the upper 16 bits of the fp32 pattern. */
export type Matrix =
  | { dtype: 'f32'; rows: number; cols: number; data: Float32Array }
  | { dtype: 'bf16'; rows: number; cols: number; data: Uint16Array };

export type WeightDtype = Matrix['dtype'];

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

export function f32Matrix(rows: number, cols: number, data: Float32Array): Matrix {
  return { dtype: 'f32', rows, cols, data };
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

export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) u[i] = src[i] << 16;
  return out;
}

export function matrixToBf16(m: Matrix): Matrix {
  return m.dtype === 'bf16' ? m : { dtype: 'bf16', rows: m.rows, cols: m.cols, data: toBf16(m.data) };
}

export function matrixToF32(m: Matrix): Float32Array {
  return m.dtype === 'f32' ? m.data : bf16ToF32(m.data);
}
