// Synthetic models: deterministic random LLaMA weights (N(0, 0.02) matrices, unit norms) of
// any shape, for benchmarks and for tests of shapes no real asset has. bf16 and f16 weights are
// generated straight into 16 bits, chunk by chunk, so a 7B-shaped model never exists in f32.
// Quantized matrices are drawn block by block from a pool of 4096 blocks quantized from N(0,
// 0.02) values: the ggml reference quantizers run in TypeScript (a K-quant is ~1 us per value
// there: hours for a 7B shape), and a kernel's speed does not depend on which blocks it reads.
import { llamaConfig } from '../core/config.js';
import { check } from '../core/errors.js';
import { isQuantDtype, quantizeMatrix, QUANT_TYPES } from '../core/quant.js';
import type { QuantDtype, WeightDtype } from '../core/weights.js';
import { assembleWeights, type TensorValues } from './assemble.js';
import { resolveDtype, type ModelFile } from './model-file.js';

export interface SyntheticShape {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  maxSeqLen?: number; // default 2048
  tiedEmbeddings?: boolean; // default false (separate output head)
}

const STD = 0.02;

/** State of Marsaglia's xorshift128, seeded through splitmix32 (never all zero). */
function rngState(seed: number): Uint32Array {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x9e3779b9) | 0;
    let t = s ^ (s >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = Math.imul(t, 0x735a2d97);
    return (t ^ (t >>> 15)) >>> 0;
  };
  return Uint32Array.of(next(), next(), next(), next() | 1);
}

/**
 * Fill `out` with N(0, std) values: xorshift128 uniforms, Box-Muller pairs (cos then sin; an odd
 * final element drops its sin partner). Inlined: this is the hot loop of 7B-sized synthesis.
 */
function fillNormal(state: Uint32Array, out: Float32Array, std: number): void {
  let x = state[0];
  let y = state[1];
  let z = state[2];
  let w = state[3];
  const n = out.length;
  for (let i = 0; i < n; i += 2) {
    let t = x ^ (x << 11);
    x = y;
    y = z;
    z = w;
    w = (w ^ (w >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    const u1 = (w + 1) * 2.3283064365386963e-10; // (0, 1]
    t = x ^ (x << 11);
    x = y;
    y = z;
    z = w;
    w = (w ^ (w >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    const angle = w * 1.4629180792671596e-9; // 2 pi * [0, 1)
    const r = std * Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(angle);
    if (i + 1 < n) out[i + 1] = r * Math.sin(angle);
  }
  state[0] = x;
  state[1] = y;
  state[2] = z;
  state[3] = w;
}

const POOL_BLOCKS = 4096;
const pools = new Map<string, Uint8Array>();

/** n values (whole blocks) of `dtype`, each block drawn (xorshift128, `state`) from the pool of `seed`. */
function pooledBlocks(dtype: QuantDtype, n: number, state: Uint32Array, seed: number): Uint8Array {
  const t = QUANT_TYPES[dtype];
  const key = `${dtype}:${seed}`;
  let pool = pools.get(key);
  if (!pool) {
    const v = new Float32Array(POOL_BLOCKS * t.block);
    fillNormal(rngState(tensorSeed(seed, `pool.${dtype}`)), v, STD);
    pool = quantizeMatrix(dtype, 1, v.length, v).data as Uint8Array;
    pools.set(key, pool);
  }
  const out = new Uint8Array((n / t.block) * t.bytes);
  let [x, y, z, w] = state;
  for (let o = 0; o < out.length; o += t.bytes) {
    const s = x ^ (x << 11);
    x = y;
    y = z;
    z = w;
    w = (w ^ (w >>> 19) ^ (s ^ (s >>> 8))) >>> 0;
    const b = (w % POOL_BLOCKS) * t.bytes;
    out.set(pool.subarray(b, b + t.bytes), o);
  }
  return out;
}

/** A per-tensor seed, so a tensor's values depend only on (seed, its name), not on the others. */
function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  h = Math.imul(h, 0x01000193);
  h ^= Math.floor(seed / 4294967296);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * Random weights for `shape` from `seed` (same seed and shape -> same weights, bit for bit; in
 * bf16 and f16 they are the f32 values rounded to nearest even; quantized matrices are blocks
 * drawn from a quantized pool, see the header). Norms are 1.
 */
export function syntheticModelFile(shape: SyntheticShape, seed: number, dtype: WeightDtype = 'f32'): ModelFile {
  check(Number.isFinite(seed), `synthetic model: seed must be a number, got ${seed}`);
  resolveDtype(dtype); // f32, bf16, f16 or a quantized type (blocks drawn from a quantized pool)
  const config = llamaConfig(
    {
      ...shape,
      maxSeqLen: shape.maxSeqLen ?? 2048,
      eosId: shape.vocabSize > 2 ? 2 : 0,
    },
    { where: 'synthetic model' },
  );
  const { weights, fingerprint } = assembleWeights(config, dtype, (req) => ({
    file: `synthetic:seed=${seed}`,
    name: req.name,
    shape: req.shape,
    read: (): TensorValues => {
      if (req.spec.kind === 'norm') return { dtype: 'f32', data: new Float32Array(req.shape[0]).fill(1) };
      const rng = rngState(tensorSeed(seed, req.name));
      if (isQuantDtype(dtype)) return { dtype, data: pooledBlocks(dtype, req.shape[0] * req.shape[1], rng, seed) };
      return { dtype: 'f32-chunks', fill: (chunk) => fillNormal(rng, chunk, STD) }; // CHUNK is even: only the last chunk can be odd
    },
  }));
  return {
    path: `synthetic:seed=${seed}`,
    format: 'synthetic',
    config,
    weights,
    sourceDtypes: [dtype.toUpperCase()],
    tokenizerPath: null,
    fingerprint,
  };
}
