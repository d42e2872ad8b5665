// The kernel interface. All tensor math of the model, the adapter and training goes through
// these few functions; model code never loops over numbers itself. The TypeScript backend
// (backend/ts/) is the oracle; every other backend in the registry (backend/index.ts; today the
// native one, backend/native.ts) implements the same interface, and one conformance suite
// (test/backend-conformance.test.ts) runs each of them against the oracle. A kernel is a method
// here, its oracle in backend/ts/, its C++ in native/ and one line of native/addon.cc's kernel
// list; the native backend takes the same arguments (shape objects included) as these methods.
//
// Shape glossary (TS and C++ alike): B batch rows, T query positions per row, S cache positions
// per row, K prompt length, H query heads, Hkv key/value heads (GQA), hs head size.
//
// Memory model: buffers are plain typed arrays owned by the caller (activation workspaces,
// KV caches and adapter state preallocate them once; kernels never allocate). Shapes are passed
// explicitly; every buffer is row-major and contiguous. Outputs are overwritten unless the
// argument says `accumulate`. On a host backend (ts, native) the arrays are the storage and a
// kernel has finished when it returns. On a device backend (webgpu) an array names a device
// buffer of the same size and a kernel is only queued: `memory` (backend/memory.ts) says which,
// moves data between the two sides at the model's few sync points, and does the copies and
// fills that model code would otherwise do on the host.

import type { Matrix } from '../core/weights.js';
import type { Memory } from './memory.js';

/** Shape of a multi-head attention call. */
export interface AttnShape {
  B: number; // batch rows
  T: number; // query positions per row
  S: number; // cache positions per row (>= pos[b] + T)
  H: number; // query heads
  Hkv: number; // key/value heads (GQA), divides H
  hs: number; // head size
}

/** Shape of the adaption-prompt branch. */
export interface PromptShape {
  B: number; // batch rows (all sharing one adapter)
  T: number; // query positions per row
  K: number; // prompt length (>= 1; prefixAttention also takes 0: no prompts)
  H: number; // query heads
  Hkv: number; // key/value heads
  hs: number; // head size
}

/** matmul2 / matmul3 argument check: every weight has the first one's width (as native/addon.cc checks it). */
export function checkSameWidth(backend: string, kernel: string, ws: readonly Matrix[]): void {
  for (let i = 1; i < ws.length; i++) {
    if (ws[i].cols !== ws[0].cols) throw new RangeError(`${backend} ${kernel}: weight ${i} has ${ws[i].cols} columns, weight 0 has ${ws[0].cols}`);
  }
}

/** Which activation Backend.gelu computes (the values are the addon's integer codes). */
export const GELU = { erf: 0, tanh: 1, quick: 2 } as const;
export type GeluKind = (typeof GELU)[keyof typeof GELU];

/** Names of the registered backends (backend/index.ts registers one entry for each: a missing one is a compile error). */
export type BackendId = 'native' | 'ts' | 'webgpu';

/** Kernel groups a backend may lack (it then throws a LlamaAdapterError naming itself when asked). */
export type KernelGroup = 'quantized' | 'f16' | 'encoder';

export interface Backend {
  /** The backend's registry name (backend/index.ts). */
  readonly name: BackendId;
  /** Threads used by the multi-threaded kernels (1 for the TS backend). */
  readonly threads: number;
  /** Where the buffers live and how data moves (hostMemory for the ts and native backends). */
  readonly memory: Memory;
  /** Kernel groups this backend does not have (absent: all of them). */
  readonly missing?: readonly KernelGroup[];
  /**
   * No kernels will come for a while (a server writes to its sockets between engine steps): a
   * backend with worker threads lets them sleep now instead of spinning on cores the caller's
   * other work needs. Optional; the next kernel call wakes them.
   */
  rest?(): void;

