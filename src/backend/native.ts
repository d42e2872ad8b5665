// Loader of the native N-API addon (native/*.cc, built by scripts/build-native.mjs into
// build/Release/llama_adapter_native.node). The native backend is the addon's kernel functions,
// one per entry of its kernel list; for a kernel with object parameters (shapes, Matrix,
// AdamwStep) the Backend method is generated from the signature the addon exports, passing the
// fields in the object's place (no hand-written forwarder). The kernels read and write the caller's typed arrays in place (zero-copy, subarray views
// included) and check every buffer length against the shape, throwing a RangeError rather than
// touching foreign memory.
//
// Why native code: no TypeScript or wasm tensor library gets within 5x of PyTorch on CPU
// (bench/README.md, "Kernel decisions"), so the numeric core is C++ over OpenBLAS with SIMD
// kernels of its own (Highway, dispatched at run time to the CPU's best target) and AMX.
// loadNativeBackend() never throws: when the addon is missing or fails to load it returns
// { backend: null, error } and getBackend('auto') falls back to the TypeScript backend.
// Environment: LLAMA_ADAPTER_ADDON=/path/to/addon.node overrides where the addon is looked for;
// LLAMA_ADAPTER_SIMD=avx512|avx2|sse4|scalar|neon dispatches the kernels to a lower SIMD target
// than the CPU's best (and, unless OPENBLAS_CORETYPE is set, OpenBLAS to the same level);
// LLAMA_ADAPTER_NO_AMX=1 disables the AMX path; LLAMA_ADAPTER_BATCH_INVARIANT=1 turns on the
// batch-invariant matmul (see NativeFeature).

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Backend, Kernels } from './backend.js';
import { createTsBackend } from './ts/index.js';
import { largeBuffersInstalled, setLargeBufferAllocator } from '../core/buffers.js';
import { packageRoot } from '../core/package-root.js';
import { hostMemory } from './memory.js';

/** C (M, N) = alpha · op(A) · op(B) + beta · C, fp32, BLAS semantics (row-major, leading dims). */
export type Gemm = (
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  A: Float32Array,
  lda: number,
  B: Float32Array,
  ldb: number,
  beta: number,
  C: Float32Array,
  ldc: number,
) => void;

/** A kernel's parameters as the addon's list declares them: [name, fields of an object parameter or null]. */
type Signature = [name: string, fields: string[] | null][];
type AddonKernel = (...args: unknown[]) => unknown;

/**
 * The addon's exports (native/addon.cc). backend(threads) returns one function per entry of the
 * addon's kernel list, running on `threads` threads and taking an object parameter as its fields
 * (in `signatures` order) in its place; gemm is native-only (bench's GEMM peak).
 */
