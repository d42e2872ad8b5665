// Loader and Backend adapter for the native N-API addon (native/*.cc, built by
// scripts/build-native.mjs into build/Release/llama_adapter_native.node). The kernels read and
// write the caller's typed arrays in place (zero-copy, subarray views included) and check every
// buffer length against the shape, throwing a RangeError rather than touching foreign memory.
//
// Why native code: no TypeScript or wasm tensor library gets within 5x of PyTorch on CPU (BRIEF
// section 3), so the numeric core is C++ over OpenBLAS with AVX-512 / AMX kernels of its own.
// loadNativeBackend() never throws: when the addon is missing or fails to load it returns
// { backend: null, error } and getBackend('auto') falls back to the TypeScript backend.
// Environment: LLAMA_ADAPTER_ADDON=/path/to/addon.node overrides where the addon is looked for;
// LLAMA_ADAPTER_NO_AMX=1 disables the AMX path; LLAMA_ADAPTER_BATCH_INVARIANT=1 turns on the
// batch-invariant matmul (see NativeFeature).

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AdamwStep, AttnShape, Backend, PromptShape } from './backend.js';
import type { Matrix } from '../core/weights.js';
import { packageRoot } from '../core/package-root.js';

/** The addon's exports (native/addon.cc); shapes are passed as plain numbers. */
interface Addon {
  matmul(out: Float32Array, x: Float32Array, w: Float32Array | Uint16Array, N: number, K: number, M: number, acc: boolean): void;
  matmulBack(out: Float32Array, dy: Float32Array, w: Float32Array | Uint16Array, N: number, K: number, M: number, acc: boolean): void;
  gemm(tA: boolean, tB: boolean, M: number, N: number, K: number, alpha: number, A: Float32Array, lda: number, B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number): void;
  rmsnorm(out: Float32Array, x: Float32Array, w: Float32Array, rows: number, dim: number, eps: number, rstd: Float32Array | undefined): void;
  rmsnormBack(dx: Float32Array, dy: Float32Array, x: Float32Array, w: Float32Array, rstd: Float32Array, rows: number, dim: number, acc: boolean): void;
  rope(x: Float32Array, B: number, T: number, nHeads: number, headDim: number, pos: Int32Array, cos: Float32Array, sin: Float32Array, inverse: boolean): void;
  siluGate(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void;
  siluGateBack(da: Float32Array, db: Float32Array, dy: Float32Array, a: Float32Array, b: Float32Array, n: number): void;
  add(x: Float32Array, y: Float32Array, n: number): void;
  toBf16(out: Uint16Array, x: Float32Array, n: number): void;
  fromBf16(out: Float32Array, x: Uint16Array, n: number): void;
  embed(out: Float32Array, table: Float32Array | Uint16Array, dim: number, ids: Int32Array, n: number): void;
  attention(out: Float32Array, q: Float32Array, kc: Float32Array, vc: Float32Array, pos: Int32Array, B: number, T: number, S: number, H: number, Hkv: number, hs: number, probs: Float32Array | undefined): void;
  attentionBack(dq: Float32Array, dk: Float32Array, dv: Float32Array, dout: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, B: number, T: number, S: number, H: number, Hkv: number, hs: number): void;
  promptAttention(out: Float32Array, q: Float32Array, pk: Float32Array, pv: Float32Array, gate: Float32Array, B: number, T: number, K: number, H: number, Hkv: number, hs: number, probs: Float32Array | undefined): void;
  promptAttentionBack(dq: Float32Array | null, dpk: Float32Array, dpv: Float32Array, dgate: Float32Array, dout: Float32Array, q: Float32Array, pk: Float32Array, pv: Float32Array, gate: Float32Array, probs: Float32Array, B: number, T: number, K: number, H: number, Hkv: number, hs: number): void;
  crossEntropy(logits: Float32Array, targets: Int32Array, rows: number, V: number, dlogits: Float32Array | null, scale: number): number;
  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number, lr: number, b1: number, b2: number, eps: number, wd: number, step: number): void;
  setThreads(n: number): void;
  setFeature(name: NativeFeature, enabled: boolean): boolean;
  info(): NativeInfo;
}