  // ---------------------------------------------------------------- linear algebra
  /**
   * out (M, N) = x (M, K) · W^T, W (N, K) frozen weight (f32, bf16, f16 or quantized). With bf16
   * weights the products are bf16 x bf16: x is rounded to bf16 (ties to even, `roundBf16`) first,
   * and sums are fp32 (the hardware's bf16 dot products; the native 'bf16Split' feature keeps x
   * fp32). The same holds for dy in matmulBack. f16 weights are widened exactly and multiply fp32
   * x (the f32 product with those values; llama.cpp rounds x to f16 instead). With a quantized W (core/quant.ts) each row of x is
   * quantized per block to 8 bits and every block contributes its integer dot product times the
   * two scales, as llama.cpp computes it; matmulBack then uses W dequantized exactly and fp32 dy.
   */
  matmul(out: Float32Array, x: Float32Array, w: Matrix, M: number, accumulate?: boolean): void;
  /**
   * outA (M, NA) = x (M, K) · WA^T and outB (M, NB) = x · WB^T (WA, WB of width K): the same
   * numbers as two matmul calls, in one call (native: decode rows of both products are one job
   * for the thread pool). The SwiGLU gate and up projections.
   */
  matmul2(outA: Float32Array, outB: Float32Array, x: Float32Array, wA: Matrix, wB: Matrix, M: number): void;
  /** matmul2 for three weights of width K: the q, k, v projections. */
  matmul3(outA: Float32Array, outB: Float32Array, outC: Float32Array, x: Float32Array, wA: Matrix, wB: Matrix, wC: Matrix, M: number): void;
  /** out (M, K) = dy (M, N) · W, W (N, K): the input gradient of a frozen linear layer. */
  matmulBack(out: Float32Array, dy: Float32Array, w: Matrix, M: number, accumulate?: boolean): void;

