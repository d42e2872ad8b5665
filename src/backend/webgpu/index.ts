// The WebGPU backend: the Backend kernels as WGSL compute shaders (webgpu/shaders/), on a device
// found by gpu.ts (Dawn in Node, navigator.gpu in a page). Buffers are device mirrors of the
// caller's arrays and kernels only queue work (queue.ts; the contract is backend/memory.ts's).
// Every kernel checks its arguments on the host first and throws a RangeError, as the native
// backend does, before anything is queued. Not here: quantized (ggml block) weights and the image
// encoder kernels; asking for them throws a LlamaAdapterError that names this backend.

import { LlamaAdapterError } from '../../core/errors.js';
import type { Matrix } from '../../core/weights.js';
import { type AdamwStep, type Backend, checkSameWidth, type Kernels, type PromptShape } from '../backend.js';
import type { Buf } from '../memory.js';
import { composedBlock } from '../block.js';
import { rowKernels } from '../ts/elementwise.js';
import { openGpu, type GpuDevice } from './gpu.js';
import { type Binding, DeviceQueue, type Kernel } from './queue.js';
import {
  attention,
  attentionBackKV,
  attentionBackQ,
  hsClass,
  keyGroups,
  MAX_HS,
  PROMPT_BACK_GATE,
  PROMPT_BACK_KV,
  promptBackQ,
  queryGroups,
} from './shaders/attention.js';
import type { ShaderSpec } from './shaders/common.js';
import { GEMV_ROWS, gemm, gemmDirect, gemv } from './shaders/linear.js';
import { ADAMW, crossEntropy } from './shaders/loss.js';
import { ADD, embed, FROM_BF16, RMSNORM, RMSNORM_BACK, ROPE, SILU_GATE, SILU_GATE_BACK, TO_BF16 } from './shaders/rows.js';

/** The WebGPU backend: a Backend plus what it runs on. */
export interface WebGpuBackend extends Backend {
  /** The adapter, in words. */
  readonly adapter: string;
  /** A software adapter (SwiftShader: the GPU emulated on the CPU). */
  readonly software: boolean;
  readonly memory: DeviceQueue;
  /**
   * The form of the GEMM (matmul of more than GEMV_ROWS rows, matmulBack) and attention kernels:
   * 'tiled' (workgroup-memory tiles, the GPU form; default on hardware adapters) or 'direct' (no
   * workgroup memory or barriers; default on software adapters: under SwiftShader it ran the GEMM
   * 4-6x faster and compiles attention pipelines in a fraction of the time).
   * LLAMA_ADAPTER_WEBGPU_FORM sets it.
   */
  form: 'tiled' | 'direct';
}

const grid = DeviceQueue.grid;

// ------------------------------------------------------------------ argument checks (as native/addon.cc's list)

function need(k: string, what: string, a: Buf | null | undefined, n: number): void {
  if (!a) throw new RangeError(`webgpu ${k}: ${what} is missing`);
  if (!(a.length >= n)) throw new RangeError(`webgpu ${k}: ${what} has ${a.length} elements, ${n} needed`);
}

function count(k: string, what: string, v: number, min = 0): void {
  if (!(Number.isInteger(v) && v >= min && v < 2 ** 31)) throw new RangeError(`webgpu ${k}: ${what} must be an integer >= ${min} (got ${v})`);
}

function heads(k: string, s: { H: number; Hkv: number; hs: number }): void {
  count(k, 'H', s.H, 1);
  count(k, 'Hkv', s.Hkv, 1);
  count(k, 'hs', s.hs, 1);
  if (s.H % s.Hkv !== 0) throw new RangeError(`webgpu ${k}: H ${s.H} is not a multiple of Hkv ${s.Hkv}`);
  if (s.hs > MAX_HS) throw new LlamaAdapterError(`webgpu ${k}: head size ${s.hs} is over the ${MAX_HS} this backend supports`);
}

function weights(k: string, w: Matrix): void {
  if (w.dtype !== 'f32' && w.dtype !== 'bf16') {
    throw new LlamaAdapterError(
      `${w.dtype} weights (quantized or f16) are not supported on the webgpu backend (${k}); use --backend native or ts, or --dtype f32/bf16`,
    );
  }
  count(k, 'weight rows', w.rows);
  count(k, 'weight cols', w.cols);
  need(k, 'weight data', w.data, w.rows * w.cols);
}

