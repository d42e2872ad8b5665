// The llama2.c peer for decode: compiles runc/runc_peer.c (run.c's forward and greedy loop) with
// run.c's flags (-march=native), or for a given SIMD level (-mavx2 -mfma -mno-avx512f, ...) to
// compare with our kernels forced to that level, writes the benchmarked model as a legacy
// llama2.c fp32 file when it is not one already, and runs it with the same thread count
// (OMP_NUM_THREADS). fp32 only, as run.c.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { LlamaConfig } from '../src/core/config.js';
import { matrixToF32 } from '../src/core/quant.js';
import type { ModelWeights } from '../src/core/weights.js';
import { repoRoot } from './configs.js';

/** gcc flags of the peer per SIMD level: run.c's own (native), or one level forced (x86-64). */
export const RUNC_CFLAGS: Readonly<Record<string, readonly string[]>> = {
  native: ['-Ofast', '-march=native', '-fopenmp'],
  avx2: ['-Ofast', '-mavx2', '-mfma', '-mno-avx512f', '-fopenmp'],
  sse4: ['-Ofast', '-msse4.2', '-fopenmp'],
  scalar: ['-Ofast', '-fopenmp'],
};

export interface RuncRun {
  tokensPerS: number;
  steps: number;
  command: string;
}

/** Build the peer binary for a level of RUNC_CFLAGS (once per source change) under build/; returns its path, or why it cannot. */
export function buildRuncPeer(level: string): { ok: true; bin: string } | { ok: false; reason: string } {
  const flags = RUNC_CFLAGS[level];
  if (!flags) return { ok: false, reason: `no run.c build for SIMD level ${level} (${Object.keys(RUNC_CFLAGS).join(', ')})` };
  const src = path.join(repoRoot(), 'bench', 'runc', 'runc_peer.c');
  const bin = path.join(repoRoot(), 'build', `runc_peer_${level}`);
  if (fs.existsSync(bin) && fs.statSync(bin).mtimeMs >= fs.statSync(src).mtimeMs) return { ok: true, bin };
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  const r = spawnSync('gcc', [...flags, '-o', bin, src, '-lm'], { encoding: 'utf8' });
  if (r.error) return { ok: false, reason: `gcc: ${r.error.message}` };
  if (r.status !== 0) return { ok: false, reason: `gcc failed: ${(r.stderr || '').trim().split('\n').slice(-3).join(' ')}` };
  return { ok: true, bin };
}

/** Whether `file` is a legacy (version 0) llama2.c checkpoint, the only format run.c reads. */
export function isLegacyLlama2c(file: string): boolean {
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) return false;
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(4);
    fs.readSync(fd, b, 0, 4, 0);
    return b.readUInt32LE(0) !== 0x616b3432; // versioned files start with the magic "ak42"
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Write weights as a legacy llama2.c fp32 file (header of 7 int32, negative vocab for a separate
 * classifier; token embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, two unused
 * RoPE tables, wcls). bf16 weights are widened.
 */
export function writeLegacyLlama2c(file: string, c: LlamaConfig, W: ModelWeights): void {
  const fd = fs.openSync(file, 'w');
  try {
    const head = Buffer.alloc(28);
    [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.tiedEmbeddings ? c.vocabSize : -c.vocabSize, c.maxSeqLen].forEach((v, i) =>
      head.writeInt32LE(v, 4 * i),
    );
    fs.writeSync(fd, head);
    const put = (a: Float32Array): void => {
      fs.writeSync(fd, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    };
    put(matrixToF32(W.tokEmbd));
    for (const L of W.layers) put(L.attnNorm);
    for (const key of ['wq', 'wk', 'wv', 'wo'] as const) for (const L of W.layers) put(matrixToF32(L[key]));
    for (const L of W.layers) put(L.ffnNorm);
    for (const key of ['w1', 'w2', 'w3'] as const) for (const L of W.layers) put(matrixToF32(L[key]));
    put(W.outputNorm);
    put(new Float32Array(c.maxSeqLen * c.headDim)); // freq_cis_real + freq_cis_imag (unused by run.c)
    if (!c.tiedEmbeddings) put(matrixToF32(W.output));
  } finally {
    fs.closeSync(fd);
  }
}

/** Decode `steps` greedy tokens from BOS with the peer on `modelFile` using `threads` OpenMP threads. */
export function runRuncPeer(bin: string, modelFile: string, steps: number, threads: number): RuncRun {
  const command = `OMP_NUM_THREADS=${threads} ${bin} ${modelFile} ${steps}`;
  const r = spawnSync(bin, [modelFile, String(steps)], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) } });
  if (r.error) throw new Error(`${bin}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${bin} exited with ${r.status}: ${(r.stderr || '').trim()}`);
  const line = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { tokens_per_s?: number; steps?: number };
  if (typeof line.tokens_per_s !== 'number') throw new Error(`${bin}: no tokens_per_s in its output`);
  return { tokensPerS: line.tokens_per_s, steps: line.steps ?? steps, command };
}

/** A temporary directory for a written model file, removed by the returned cleanup. */
export function tempModelFile(): { file: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-runc-'));
  return { file: path.join(dir, 'model.bin'), cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