  // ---------------------------------------------------------------- elementwise / rows
  /** out (rows, dim) = x / rms(x) * w; rstd (rows) receives 1/rms when given (for backward). */
  rmsnorm(out: Float32Array, x: Float32Array, w: Float32Array, rows: number, dim: number, eps: number, rstd?: Float32Array): void;
  /** dx (rows, dim) (+)= d rmsnorm / dx · dy; weight gradient not computed (frozen). */
  rmsnormBack(dx: Float32Array, dy: Float32Array, x: Float32Array, w: Float32Array, rstd: Float32Array, rows: number, dim: number, accumulate: boolean): void;
  /**
   * In-place interleaved RoPE of x (B, T, H, hs) at positions pos[b] + t, with tables cos/sin
   * (maxPos, hs/2). inverse = rotate by -angle (the backward pass).
   */
  rope(x: Float32Array, B: number, T: number, H: number, hs: number, pos: Int32Array, cos: Float32Array, sin: Float32Array, inverse: boolean): void;
  /** out (n) = silu(a) * b. */
  siluGate(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void;
  /** da (n) = dy * b * silu'(a), db (n) = dy * silu(a). */
  siluGateBack(da: Float32Array, db: Float32Array, dy: Float32Array, a: Float32Array, b: Float32Array, n: number): void;
  /** x (n) += y. */
  add(x: Float32Array, y: Float32Array, n: number): void;
  /**
   * The first index of the largest of x[0..n), n >= 1 (greedy sampling of a row of logits); a
   * NaN never beats a number, and x[0] NaN gives 0 (a scan from x[0] with `>`). Runs on the host
   * array: on a device backend, after memory.sync.
   */
  argmax(x: Float32Array, n: number): number;
  /** out (n) = x rounded to bf16 (ties to even, as `toBf16`): storage for saved activations. */
  toBf16(out: Uint16Array, x: Float32Array, n: number): void;
  /** out (n) = x widened exactly to fp32. */
  fromBf16(out: Float32Array, x: Uint16Array, n: number): void;
  /** out (n, dim) = rows `ids[i]` of the table (vocab, dim). */
  embed(out: Float32Array, table: Matrix, ids: Int32Array, n: number): void;

  // ---------------------------------------------------------------- encoders (ViT / CLIP / RoBERTa) and prompt baselines
  /**
   * out (rows, dim) = (x - mean) / sqrt(var + eps) * w + b per row, var the biased variance (both
   * in double, two passes); mean and rstd (rows) receive the row statistics when given.
   */
  layerNorm(
    out: Float32Array,
    x: Float32Array,
    w: Float32Array,
    b: Float32Array,
    rows: number,
    dim: number,
    eps: number,
    mean?: Float32Array,
    rstd?: Float32Array,
  ): void;
  /**
   * out (n) = act(x), elementwise (out may alias x); `kind` is a GeluKind: GELU.erf =
   * x * Phi(x) (PyTorch's exact GELU, erf from a rational approximation good to ~1e-7), GELU.tanh =
   * the tanh approximation (HF "gelu_new"), GELU.quick = x * sigmoid(1.702 x) (CLIP's quick_gelu).
   */
  gelu(out: Float32Array, x: Float32Array, n: number, kind: GeluKind): void;
  /**
   * dx (rows, dim) (+)= d layerNorm / dx · dy, from the forward's row statistics mean / rstd (rows):
   * rstd (g - mean(g) - xhat mean(g xhat)) with g = dy w, xhat = (x - mean) rstd. The weight and
   * bias gradients are not computed (frozen).
   */
  layerNormBack(
    dx: Float32Array,
    dy: Float32Array,
    x: Float32Array,
    w: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    rows: number,
    dim: number,
    accumulate: boolean,
  ): void;
  /** dx (n) = dy · act'(x) for the activation `kind` of gelu() (dx may alias dy). */
  geluBack(dx: Float32Array, dy: Float32Array, x: Float32Array, n: number, kind: GeluKind): void;
  /** x (rows, dim) += bias (dim) on every row. */
  biasAdd(x: Float32Array, bias: Float32Array, rows: number, dim: number): void;
  /**
   * Bidirectional (encoder) attention, no mask: out (B, T, H*hs) = softmax(q k^T / sqrt(hs)) v per
   * head, every query of a row attending to all T keys of that row; q (B, T, H*hs), k/v
   * (B, T, Hkv*hs). s.S is not read (it is T).
   */
  encoderAttention(out: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, s: AttnShape): void;
  /**
   * Attention over K shared prefix keys/values followed by the row's own T keys, in ONE softmax (the
   * `vpt` / deep-prompt baseline; with K = 0, plain masked attention): for query t of row b and head h,
   * out = softmax([q pk^T, q k^T] / sqrt(hs)) [pv; v] over the visible keys: every prompt key, and
   * token key j when mask[b*T + j] != 0 (mask (B, T), null = all) and, if `causal`, j <= t. Hidden
   * keys get probability exactly 0; a query with no visible key gets a zero output. q/out (B, T, H*hs),
   * k/v (B, T, Hkv*hs), pk/pv (K, Hkv*hs) (no position, no mask).
   */
  prefixAttention(
    out: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    pk: Float32Array,
    pv: Float32Array,
    s: PromptShape,
    mask: Int32Array | null,
    causal: boolean,
  ): void;
  /**
   * Backward of prefixAttention(): dq (B, T, H*hs), dk, dv (B, T, Hkv*hs) overwritten; dpk, dpv
   * (K, Hkv*hs) accumulate (summed over rows and heads). Probabilities are recomputed, not stored.
   */
  prefixAttentionBack(
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    dpk: Float32Array,
    dpv: Float32Array,
    dout: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    pk: Float32Array,
    pv: Float32Array,
    s: PromptShape,
    mask: Int32Array | null,
    causal: boolean,
  ): void;
  /**
   * The patch embedding's input (a Conv2d with kernel = stride = p, as a matmul): out (B, n, C*p*p)
   * holds the p x p tiles of pixels (B, C, size, size) in row-major grid order (n = (size/p)^2),
   * each flattened channel-major (c, dy, dx). size must be a multiple of p.
   */
  patches(out: Float32Array, pixels: Float32Array, B: number, C: number, size: number, p: number): void;

  // ---------------------------------------------------------------- attention
  /**
   * Causal attention: query t of row b sits at absolute position pos[b] + t and attends to
   * cache positions 0 .. pos[b] + t of cache row cacheRows[b] (b when cacheRows is null or
   * absent: a step-wise engine keeps one cache row per slot and passes which slot each query row
   * uses). q (B, T, H*hs); kCache/vCache (nCacheRows, S, Hkv*hs), nCacheRows = max(cacheRows) + 1
   * (or B), with the current chunk already written; out (B, T, H*hs).
   */
  attention(out: Float32Array, q: Float32Array, kCache: Float32Array, vCache: Float32Array, pos: Int32Array, s: AttnShape, cacheRows?: Int32Array | null): void;
  /**
   * One transformer block of inference with a KV cache, rows x (B*T, dim) updated in place: exactly
   * rmsnorm (attnNorm) -> h, matmul3 (wq, wk, wv) -> q, k, v, rope of q and k at positions pos[b] +
   * t, the keys and values written into cache row cacheRows[b] at positions pos[b].., attention ->
   * att, x += att · Wo^T, rmsnorm (ffnNorm) -> h, matmul2 (w1, w3) -> a, b, siluGate -> g,
   * x += g · W2^T (h, q, k, v, att, a, b, g are scratch). The same kernels in the same order as
   * forward.ts's layer without saved activations, in one call (composedBlock on the TypeScript and
   * WebGPU backends; native: native/block.cc), since a small model's decode step is bound by the
   * cost of each call.
   */
  block(
    x: Float32Array,
    attnNorm: Float32Array,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    wo: Matrix,
    ffnNorm: Float32Array,
    w1: Matrix,
    w3: Matrix,
    w2: Matrix,
    h: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    att: Float32Array,
    a: Float32Array,
    b: Float32Array,
    g: Float32Array,
    kCache: Float32Array,
    vCache: Float32Array,
    cacheRows: Int32Array,
    pos: Int32Array,
    s: AttnShape,
    cos: Float32Array,
    sin: Float32Array,
    eps: number,
  ): void;
  /**
   * Backward of attention() for a full causal pass (pos = 0, S = T; s.S is not read): dq, dk, dv
   * (overwritten) from dout, k/v (B, T, Hkv*hs). The softmax probabilities are recomputed from q
   * and k (as flash attention does), so training keeps no (B, H, T, T) buffer per layer: that buffer was the largest
   * activation, and writing it in forward and reading it back in backward cost more than the
   * recomputation.
   */
  attentionBack(
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    dout: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    s: AttnShape,
  ): void;
  /**
   * The zero-init gated prompt branch: out (B, T, H*hs) += gate[h] · softmax(q_h pk_h^T / sqrt(hs)) pv_h
   * with pk, pv (K, Hkv*hs) the prompt's keys/values (no RoPE), gate (H) the effective
   * gate values (tanh already applied where the convention says so). probs (B, H, T, K)
   * receives the prompt softmax when given.
   */
  promptAttention(out: Float32Array, q: Float32Array, pk: Float32Array, pv: Float32Array, gate: Float32Array, s: PromptShape, probs?: Float32Array): void;
  /**
   * Backward of promptAttention(): dq (B, T, H*hs) (accumulate; null: not wanted), dpk, dpv
   * (K, Hkv*hs) (accumulate), dgate (H) (accumulate) from dout; probs as promptAttention wrote it.
   */
  promptAttentionBack(
    dq: Float32Array | null,
    dpk: Float32Array,
    dpv: Float32Array,
    dgate: Float32Array,
    dout: Float32Array,
    q: Float32Array,
    pk: Float32Array,
    pv: Float32Array,
    gate: Float32Array,
    probs: Float32Array,
    s: PromptShape,
  ): void;

  // ---------------------------------------------------------------- loss / optimiser
  /**
   * Softmax cross-entropy over rows of logits (rows, V) against targets (rows); target < 0 means
   * no loss. Returns the summed loss (NaN on a device backend, whose kernels only queue: read
   * `losses` after memory.sync). If dlogits is given it receives scale · d(sum loss)/d logits
   * (rows without a target get zeros); dlogits may alias logits. If losses is given it receives
   * each row's loss (0 without a target).
   */
  crossEntropy(
    logits: Float32Array,
    targets: Int32Array,
    rows: number,
    V: number,
    dlogits: Float32Array | null,
    scale: number,
    losses?: Float32Array | null,
  ): number;
  /**
   * One AdamW step on n parameters: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
   * p -= lr (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd p).
   */
  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number, o: AdamwStep): void;
}

export interface AdamwStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number; // decoupled; 0 for gates
  step: number; // 1-based step count for bias correction
}

/** The kernel methods of a Backend (everything but its name, thread count, memory and gaps). */
export type Kernels = Omit<Backend, 'name' | 'threads' | 'rest' | 'memory' | 'missing'>;
