// Synthetic checkpoints: deterministic random LLaMA weights (N(0, 0.02) matrices, unit norms) of
// any shape, for benchmarks and for tests of shapes no real asset has. bf16 weights are generated
// straight into bf16, chunk by chunk, so a 7B-shaped model never exists in f32.
import { llamaConfig } from '../core/config.js';
import { check } from '../core/errors.js';
import type { LayerWeights, Matrix, ModelWeights, WeightDtype } from '../core/weights.js';
import type { Checkpoint } from './checkpoint.js';
import { FingerprintCollector } from './fingerprint.js';

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
const CHUNK = 1 << 16;

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
 * bf16 they are the f32 values rounded to nearest even). Norms are 1.
 */
export function syntheticCheckpoint(shape: SyntheticShape, seed: number, dtype: WeightDtype = 'f32'): Checkpoint {
  check(Number.isFinite(seed), `synthetic model: seed must be a number, got ${seed}`);
  check(dtype === 'f32' || dtype === 'bf16', `synthetic model: dtype must be "f32" or "bf16", got ${String(dtype)}`);
  const config = llamaConfig(
    {
      ...shape,
      maxSeqLen: shape.maxSeqLen ?? 2048,
      eosId: shape.vocabSize > 2 ? 2 : 0,
    },
    { where: 'synthetic model' },
  );
  const { dim, hiddenDim, nLayers, vocabSize, headDim, nKvHeads, tiedEmbeddings: tied } = config;

  const fp = new FingerprintCollector(nLayers);
  const scratch = new Float32Array(CHUNK);
  const scratchBits = new Uint32Array(scratch.buffer);

  const mat = (role: string, rows: number, cols: number): Matrix => {
    const n = rows * cols;
    const rng = rngState(tensorSeed(seed, role));
    const sample = fp.sampleFor(role, [rows, cols]);
    const f32 = dtype === 'f32' ? new Float32Array(n) : null;
    const bf16 = dtype === 'bf16' ? new Uint16Array(n) : null;
    for (let off = 0; off < n; off += CHUNK) {
      const len = Math.min(CHUNK, n - off);
      const chunk = f32 ? f32.subarray(off, off + len) : scratch.subarray(0, len);
      fillNormal(rng, chunk, STD); // CHUNK is even, so only a tensor's last chunk can be odd
      sample?.feedF32(chunk, off);
      if (bf16) {
        for (let i = 0; i < len; i++) {
          const x = scratchBits[i]; // finite by construction: plain round to nearest even
          bf16[off + i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
        }
      }
    }
    return f32 ? { dtype: 'f32', rows, cols, data: f32 } : { dtype: 'bf16', rows, cols, data: bf16 as Uint16Array };
  };
  const ones = (role: string): Float32Array => {
    const v = new Float32Array(dim).fill(1);
    fp.offerF32(role, [dim], v);
    return v;
  };

  const kv = nKvHeads * headDim;
  const tokEmbd = mat('tok_embd', vocabSize, dim);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < nLayers; i++) {
    const p = `blk.${i}.`;
    layers.push({
      attnNorm: ones(`${p}attn_norm`),
      wq: mat(`${p}attn_q`, dim, dim),
      wk: mat(`${p}attn_k`, kv, dim),
      wv: mat(`${p}attn_v`, kv, dim),
      wo: mat(`${p}attn_output`, dim, dim),
      ffnNorm: ones(`${p}ffn_norm`),
      w1: mat(`${p}ffn_gate`, hiddenDim, dim),
      w3: mat(`${p}ffn_up`, hiddenDim, dim),
      w2: mat(`${p}ffn_down`, dim, hiddenDim),
    });
  }
  const outputNorm = ones('output_norm');
  const output = tied ? tokEmbd : mat('output', vocabSize, dim);
  const weights: ModelWeights = { tokEmbd, layers, outputNorm, output };
  return {
    path: `synthetic:seed=${seed}`,
    format: 'synthetic',
    config,
    weights,
    sourceDtypes: [dtype === 'f32' ? 'F32' : 'BF16'],
    tokenizerPath: null,
    fingerprint: fp.digest(),
  };
}