interface Addon {
  backend(threads: number): Record<string, AddonKernel>;
  signatures: Record<string, Signature>;
  dtypeIds?: Readonly<Record<string, number>>; // matrix dtype name -> ggml type id (the addon reads either; an older build lacks it)
  setFeature(name: NativeFeature, enabled: boolean): boolean;
  setSimd(name: string): boolean;
  rest(): void;
  info(): NativeInfo;
  hugeBuffer?(bytes: number): ArrayBuffer | undefined; // memory for weights on 2 MB pages (an older build lacks it)
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The Backend method for an addon kernel, generated from its signature: the method's own
 * parameters, passing each object parameter's fields in its place, so the fields are read by
 * JIT-compiled property loads (with inline caches) rather than by N-API calls; a matrix's dtype
 * goes as its ggml type id. A kernel without object parameters is used as it is.
 */
function bindKernel(name: string, sig: Signature, kernel: AddonKernel, dtypeIds: Readonly<Record<string, number>>): AddonKernel {
  if (sig.every(([, fields]) => !fields)) return kernel;
  const names = [name, ...sig.flatMap(([p, fields]) => [p, ...(fields ?? [])])];
  const bad = names.find((n) => !IDENT.test(n));
  if (bad !== undefined) throw new Error(`the native addon's signature of ${name} has a bad name "${bad}"`);
  const params = sig.map(([p]) => p).join(', ');
  // a dtype goes as its id (an unknown name as it is, for the addon's error)
  const field = (p: string, f: string): string => (f === 'dtype' ? `(ids$[${p}.dtype] ?? ${p}.dtype)` : `${p}.${f}`);
  const passed = sig.flatMap(([p, fields]) => (fields ? fields.map((f) => field(p, f)) : [p])).join(', ');
  const make = new Function('kernel$', 'ids$', `return function ${name}(${params}) { return kernel$(${passed}); };`) as (
    k: AddonKernel,
    ids: Readonly<Record<string, number>>,
  ) => AddonKernel;
  return make(kernel, dtypeIds);
}

/** The SIMD target in use and the CPU features the addon found at load (and uses), its matmul mode and current thread count. */
export interface NativeInfo {
  simd: string; // the SIMD target the kernels dispatch to ('avx512', 'avx2', 'sse4', 'neon', 'scalar', ...)
  simdTargets: string[]; // every target compiled in that this CPU runs, best first
  avx512bf16: boolean; // the AVX512_BF16 GEMM engine is on (where AMX is not: see NativeFeature)
  cpuAvx512bf16: boolean; // the CPU has AVX512_BF16 (and an AVX-512 target is in force)
  amx: boolean; // AMX tiles in use (CPU, kernel permission, an AVX-512 target in force)
  batchInvariant: boolean;
  int8Dot: boolean; // quantized-weight products use the CPU's 8-bit dot products (AVX512_VNNI, ARM dotprod)
  cpuInt8Dot: boolean; // the CPU has them (and the SIMD target in force can use them)
  threads: number;
}

/**
 * Switchable kernel paths: 'amx' (bf16-weight GEMMs on AMX tiles, on by default where the CPU has
 * it); 'avx512bf16' (the same GEMMs on vdpbf16ps where AMX is missing, e.g. Zen 4: about twice the
 * fp32 GEMM rate there; off where AMX is, which is faster; LLAMA_ADAPTER_AVX512BF16=0/1 overrides;
 * without either, bf16 weights are widened to fp32 for sgemm); 'bf16Split' (AMX / AVX512_BF16 keep
 * ~16 bits of each activation, twice the work); 'batchInvariant' (off by default): every matmul
 * uses the dot-product kernel so a row's result does not depend on the other rows of its batch
 * (prefill/training get slower); 'int8Dot' (on where the CPU has them): products with quantized
 * weights use AVX512_VNNI (vpdpbusd / vpdpwssd) on an AVX-512 target, or ARMv8.2 dotprod (sdot) on
 * NEON; off, the same integer sums come from vpmaddubsw / vpmaddwd or vmull (tests; LLAMA_ADAPTER_INT8DOT=0);
 * 'decodeStealing' (on by default): a decode product whose weights cannot stay in the cores' L2
 * is shared out between the threads by work stealing rather than a fixed split (the same bits;
 * off for A/B measurements); 'attnPositionBlocks' (on by default): a decode row whose KV cache is
 * over 512 KB splits its keys into blocks of positions, each read once for all heads and merged
 * through the blocks' softmax sums, rather than head by head over all keys (off: the head-by-head
 * path and its rounding for every row; for A/B measurements and tests).
 */
export type NativeFeature = 'amx' | 'attnPositionBlocks' | 'avx512bf16' | 'batchInvariant' | 'bf16Split' | 'decodeStealing' | 'int8Dot';

const ADDON_FILE = 'llama_adapter_native.node';

/** OpenBLAS's core type for a forced x86 SIMD level (its kernels then use no newer instructions). */
const OPENBLAS_CORE: Record<string, string> = { avx2: 'Haswell', sse4: 'Nehalem', scalar: 'Core2' };

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
  const simd = process.env.LLAMA_ADAPTER_SIMD;
  // OpenBLAS reads OPENBLAS_CORETYPE when the addon (which links it) is loaded.
  if (simd && OPENBLAS_CORE[simd] && !process.env.OPENBLAS_CORETYPE) process.env.OPENBLAS_CORETYPE = OPENBLAS_CORE[simd];
  try {
    const req = createRequire(import.meta.url);
    const addon = req(file) as Addon;
    if (typeof addon.backend !== 'function' || typeof addon.info !== 'function' || typeof addon.signatures !== 'object') {
      return (addonCache = { addon: null, error: `${file} is not the llama-adapter addon` });
    }
    const info = addon.info();
    if (simd && simd !== 'best' && info.simd !== simd) {
      return (addonCache = {
        addon: null,
        error: `LLAMA_ADAPTER_SIMD=${simd} is not a SIMD target this build runs on this CPU (it runs: ${info.simdTargets.join(', ')})`,
      });
    }
    installBuffers(addon);
    return (addonCache = { addon, error: '' });
  } catch (e) {
    const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
    return (addonCache = { addon: null, error: `the native addon failed to load: ${msg}` });
  }
}