function unsupported(name: string): () => never {
  return () => {
    throw new LlamaAdapterError(`${name} (an image encoder kernel) is not supported on the webgpu backend; use --backend native or ts for image encoders`);
  };
}

// ------------------------------------------------------------------ the backend

/** The WebGPU backend over an opened device. */
export function createWebGpuBackend(gpu: GpuDevice): WebGpuBackend {
  const q = new DeviceQueue(gpu.device);
  const cache = new Map<string, Kernel>();
  const K = (name: string, spec: () => ShaderSpec): Kernel => {
    let k = cache.get(name);
    if (!k) cache.set(name, (k = q.kernel(name, spec())));
    return k;
  };
  const use = (a: Buf): Binding => q.use(a);
  const out = (a: Buf): Binding => q.use(a, true);
  const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.LLAMA_ADAPTER_WEBGPU_FORM;
  const self = { form: env === 'tiled' || env === 'direct' ? env : gpu.software ? 'direct' : 'tiled' } as { form: 'tiled' | 'direct' };
  const tiled = (): boolean => self.form === 'tiled';
  /** The attention shader (causal, prompt) of this head size's class and the backend's form. */
  const attend = (hs: number, params: Record<string, number>, bufs: Record<string, Binding>, groups: number): void => {
    const hc = hsClass(hs),
      f = tiled();
    q.dispatch(
      K(`attention${hc}${f}`, () => attention(hc, f)),
      params,
      bufs,
      grid(groups),
    );
  };
  /** GEMM o (M, N) (+)= x (M, K) · B: the form's kernel. */
  const product = (bf: boolean, trans: boolean, params: { M: number; N: number; K: number; ldw: number; acc: number }, bufs: Record<string, Binding>): void => {
    const { M, N } = params;
    if (tiled())
      q.dispatch(
        K(`gemm${bf}${trans}`, () => gemm(bf, trans)),
        params,
        bufs,
        [Math.ceil(N / 64), Math.ceil(M / 64)],
      );
    else
      q.dispatch(
        K(`gemmDirect${bf}${trans}`, () => gemmDirect(bf, trans)),
        params,
        bufs,
        grid(Math.ceil((Math.ceil(N / 4) * Math.ceil(M / 4)) / 64)),
      );
  };

  const kernels: Kernels = {
    matmul(o, x, w, M, accumulate = false) {
      weights('matmul', w);
      count('matmul', 'M', M);
      const N = w.rows,
        Kd = w.cols;
      need('matmul', 'out', o, M * N);
      need('matmul', 'x', x, M * Kd);
      if (M * N === 0) return;
      const bf = w.dtype === 'bf16';
      const bufs = { x: use(x), w: q.weight(w.data), o: out(o) };
      const acc = accumulate ? 1 : 0;
      if (M <= GEMV_ROWS)
        q.dispatch(
          K(`gemv${bf}`, () => gemv(bf)),
          { M, N, K: Kd, acc },
          bufs,
          grid(Math.ceil((M * N) / 64)),
        );
      else product(bf, true, { M, N, K: Kd, ldw: Kd, acc }, bufs);
    },

    // two or three queued matmuls (the pool-job saving is the native backend's)
    matmul2(oA, oB, x, wA, wB, M) {
      checkSameWidth('webgpu', 'matmul2', [wA, wB]);
      kernels.matmul(oA, x, wA, M);
      kernels.matmul(oB, x, wB, M);
    },
    matmul3(oA, oB, oC, x, wA, wB, wC, M) {
      checkSameWidth('webgpu', 'matmul3', [wA, wB, wC]);
      kernels.matmul(oA, x, wA, M);
      kernels.matmul(oB, x, wB, M);
      kernels.matmul(oC, x, wC, M);
    },

    matmulBack(o, dy, w, M, accumulate = false) {
      weights('matmulBack', w);
      count('matmulBack', 'M', M);
      const N = w.rows,
        Kd = w.cols;
      need('matmulBack', 'out', o, M * Kd);
      need('matmulBack', 'dy', dy, M * N);
      if (M * Kd === 0) return;
      // GEMM (M, Kd) = dy (M, N) · W (N, Kd)
      product(w.dtype === 'bf16', false, { M, N: Kd, K: N, ldw: Kd, acc: accumulate ? 1 : 0 }, { x: use(dy), w: q.weight(w.data), o: out(o) });
    },

    rmsnorm(o, x, w, rows, dim, eps, rstd) {
      count('rmsnorm', 'rows', rows);
      count('rmsnorm', 'dim', dim);
      need('rmsnorm', 'out', o, rows * dim);
      need('rmsnorm', 'x', x, rows * dim);
      need('rmsnorm', 'w', w, dim);
      if (rstd) need('rmsnorm', 'rstd', rstd, rows);
      if (rows === 0) return;
      const bufs = { x: use(x), w: use(w), rstd: rstd ? out(rstd) : q.none(), o: out(o) };
      q.dispatch(
        K('rmsnorm', () => RMSNORM),
        { rows, dim, eps, hasR: rstd ? 1 : 0 },
        bufs,
        grid(Math.ceil(rows / 64)),
      );
    },

    rmsnormBack(dx, dy, x, w, rstd, rows, dim, accumulate) {
      count('rmsnormBack', 'rows', rows);
      count('rmsnormBack', 'dim', dim);
      for (const [n, a] of [
        ['dx', dx],
        ['dy', dy],
        ['x', x],
      ] as const)
        need('rmsnormBack', n, a, rows * dim);
      need('rmsnormBack', 'w', w, dim);
      need('rmsnormBack', 'rstd', rstd, rows);
      if (rows === 0) return;
      const bufs = { dy: use(dy), x: use(x), w: use(w), rstd: use(rstd), dx: out(dx) };
      q.dispatch(
        K('rmsnormBack', () => RMSNORM_BACK),
        { rows, dim, acc: accumulate ? 1 : 0 },
        bufs,
        grid(Math.ceil(rows / 64)),
      );
    },

    rope(x, B, T, H, hs, pos, cos, sin, inverse) {
      for (const [n, v] of [
        ['B', B],
        ['T', T],
        ['H', H],
        ['hs', hs],
      ] as const)
        count('rope', n, v);
      if (hs % 2) throw new RangeError('webgpu rope: hs must be even');
      need('rope', 'x', x, B * T * H * hs);
      need('rope', 'pos', pos, B);
      let maxEnd = 0;
      for (let b = 0; b < B; b++) {
        if (!(pos[b] >= 0)) throw new RangeError(`webgpu rope: pos ${pos[b]} is negative`);
        maxEnd = Math.max(maxEnd, pos[b] + T);
      }
      const half = hs / 2;
      need('rope', 'cos', cos, maxEnd * half);
      need('rope', 'sin', sin, maxEnd * half);
      const n = B * T * H * half;
      if (n === 0) return;
      const bufs = { pos: use(pos), cosT: use(cos), sinT: use(sin), x: out(x) };
      q.dispatch(
        K('rope', () => ROPE),
        { n, T, H, half, sign: inverse ? -1 : 1 },
        bufs,
        grid(Math.ceil(n / 64)),
      );
    },

    siluGate(o, a, b, n) {
      count('siluGate', 'n', n);
      for (const [w, v] of [
        ['out', o],
        ['a', a],
        ['b', b],
      ] as const)
        need('siluGate', w, v, n);
      if (n === 0) return;
      q.dispatch(
        K('siluGate', () => SILU_GATE),
        { n },
        { a: use(a), b: use(b), o: out(o) },
        grid(Math.ceil(n / 256)),
      );
    },

    siluGateBack(da, db, dy, a, b, n) {
      count('siluGateBack', 'n', n);
      for (const [w, v] of [
        ['da', da],
        ['db', db],
        ['dy', dy],
        ['a', a],
        ['b', b],
      ] as const)
        need('siluGateBack', w, v, n);
      if (n === 0) return;
      const bufs = { dy: use(dy), a: use(a), b: use(b), da: out(da), db: out(db) };
      q.dispatch(
        K('siluGateBack', () => SILU_GATE_BACK),
        { n },
        bufs,
        grid(Math.ceil(n / 256)),
      );
    },

    // on the host copy (the engine samples after memory.sync): the oracle's scan
    argmax(x, n) {
      count('argmax', 'n', n, 1);
      need('argmax', 'x', x, n);
      return rowKernels.argmax(x, n);
    },

    add(x, y, n) {
      count('add', 'n', n);
      need('add', 'x', x, n);
      need('add', 'y', y, n);
      if (n === 0) return;
      q.dispatch(
        K('add', () => ADD),
        { n },
        { y: use(y), x: out(x) },
        grid(Math.ceil(n / 256)),
      );
    },

    toBf16(o, x, n) {
      count('toBf16', 'n', n);
      need('toBf16', 'out', o, n);
      need('toBf16', 'x', x, n);
      if (n === 0) return;
      const bufs = { x: use(x), o: out(o) };
      const words = ((bufs.o.off + n - 1) >> 1) - (bufs.o.off >> 1) + 1;
      q.dispatch(
        K('toBf16', () => TO_BF16),
        { n, words },
        bufs,
        grid(Math.ceil(words / 256)),
      );
    },

    fromBf16(o, x, n) {
      count('fromBf16', 'n', n);
      need('fromBf16', 'out', o, n);
      need('fromBf16', 'x', x, n);
      if (n === 0) return;
      q.dispatch(
        K('fromBf16', () => FROM_BF16),
        { n },
        { x: use(x), o: out(o) },
        grid(Math.ceil(n / 256)),
      );
    },

    embed(o, table, ids, n) {
      weights('embed', table);
      count('embed', 'n', n);
      need('embed', 'ids', ids, n);
      need('embed', 'out', o, n * table.cols);
      for (let i = 0; i < n; i++)
        if (!(ids[i] >= 0 && ids[i] < table.rows)) throw new RangeError(`webgpu embed: token id ${ids[i]} is outside 0..${table.rows - 1}`);
      if (n * table.cols === 0) return;
      const bf = table.dtype === 'bf16';
      const bufs = { table: q.weight(table.data), ids: use(ids), o: out(o) };
      q.dispatch(
        K(`embed${bf}`, () => embed(bf)),
        { n, dim: table.cols },
        bufs,
        grid(Math.ceil((n * table.cols) / 256)),
      );
    },

    attention(o, qv, kc, vc, pos, s, cacheRows) {
      const { B, T, S, H, Hkv, hs } = s;
      heads('attention', s);
      count('attention', 'B', B);
      count('attention', 'T', T);
      count('attention', 'S', S);
      const qn = B * T * H * hs,
        kvs = Hkv * hs;
      need('attention', 'out', o, qn);
      need('attention', 'q', qv, qn);
      need('attention', 'pos', pos, B);
      let nRows = B;
      if (cacheRows) {
        need('attention', 'cacheRows', cacheRows, B);
        nRows = 0;
        for (let b = 0; b < B; b++) {
          if (!(cacheRows[b] >= 0)) throw new RangeError(`webgpu attention: cacheRows entry ${cacheRows[b]} is negative`);
          nRows = Math.max(nRows, cacheRows[b] + 1);
        }
      }
      for (let b = 0; b < B; b++)
        if (!(pos[b] >= 0 && pos[b] + T <= S)) throw new RangeError(`webgpu attention: position ${pos[b]} + ${T} tokens does not fit the cache of ${S}`);
      need('attention', 'kCache', kc, nRows * S * kvs);
      need('attention', 'vCache', vc, nRows * S * kvs);
      if (qn === 0) return;
      const bufs = {
        Q: use(qv),
        Kc: use(kc),
        Vc: use(vc),
        POS: use(pos),
        ROWS: cacheRows ? use(cacheRows) : q.none(),
        GATE: q.none(),
        PROBS: q.none(),
        O: out(o),
      };
      const params = { B, T, S, H, rep: H / Hkv, hs, kvs, qs: H * hs, mode: 0, K: 0, scale: 1 / Math.sqrt(hs), hasRows: cacheRows ? 1 : 0, hasProbs: 0 };
      attend(hs, params, bufs, queryGroups(B, H, T));
    },

    attentionBack(dq, dk, dv, dout, qv, k, v, s) {
      const { B, T, H, Hkv, hs } = s;
      heads('attentionBack', s);
      count('attentionBack', 'B', B);
      count('attentionBack', 'T', T);
      const qn = B * T * H * hs,
        kn = B * T * Hkv * hs;
      need('attentionBack', 'dq', dq, qn);
      need('attentionBack', 'dout', dout, qn);
      need('attentionBack', 'q', qv, qn);
      for (const [n, a] of [
        ['dk', dk],
        ['dv', dv],
        ['k', k],
        ['v', v],
      ] as const)
        need('attentionBack', n, a, kn);
      if (qn === 0) return;
      const hc = hsClass(hs),
        f = tiled();
      const bufs = { DOUT: use(dout), Q: use(qv), Kb: use(k), Vb: use(v), LSE: q.scratch('lse', B * T * H), DD: q.scratch('dd', B * T * H) };
      const params = { B, T, H, Hkv, rep: H / Hkv, hs, kvs: Hkv * hs, qs: H * hs, scale: 1 / Math.sqrt(hs) };
      q.dispatch(
        K(`attnBackQ${hc}${f}`, () => attentionBackQ(hc, f)),
        params,
        { ...bufs, DQ: out(dq) },
        grid(queryGroups(B, H, T)),
      );
      q.dispatch(
        K(`attnBackKV${hc}${f}`, () => attentionBackKV(hc, f)),
        params,
        { ...bufs, DK: out(dk), DV: out(dv) },
        grid(keyGroups(B, Hkv, T)),
      );
    },

    promptAttention(o, qv, pk, pv, gate, s, probs) {
      const { B, T, K: Kp, H, Hkv, hs } = s;
      promptChecks('promptAttention', s);
      const qn = B * T * H * hs;
      need('promptAttention', 'out', o, qn);
      need('promptAttention', 'q', qv, qn);
      need('promptAttention', 'pk', pk, Kp * Hkv * hs);
      need('promptAttention', 'pv', pv, Kp * Hkv * hs);
      need('promptAttention', 'gate', gate, H);
      if (probs) need('promptAttention', 'probs', probs, B * H * T * Kp);
      if (qn === 0) return;
      const bufs = { Q: use(qv), Kc: use(pk), Vc: use(pv), POS: q.none(), ROWS: q.none(), GATE: use(gate), PROBS: probs ? out(probs) : q.none(), O: out(o) };
      const params = {
        B,
        T,
        S: 0,
        H,
        rep: H / Hkv,
        hs,
        kvs: Hkv * hs,
        qs: H * hs,
        mode: 1,
        K: Kp,
        scale: 1 / Math.sqrt(hs),
        hasRows: 0,
        hasProbs: probs ? 1 : 0,
      };
      attend(hs, params, bufs, queryGroups(B, H, T));
    },

    promptAttentionBack(dq, dpk, dpv, dgate, dout, qv, pk, pv, gate, probs, s) {
      const { B, T, K: Kp, H, Hkv, hs } = s;
      promptChecks('promptAttentionBack', s);
      const qn = B * T * H * hs,
        pn = Kp * Hkv * hs;
      if (dq) need('promptAttentionBack', 'dq', dq, qn);
      need('promptAttentionBack', 'dout', dout, qn);
      need('promptAttentionBack', 'q', qv, qn);
      for (const [n, a] of [
        ['dpk', dpk],
        ['dpv', dpv],
        ['pk', pk],
        ['pv', pv],
      ] as const)
        need('promptAttentionBack', n, a, pn);
      need('promptAttentionBack', 'dgate', dgate, H);
      need('promptAttentionBack', 'gate', gate, H);
      need('promptAttentionBack', 'probs', probs, B * H * T * Kp);
      if (qn === 0) return;
      const rows = B * H * T,
        hc = hsClass(hs);
      // scratch: ds (B, H, T, K) at 0, each query's dgate share (B, H, T) after it
      const bufs = { DOUT: use(dout), Q: use(qv), PK: use(pk), PV: use(pv), GATE: use(gate), PROBS: use(probs), SCR: q.scratch('prompt', rows * Kp + rows) };
      const params = { B, T, H, rep: H / Hkv, hs, kvs: Hkv * hs, qs: H * hs, K: Kp, scale: 1 / Math.sqrt(hs), dso: 0, dgo: rows * Kp, so: rows * Kp };
      q.dispatch(
        K(`promptBackQ${hc}`, () => promptBackQ(hc)),
        { ...params, hasDq: dq ? 1 : 0 },
        { ...bufs, DQ: dq ? out(dq) : q.none() },
        grid(Math.ceil(rows / 64)),
      );
      q.dispatch(
        K('promptBackKV', () => PROMPT_BACK_KV),
        params,
        { ...bufs, DPK: out(dpk), DPV: out(dpv) },
        grid(Math.ceil(pn / 64)),
      );
      q.dispatch(
        K('promptBackGate', () => PROMPT_BACK_GATE),
        params,
        { SCR: bufs.SCR, DG: out(dgate) },
        grid(Math.ceil(H / 64)),
      );
    },

    crossEntropy(logits, targets, rows, V, dlogits, scale, losses) {
      count('crossEntropy', 'rows', rows);
      count('crossEntropy', 'V', V, 1);
      need('crossEntropy', 'logits', logits, rows * V);
      need('crossEntropy', 'targets', targets, rows);
      if (dlogits) need('crossEntropy', 'dlogits', dlogits, rows * V);
      if (losses) need('crossEntropy', 'losses', losses, rows);
      for (let r = 0; r < rows; r++) if (!(targets[r] < V)) throw new RangeError(`webgpu crossEntropy: target ${targets[r]} is outside the vocabulary of ${V}`);
      if (rows === 0) return 0;
      const TG = use(targets),
        LS = losses ? out(losses) : q.none();
      const LG = dlogits && dlogits.buffer === logits.buffer ? out(logits) : use(logits),
        DL = dlogits ? out(dlogits) : q.none();
      const inPlace = DL.buf === LG.buf;
      const params = { rows, V, dlo: DL.off, scale, hasD: dlogits ? 1 : 0, hasL: losses ? 1 : 0 };
      q.dispatch(
        K(`crossEntropy${inPlace}`, () => crossEntropy(inPlace)),
        params,
        inPlace ? { LG, TG, LS } : { LG, TG, DL, LS },
        grid(Math.ceil(rows / 64)),
      );
      return Number.NaN; // queued: the losses are in `losses` after memory.sync
    },

    adamw(p, g, m, v, n, o: AdamwStep) {
      count('adamw', 'n', n);
      for (const [w, a] of [
        ['p', p],
        ['g', g],
        ['m', m],
        ['v', v],
      ] as const)
        need('adamw', w, a, n);
      if (n === 0) return;
      const params = {
        n,
        lr: o.lr,
        b1: o.beta1,
        b2: o.beta2,
        c1: 1 - o.beta1,
        c2: 1 - o.beta2,
        inv1: 1 / (1 - o.beta1 ** o.step),
        inv2: 1 / (1 - o.beta2 ** o.step),
        eps: o.eps,
        wd: o.weightDecay,
      };
      q.dispatch(
        K('adamw', () => ADAMW),
        params,
        { G: use(g), P: out(p), M: out(m), Vm: out(v) },
        grid(Math.ceil(n / 256)),
      );
    },

    layerNorm: unsupported('layerNorm'),
    gelu: unsupported('gelu'),
    biasAdd: unsupported('biasAdd'),
    encoderAttention: unsupported('encoderAttention'),
    patches: unsupported('patches'),
    layerNormBack: unsupported('layerNormBack'),
    geluBack: unsupported('geluBack'),
    prefixAttention: unsupported('prefixAttention'),
    prefixAttentionBack: unsupported('prefixAttentionBack'),
    // its queued kernels one by one (backend/block.ts)
    block: (...a: Parameters<Kernels['block']>) => block(...a),
  };

  const backend: WebGpuBackend = {
    name: 'webgpu',
    threads: 1,
    memory: q,
    missing: ['quantized', 'f16', 'encoder'],
    adapter: gpu.description,
    software: gpu.software,
    get form() {
      return self.form;
    },
    set form(f) {
      self.form = f;
    },
    ...kernels,
  };
  const block = composedBlock(backend);
  return backend;
}

function promptChecks(k: string, s: PromptShape): void {
  heads(k, s);
  count(k, 'B', s.B);
  count(k, 'T', s.T);
  count(k, 'K', s.K, 1);
}

const made = new WeakMap<GPUDevice, WebGpuBackend>();

/**
 * The WebGPU backend on the process's device, or null and why not. allowSoftware: accept a
 * software adapter such as SwiftShader (asked for by name: `--backend webgpu`); 'auto' passes
 * false. Never throws.
 */
export async function loadWebGpuBackend(allowSoftware = true): Promise<{ backend: WebGpuBackend | null; error: string }> {
  const { gpu, error } = await openGpu(allowSoftware);
  if (!gpu) return { backend: null, error };
  let b = made.get(gpu.device);
  if (!b) made.set(gpu.device, (b = createWebGpuBackend(gpu)));
  return { backend: b, error: '' };
}