/** CPU features the addon found at load (and uses), its matmul mode and current thread count. */
export interface NativeInfo {
  avx512: boolean;
  avx512bf16: boolean; // the AVX512_BF16 GEMM engine is on (opt-in: see NativeFeature)
  cpuAvx512bf16: boolean; // the CPU has AVX512_BF16
  amx: boolean;
  batchInvariant: boolean;
  threads: number;
}

/**
 * Switchable kernel paths: 'amx' (bf16-weight GEMMs on AMX tiles, on by default where the CPU has
 * it); 'avx512bf16' (the same GEMMs on vdpbf16ps where AMX is off or missing; off by default,
 * LLAMA_ADAPTER_AVX512BF16=1 turns it on: on the Intel dev VM it ran 234 GFLOP/s against 328 for
 * widening bf16 weights to fp32 panels for sgemm, the default without AMX; written for Zen 4,
 * not measured there);
 * 'bf16Split' (AMX / AVX512_BF16 keep ~16 bits of each activation, twice the work); 'batchInvariant' (off by default): every matmul uses the dot-product kernel so a row's
 * result does not depend on the other rows of its batch (prefill/training get slower).
 */
export type NativeFeature = 'amx' | 'avx512bf16' | 'batchInvariant' | 'bf16Split';

const ADDON_FILE = 'llama_adapter_native.node';

let addonCache: { addon: Addon | null; error: string } | null = null;

function loadAddon(): { addon: Addon | null; error: string } {
  if (addonCache) return addonCache;
  const override = process.env.LLAMA_ADAPTER_ADDON;
  let file: string;
  if (override) file = path.resolve(override);
  else {
    const root = packageRoot();
    if (!root) return (addonCache = { addon: null, error: 'cannot find the llama-adapter package root' });
    file = path.join(root, 'build', 'Release', ADDON_FILE);
  }
  if (!existsSync(file)) {
    return (addonCache = { addon: null, error: `the native addon is not built (${file} missing; run: node scripts/build-native.mjs)` });
  }
  try {
    const req = createRequire(import.meta.url);
    const addon = req(file) as Addon;
    if (typeof addon.matmul !== 'function' || typeof addon.info !== 'function') {
      return (addonCache = { addon: null, error: `${file} is not the llama-adapter addon` });
    }
    return (addonCache = { addon, error: '' });
  } catch (e) {
    const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
    return (addonCache = { addon: null, error: `the native addon failed to load: ${msg}` });
  }
}

let poolThreads = 0; // the addon's current thread count (it has one pool for the process)

class NativeBackend implements Backend {
  readonly name = 'native' as const;
  readonly threads: number;
  private a: Addon;

  constructor(addon: Addon, threads: number) {
    this.a = addon;
    this.threads = threads;
    this.sync();
  }

  /** Backends with different thread counts share the addon's pool: set ours before each kernel. */
  private sync(): Addon {
    if (poolThreads !== this.threads) {
      this.a.setThreads(this.threads);
      poolThreads = this.threads;
    }
    return this.a;
  }

  /** CPU features the addon uses (AVX-512, AVX512_BF16, AMX) and its thread count. */
  info(): NativeInfo {
    return this.a.info();
  }

