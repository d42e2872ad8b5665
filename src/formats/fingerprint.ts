// Weight fingerprints: a short stable hash that says "these are the same base weights", whatever
// file format they came from and whatever dtype they were loaded in.
//
// What is hashed (sha256, first 16 hex digits), in this order, for each of
//   tok_embd, blk.0.attn_q, blk.{nLayers-1}.attn_q, output_norm
// (q rows in the canonical interleaved-RoPE order; with one layer, blk.0 is hashed twice):
//   the UTF-8 line `${role} ${shape.join('x')}\n`, then the float32 little-endian bytes of the
//   elements at flat indices 0, s, 2s, ... where s = ceil(numel / 2^20) (so at most 2^20 values
//   per tensor: loading a 7B model stays fast).
// Values are the weights as loaded in float32, before any bf16 conversion. A BF16 source hashes
// its exact float32 widening, so a BF16 file hashes the same whether loaded as f32 or bf16.
// SHA-256 is @noble/hashes' (pure JS, synchronous): the same code in Node and in a page, whose
// crypto.subtle only hashes asynchronously.
import { sha256 } from '@noble/hashes/sha256';
import { matrixToF32 } from '../core/quant.js';
import { bf16ToF32Into, f16ToF32Into, type Matrix, type ModelWeights } from '../core/weights.js';

const FINGERPRINT_SAMPLES = 1 << 20;

/** Collects strided samples of one tensor, fed in chunks of float32 or bf16 values. */
export class TensorSample {
  readonly shape: number[];
  readonly stride: number;
  readonly values: Float32Array;

  constructor(shape: readonly number[]) {
    this.shape = [...shape];
    const n = shape.reduce((a, b) => a * b, 1);
    this.stride = Math.max(1, Math.ceil(n / FINGERPRINT_SAMPLES));
    this.values = new Float32Array(Math.ceil(n / this.stride));
  }

  /** Values at flat indices [offset, offset + chunk.length) as float32. */
  feedF32(chunk: Float32Array, offset = 0): void {
    const s = this.stride;
    for (let i = firstMultiple(offset, s); i < offset + chunk.length; i += s) this.values[i / s] = chunk[i - offset];
  }

  /** Values at flat indices [offset, offset + chunk.length) as bf16 bit patterns. */
  feedBf16(chunk: Uint16Array, offset = 0): void {
    this.feed16(chunk, offset, bf16ToF32Into);
  }

  /** Values at flat indices [offset, offset + chunk.length) as IEEE half bit patterns. */
  feedF16(chunk: Uint16Array, offset = 0): void {
    this.feed16(chunk, offset, f16ToF32Into);
  }

  private feed16(chunk: Uint16Array, offset: number, widen: (out: Float32Array, src: Uint16Array, n: number) => void): void {
    const s = this.stride;
    const first = firstMultiple(offset, s);
    const picked: number[] = [];
    for (let i = first; i < offset + chunk.length; i += s) picked.push(chunk[i - offset]);
    widen(this.values.subarray(first / s), Uint16Array.from(picked), picked.length);
  }
}

function firstMultiple(offset: number, s: number): number {
  return Math.ceil(offset / s) * s;
}

/** The roles a fingerprint covers, in hashing order. */
function fingerprintRoles(nLayers: number): string[] {
  return ['tok_embd', 'blk.0.attn_q', `blk.${nLayers - 1}.attn_q`, 'output_norm'];
}

/**
 * Gathers samples while a loader converts tensors one by one (so it can see the float32 values
 * before a bf16 conversion), then produces the fingerprint.
 */
export class FingerprintCollector {
  private readonly samples = new Map<string, TensorSample>();
  private readonly wanted: Set<string>;
  private readonly nLayers: number;

  constructor(nLayers: number) {
    this.nLayers = nLayers;
    this.wanted = new Set(fingerprintRoles(nLayers));
  }

  /** A sample to fill for `role`, or null when the role is not part of the fingerprint. */
  sampleFor(role: string, shape: readonly number[]): TensorSample | null {
    if (!this.wanted.has(role)) return null;
    const s = new TensorSample(shape);
    this.samples.set(role, s);
    return s;
  }

  offerF32(role: string, shape: readonly number[], data: Float32Array): void {
    this.sampleFor(role, shape)?.feedF32(data);
  }

  offerBf16(role: string, shape: readonly number[], data: Uint16Array): void {
    this.sampleFor(role, shape)?.feedBf16(data);
  }

  digest(): string {
    const h = sha256.create();
    for (const role of fingerprintRoles(this.nLayers)) {
      const s = this.samples.get(role);
      if (!s) throw new Error(`fingerprint: tensor ${role} was never offered (loader bug)`);
      h.update(new TextEncoder().encode(`${role} ${s.shape.join('x')}\n`));
      h.update(new Uint8Array(s.values.buffer, s.values.byteOffset, s.values.byteLength));
    }
    return Array.from(h.digest().subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join('');
  }
}

/**
 * Fingerprint of loaded weights (see the header comment). Equals ModelFile.fingerprint for
 * weights loaded in f32 and for bf16 loads of BF16 sources; for an F32 source loaded as bf16 it
 * hashes the rounded values and so differs (ModelFile.fingerprint is taken before rounding).
 */
export function fingerprint(weights: ModelWeights): string {
  const L = weights.layers.length;
  const fp = new FingerprintCollector(L);
  const offerMatrix = (role: string, m: Matrix): void => {
    if (m.dtype === 'bf16') fp.offerBf16(role, [m.rows, m.cols], m.data);
    else fp.offerF32(role, [m.rows, m.cols], matrixToF32(m)); // quantized: the dequantized values
  };
  offerMatrix('tok_embd', weights.tokEmbd);
  offerMatrix('blk.0.attn_q', weights.layers[0].wq);
  offerMatrix(`blk.${L - 1}.attn_q`, weights.layers[L - 1].wq);
  fp.offerF32('output_norm', [weights.outputNorm.length], weights.outputNorm);
  return fp.digest();
}