/** The native backend: the addon's kernel functions as they are, plus its features. */
export interface NativeBackend extends Backend {
  /** The SIMD target and CPU features the addon uses (AVX512_BF16, AMX) and its thread count. */
  info(): NativeInfo;
  gemm: Gemm;
}

/** Kernel names of the oracle the addon lacks (an addon built from older sources). */
function missingKernels(k: object): string[] {
  return Object.keys(createTsBackend()).filter(
    (n) => n !== 'name' && n !== 'threads' && n !== 'memory' && typeof (k as Record<string, unknown>)[n] !== 'function',
  );
}

/**
 * The native backend with `threads` threads (default: os.availableParallelism()), or null and
 * the reason it is unavailable. Never throws.
 */
export function loadNativeBackend(threads?: number): { backend: NativeBackend | null; error: string } {
  try {
    const { addon, error } = loadAddon();
    if (!addon) return { backend: null, error };
    let n = threads ?? os.availableParallelism();
    if (!Number.isFinite(n) || n < 1) n = 1;
    n = Math.min(256, Math.floor(n));
    const fns = addon.backend(n);
    const kernels: Record<string, AddonKernel> = {};
    for (const [k, f] of Object.entries(fns)) kernels[k] = bindKernel(k, addon.signatures[k] ?? [], f, addon.dtypeIds ?? {});
    const missing = missingKernels(kernels);
    if (missing.length) return { backend: null, error: `the native addon lacks kernels ${missing.join(', ')} (rebuild it: node scripts/build-native.mjs)` };
    // the functions have the Backend methods' signatures (checked per kernel by the conformance suite)
    const typed = kernels as unknown as Kernels & { gemm: Gemm };
    return { backend: { name: 'native', threads: n, memory: hostMemory, info: () => addon.info(), rest: () => addon.rest(), ...typed }, error: '' };
  } catch (e) {
    return { backend: null, error: `the native backend failed to start: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/**
 * Load the addon, if it is built, so that weights read from now on live in its huge-page buffers
 * (a model file is read before its backend is chosen). Never throws; whether it took.
 */
export function useNativeBuffers(): boolean {
  const { addon } = loadAddon();
  return addon !== null && installBuffers(addon) && largeBuffersInstalled();
}

/** From now on a model's weights live in the addon's huge-page buffers (core/buffers.ts); false for an older build without them. */
function installBuffers(addon: Addon): boolean {
  if (typeof addon.hugeBuffer !== 'function') return false;
  setLargeBufferAllocator(addon.hugeBuffer.bind(addon));
  return true;
}

/** CPU features of the loaded addon, or null when it is unavailable (for diagnostics / bench). */
export function nativeInfo(): NativeInfo | null {
  const { addon } = loadAddon();
  return addon ? addon.info() : null;
}

/**
 * Dispatch the SIMD kernels to `name` (one of info().simdTargets; '' or 'best' = the CPU's best),
 * process-wide, e.g. to test or benchmark a lower level. Returns false (nothing changed) when the
 * target is not runnable here or the addon is unavailable. OpenBLAS keeps the level it was loaded
 * with (LLAMA_ADAPTER_SIMD sets both at start-up).
 */
export function setNativeSimd(name: string): boolean {
  const { addon } = loadAddon();
  return addon ? addon.setSimd(name) : false;
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