  matmul(out: Float32Array, x: Float32Array, w: Matrix, M: number, accumulate = false): void {
    this.sync().matmul(out, x, w.data, w.rows, w.cols, M, accumulate);
  }
  matmulBack(out: Float32Array, dy: Float32Array, w: Matrix, M: number, accumulate = false): void {
    this.sync().matmulBack(out, dy, w.data, w.rows, w.cols, M, accumulate);
  }
  gemm(tA: boolean, tB: boolean, M: number, N: number, K: number, alpha: number, A: Float32Array, lda: number, B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number): void {
    this.sync().gemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  rmsnorm(out: Float32Array, x: Float32Array, w: Float32Array, rows: number, dim: number, eps: number, rstd?: Float32Array): void {
    this.sync().rmsnorm(out, x, w, rows, dim, eps, rstd);
  }
  rmsnormBack(dx: Float32Array, dy: Float32Array, x: Float32Array, w: Float32Array, rstd: Float32Array, rows: number, dim: number, accumulate: boolean): void {
    this.sync().rmsnormBack(dx, dy, x, w, rstd, rows, dim, accumulate);
  }
  rope(x: Float32Array, B: number, T: number, nHeads: number, headDim: number, pos: Int32Array, cos: Float32Array, sin: Float32Array, inverse: boolean): void {
    this.sync().rope(x, B, T, nHeads, headDim, pos, cos, sin, inverse);
  }
  siluGate(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
    this.sync().siluGate(out, a, b, n);
  }
  siluGateBack(da: Float32Array, db: Float32Array, dy: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
    this.sync().siluGateBack(da, db, dy, a, b, n);
  }
  add(x: Float32Array, y: Float32Array, n: number): void {
    this.sync().add(x, y, n);
  }

  toBf16(out: Uint16Array, x: Float32Array, n: number): void {
    this.sync().toBf16(out, x, n);
  }

  fromBf16(out: Float32Array, x: Uint16Array, n: number): void {
    this.sync().fromBf16(out, x, n);
  }
  embed(out: Float32Array, table: Matrix, ids: Int32Array, n: number): void {
    this.sync().embed(out, table.data, table.cols, ids, n);
  }
  attention(out: Float32Array, q: Float32Array, kc: Float32Array, vc: Float32Array, pos: Int32Array, s: AttnShape, probs?: Float32Array): void {
    this.sync().attention(out, q, kc, vc, pos, s.B, s.T, s.S, s.nHeads, s.nKvHeads, s.headDim, probs);
  }
  attentionBack(dq: Float32Array, dk: Float32Array, dv: Float32Array, dout: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, s: AttnShape): void {
    this.sync().attentionBack(dq, dk, dv, dout, q, k, v, s.B, s.T, s.T, s.nHeads, s.nKvHeads, s.headDim);
  }
  promptAttention(out: Float32Array, q: Float32Array, pk: Float32Array, pv: Float32Array, gate: Float32Array, s: PromptShape, probs?: Float32Array): void {
    this.sync().promptAttention(out, q, pk, pv, gate, s.B, s.T, s.K, s.nHeads, s.nKvHeads, s.headDim, probs);
  }
  promptAttentionBack(dq: Float32Array | null, dpk: Float32Array, dpv: Float32Array, dgate: Float32Array, dout: Float32Array, q: Float32Array, pk: Float32Array, pv: Float32Array, gate: Float32Array, probs: Float32Array, s: PromptShape): void {
    this.sync().promptAttentionBack(dq, dpk, dpv, dgate, dout, q, pk, pv, gate, probs, s.B, s.T, s.K, s.nHeads, s.nKvHeads, s.headDim);
  }
  crossEntropy(logits: Float32Array, targets: Int32Array, rows: number, V: number, dlogits: Float32Array | null, scale: number): number {
    return this.sync().crossEntropy(logits, targets, rows, V, dlogits, scale);
  }
  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number, o: AdamwStep): void {
    this.sync().adamw(p, g, m, v, n, o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, o.step);
  }
}

/**
 * The native backend with `threads` threads (default: os.availableParallelism()), or null and
 * the reason it is unavailable. Never throws.
 */
export function loadNativeBackend(threads?: number): { backend: Backend | null; error: string } {
  try {
    const { addon, error } = loadAddon();
    if (!addon) return { backend: null, error };
    let n = threads ?? os.availableParallelism();
    if (!Number.isFinite(n) || n < 1) n = 1;
    n = Math.min(256, Math.floor(n));
    return { backend: new NativeBackend(addon, n), error: '' };
  } catch (e) {
    return { backend: null, error: `the native backend failed to start: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/** CPU features of the loaded addon, or null when it is unavailable (for diagnostics / bench). */
export function nativeInfo(): NativeInfo | null {
  const { addon } = loadAddon();
  return addon ? addon.info() : null;
}

/**
 * Switch a kernel path (see NativeFeature) for the whole process, e.g. 'amx' off to exercise the
 * portable bf16 path on an AMX machine. Returns whether it is now in effect (false when the addon
 * is unavailable or the CPU lacks it).
 */
export function setNativeFeature(name: NativeFeature, enabled: boolean): boolean {
  const { addon } = loadAddon();
  return addon ? addon.setFeature(name, enabled) : false;
}
