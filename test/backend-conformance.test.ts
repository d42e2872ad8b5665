// Backend conformance: every Backend method, forward and backward, of every registered backend
// other than the oracle (src/backend/index.ts) against the TypeScript oracle on random inputs of
// several shapes (GQA, per-row positions, slot cache rows, decode T=1, prompt lengths 1 and 10,
// f32 and bf16 weights, accumulate on/off, subarray views with a non-zero byteOffset and guard
// elements around them, zero gates left bit-for-bit untouched, undersized buffers rejected); the
// native backend once per SIMD target the CPU runs (avx512, avx2, sse4, scalar, ...: each forced).
// Kernels are awaited through kernelsOf(), which on a device backend uploads the test's arrays and
// reads them back after the kernel (a no-op wrapper on host backends); kernel groups a backend
// lacks (Backend.missing) are skipped with the reason.
// The native backend's own feature paths (GEMM engines, bf16Split, batch invariance, gemm) have
// a suite of their own. A last suite checks each backward kernel of the TypeScript backend against
// central finite differences, so the oracle itself is checked independently. A backend that does
// not load is skipped (with the reason); the finite-difference suite always runs.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GELU, type AttnShape, type Backend, type KernelGroup, type Kernels, type PromptShape } from '../src/backend/backend.js';
import type { Buf } from '../src/backend/memory.js';
import { createTsBackend } from '../src/backend/ts/index.js';
import { erf } from '../src/backend/ts/encoder.js';
import { backends, oracleId, type BackendEntry, type BackendId } from '../src/backend/index.js';
import { loadNativeBackend, nativeInfo, setNativeFeature, setNativeSimd, type Gemm } from '../src/backend/native.js';
import { roundBf16, toBf16, toF16, type Matrix } from '../src/core/weights.js';
import { canQuantize, matrixToF32, QUANT_DTYPES, QUANT_TYPES, quantizeMatrix } from '../src/core/quant.js';
import { Rng } from '../src/core/rng.js';

const ts = createTsBackend();
const nat = loadNativeBackend(2);
const skipNative: string | false = nat.backend ? false : `native backend unavailable: ${nat.error}`;

// ------------------------------------------------------------------ helpers

type Arr = Float32Array | Uint16Array | Int32Array | Uint8Array;

function randn(rng: Rng, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}

const GUARD = 3; // guard elements on each side of a view

/**
 * A copy of `src` living at a non-zero byteOffset inside a larger buffer, with guard elements
 * around it; `intact()` says whether the guards are unchanged (no write outside the view).
 */
function inView<T extends Arr>(src: T): { v: T; intact: () => boolean } {
  const C = src.constructor as { new (n: number): T };
  const big = new C(src.length + 2 * GUARD);
  const guard = src instanceof Float32Array ? 777.5 : 7;
  big.fill(guard as never);
  const v = big.subarray(GUARD, GUARD + src.length) as T;
  v.set(src as never);
  return {
    v,
    intact: () => {
      for (let i = 0; i < GUARD; i++) if (big[i] !== guard || big[big.length - 1 - i] !== guard) return false;
      return true;
    },
  };
}

/** Normwise closeness: max |a - b| <= rtol * max |b| + atol (inputs are O(1)), NaN exactly where b is NaN. */
function close(a: ArrayLike<number>, b: ArrayLike<number>, rtol: number, what: string, atol = 1e-6): void {
  assert.equal(a.length, b.length, `${what}: length`);
  let err = 0,
    mag = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(b[i]) || Number.isNaN(a[i])) {
      assert.ok(Number.isNaN(a[i]) && Number.isNaN(b[i]), `${what}: NaN mismatch at ${i} (${a[i]} vs ${b[i]})`);
      continue;
    }
    err = Math.max(err, Math.abs(a[i] - b[i]));
    mag = Math.max(mag, Math.abs(b[i]));
  }
  assert.ok(err <= rtol * mag + atol, `${what}: max error ${err.toExponential(3)} > ${rtol} x ${mag.toExponential(3)}`);
}

function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length),
    ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) assert.equal(ua[i], ub[i], `${what}: bits differ at ${i}`);
}

function weight(rng: Rng, rows: number, cols: number, dtype: 'f32' | 'bf16' | 'f16', scale = 0.5): Matrix {
  const f = randn(rng, rows * cols, scale);
  if (dtype === 'f16') return { dtype, rows, cols, data: toF16(f) };
  return dtype === 'f32' ? { dtype, rows, cols, data: f } : { dtype, rows, cols, data: toBf16(f) };
}

/** The same matrix with its data moved into a view at a non-zero byteOffset. */
function weightView(w: Matrix): { w: Matrix; intact: () => boolean } {
  const r = inView<Arr>(w.data);
  return { w: { ...w, data: r.v } as Matrix, intact: r.intact };
}

/** Random inputs of prefixAttention for shape s: q (B, T, H*hs), k / v (B, T, Hkv*hs), pk / pv (K, Hkv*hs). */
function prefixInputs(rng: Rng, s: PromptShape): Record<'q' | 'k' | 'v' | 'pk' | 'pv', Float32Array> {
  const { B, T, K, H, Hkv, hs } = s;
  const k = randn(rng, B * T * Hkv * hs),
    pk = randn(rng, K * Hkv * hs);
  return { q: randn(rng, B * T * H * hs), k, v: randn(rng, k.length), pk, pv: randn(rng, pk.length) };
}

function ropeTables(maxPos: number, hs: number): { cos: Float32Array; sin: Float32Array } {
  const half = hs / 2;
  const cos = new Float32Array(maxPos * half),
    sin = new Float32Array(maxPos * half);
  for (let p = 0; p < maxPos; p++)
    for (let i = 0; i < half; i++) {
      const a = p * 10000 ** ((-2 * i) / hs);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  return { cos, sin };
}

// Tolerances (normwise relative). fp32 kernels: summation order and exp approximations differ
// from the oracle (which accumulates in double) by a few ulps per term.
const RTOL = 1e-5;
const RTOL_BF16 = 2e-5; // bf16 weights: activations rounded to bf16 on both sides, exact products, fp32 accumulation

/** Every typed array among a kernel's arguments (Matrix data aside: weights are frozen). */
function arrays(args: readonly unknown[]): Buf[] {
  return args.filter((a): a is Buf => ArrayBuffer.isView(a) && !(a instanceof DataView)) as Buf[];
}

type AwaitedKernels = { [N in keyof Kernels]: (...a: Parameters<Kernels[N]>) => Promise<ReturnType<Kernels[N]>> };

/**
 * b's kernels, each resolving once the host copies of its array arguments are current: on a
 * device backend the arguments are first marked host-written (the test wrote them) and read back
 * after the kernel; on a host backend the kernel has simply run.
 */
function kernelsOf(b: Backend): AwaitedKernels {
  return new Proxy({} as AwaitedKernels, {
    get:
      (_t, name: keyof Kernels) =>
      (...args: unknown[]) => {
        b.memory.upload(...arrays(args));
        const r = (b[name] as (...a: unknown[]) => unknown)(...args);
        return b.memory.sync(...arrays(args)).then(() => r);
      },
  });
}

/**
 * Every quantized type against the oracle through `ker` (a backend's awaited kernels): matmul
 * (8-bit activations, integer block sums) in decode and prefill shapes, matmulBack and embed
 * (dequantized rows), views, accumulate on/off.
 */
async function checkQuantized(ker: AwaitedKernels, rng: Rng): Promise<void> {
  for (const dtype of QUANT_DTYPES) {
    const blk = QUANT_TYPES[dtype].block;
    for (const [M, N, K] of [
      [1, 7, blk],
      [1, 37, 3 * blk],
      [3, 40, 2 * blk],
      [5, 33, 3 * blk],
      [17, 9, blk],
      [70, 13, 2 * blk],
    ] as [number, number, number][])
      for (const acc of [false, true]) {
        const tag = `${dtype} M=${M} N=${N} K=${K} acc=${acc}`;
        let w: Matrix;
        if (canQuantize(dtype)) w = quantizeMatrix(dtype, N, K, randn(rng, N * K, 0.5));
        else {
          // Q5_K cannot be written here: random blocks with sane half scales (d, dmin = 2^-7)
          const data = new Uint8Array((N * K * QUANT_TYPES[dtype].bytes) / blk).map(() => rng.int(256));
          for (let b = 0; b < data.length; b += QUANT_TYPES[dtype].bytes) data.set([0, 0x20, 0, 0x20], b);
          w = { dtype, rows: N, cols: K, data } as Matrix;
        }
        const x = randn(rng, M * K);
        const init = randn(rng, M * N);
        const want = init.slice();
        ts.matmul(want, x, w, M, acc);
        const wv = weightView(w),
          ov = inView(init);
        await ker.matmul(ov.v, x, wv.w, M, acc);
        close(ov.v, want, 1e-5, `matmul ${tag}`);
        assert.ok(wv.intact() && ov.intact(), `views ${tag}`);
        const dy = randn(rng, M * N);
        const initB = randn(rng, M * K);
        const wantB = initB.slice(),
          gotB = initB.slice();
        ts.matmulBack(wantB, dy, w, M, acc);
        await ker.matmulBack(gotB, dy, w, M, acc);
        close(gotB, wantB, 1e-5, `matmulBack ${tag}`);
      }
    const w = canQuantize(dtype) ? quantizeMatrix(dtype, 5, blk, randn(rng, 5 * blk)) : null;
    if (w) {
      const ids = Int32Array.of(4, 0, 2);
      const a = new Float32Array(3 * blk),
        b = new Float32Array(3 * blk);
      ts.embed(a, w, ids, 3);
      await ker.embed(b, w, ids, 3);
      sameBits(b, a, `embed ${dtype}`);
    }
  }
}

// ------------------------------------------------------------------ every backend vs the oracle

// The native backend runs the suite once per SIMD target this CPU runs (each forced in turn); a
// device backend (webgpu: SwiftShader where there is no GPU) runs it once.
const runs: { id: BackendId; simd: string | null }[] = (Object.keys(backends) as BackendId[])
  .filter((b) => b !== oracleId)
  .flatMap((id): { id: BackendId; simd: string | null }[] =>
    id === 'native' && nativeInfo() ? (nativeInfo()?.simdTargets ?? []).map((simd) => ({ id, simd })) : [{ id, simd: null }],
  );

for (const { id, simd } of runs) {
  const entry: BackendEntry = backends[id];
  const loaded = entry.loadAsync ? await entry.loadAsync(true) : entry.load(2);
  const be = loaded.backend as Backend;
  const load = (threads: number): Backend => (entry.loadAsync ? be : (entry.load(threads).backend as Backend));
  const ker = be ? kernelsOf(be) : (null as unknown as AwaitedKernels);
  const lacks = (g: KernelGroup): string | false => (be?.missing?.includes(g) ? `${id} has no ${g} kernels` : false);
  const label = simd ? `${id} [${simd}]` : id;
  // weight dtypes of the matmul and embed checks (f16 where the backend has those kernels)
  const dtypes = (['f32', 'bf16', 'f16'] as const).filter((d) => d !== 'f16' || !lacks('f16'));
  describe(`${label} backend matches the TypeScript oracle`, { skip: loaded.backend ? false : `${id} backend unavailable: ${loaded.error}` }, () => {
    const rng = new Rng(1234);
    if (simd) {
      before(() => assert.ok(setNativeSimd(simd), `SIMD target ${simd} not runnable`));
      after(() => setNativeSimd(''));
    }

    it(
      'quantized weights (every ggml type): matmul on 8-bit activations, matmulBack and embed on dequantized rows, views',
      {
        skip: lacks('quantized'),
      },
      () => checkQuantized(ker, rng),
    );

    it('matmul and matmulBack: f32/bf16/f16, decode and prefill shapes, accumulate, views', async () => {
      const shapes: [number, number, number][] = [
        [1, 1, 1],
        [6, 5, 0],
        [3, 0, 4],
        [1, 37, 70],
        [2, 64, 64],
        [3, 33, 17],
        [4, 100, 96],
        [5, 48, 33],
        [8, 100, 64],
        [9, 70, 100],
        [17, 130, 257],
        [20, 30, 1100],
        [31, 13, 40],
        [32, 40, 48],
        [64, 256, 512],
        [100, 96, 200],
        // AMX edges: depth beyond one packed block (2048) in each direction, a second column block
        // (256), 32x32 output blocks both inside out and straddling its edges
        [33, 290, 2090],
        [48, 2090, 70],
        // fp32 sgemm split by rows (more rows than weight rows / output columns), ragged last block
        [100, 200, 60],
      ];
      // the native GEMM engines' edge shapes (AMX blocks, sgemm splits) are large: a device backend
      // emulated on the CPU (SwiftShader) takes seconds for each, so it runs the others
      for (const [M, N, K] of shapes.filter(([M, N, K]) => !be.memory.device || M * N * K <= 2e6))
        for (const dtype of dtypes)
          for (const acc of [false, true]) {
            const tag = `${dtype} M=${M} N=${N} K=${K} acc=${acc}`;
            const w = weight(rng, N, K, dtype);
            const x = randn(rng, M * K);
            const init = randn(rng, M * N);
            const want = init.slice();
            ts.matmul(want, x, w, M, acc);
            const wv = weightView(w),
              xv = inView(x),
              ov = inView(init);
            await ker.matmul(ov.v, xv.v, wv.w, M, acc);
            close(ov.v, want, dtype === 'bf16' ? RTOL_BF16 : RTOL, `matmul ${tag}`);
            assert.ok(ov.intact() && xv.intact() && wv.intact(), `matmul ${tag}: wrote outside its views`);

            const dy = randn(rng, M * N);
            const initB = randn(rng, M * K);
            const wantB = initB.slice();
            ts.matmulBack(wantB, dy, w, M, acc);
            const bv = inView(initB),
              dyv = inView(dy);
            await ker.matmulBack(bv.v, dyv.v, wv.w, M, acc);
            close(bv.v, wantB, dtype === 'bf16' ? RTOL_BF16 : RTOL, `matmulBack ${tag}`);
            assert.ok(bv.intact() && dyv.intact(), `matmulBack ${tag}: wrote outside its views`);
          }
    });

    it('matmul2 / matmul3: the same bits as matmul per weight (decode rows split over threads together), views, widths checked', async () => {
      // [M, K, rows of each weight]: decode rows of a small model (q/k/v of 128 x 64 x 64, one
      // split over the threads), one weight over 1 MB next to small ones (a streamed product),
      // ragged register blocks, and prefill rows (one matmul each)
      const cases: [number, number, number[]][] = [
        [1, 128, [128, 64, 64]],
        [1, 96, [384, 384]],
        [2, 70, [13, 1, 37]],
        [4, 33, [100, 9]],
        [1, 520, [1100, 8, 70]],
        [9, 40, [48, 48, 16]],
        [40, 64, [70, 30]],
      ];
      const quant = lacks('quantized') ? [] : (['q8_0', 'q4_k'] as const);
      for (const [M, K, Ns] of cases.filter(([M, K, Ns]) => !be.memory.device || M * K * Ns.reduce((a, b) => a + b) <= 2e6))
        for (const dtype of [...dtypes, ...quant]) {
          const q = dtype === 'q8_0' || dtype === 'q4_k' ? dtype : null;
          const Kq = q ? 256 : K;
          const ws = Ns.map((N) => (q ? quantizeMatrix(q, N, Kq, randn(rng, N * Kq, 0.5)) : weight(rng, N, Kq, dtype as 'f32' | 'bf16' | 'f16')));
          const tag = `${dtype} M=${M} K=${Kq} N=${Ns.join('/')}`;
          const x = randn(rng, M * Kq);
          const want = ws.map((w) => new Float32Array(M * w.rows));
          for (let i = 0; i < ws.length; i++) await ker.matmul(want[i], x, ws[i], M);
          const views = ws.map((w) => weightView(w));
          const outs = ws.map((w) => inView(randn(rng, M * w.rows)));
          const xv = inView(x);
          if (ws.length === 2) await ker.matmul2(outs[0].v, outs[1].v, xv.v, views[0].w, views[1].w, M);
          else await ker.matmul3(outs[0].v, outs[1].v, outs[2].v, xv.v, views[0].w, views[1].w, views[2].w, M);
          for (let i = 0; i < ws.length; i++) {
            sameBits(outs[i].v, want[i], `matmul${ws.length} ${tag}: output ${i}`);
            assert.ok(outs[i].intact() && views[i].intact(), `matmul${ws.length} ${tag}: wrote outside its views`);
          }
          assert.ok(xv.intact());
        }
      const a = weight(rng, 8, 16, 'f32'),
        b = weight(rng, 8, 24, 'f32');
      const o = new Float32Array(8);
      assert.throws(
        () => be.matmul2(o, o.slice(), new Float32Array(24), a, b, 1),
        /cols must equal|has 24 columns/,
        'matmul2 with weights of different widths',
      );
      assert.throws(
        () => be.matmul3(o, o.slice(), o.slice(), new Float32Array(24), a, a, b, 1),
        /cols must equal|has 24 columns/,
        'matmul3 with weights of different widths',
      );
    });

    it("argmax: the oracle's index on random rows, ties, NaN, signed zeros, every length around the vector width, views", () => {
      const rows: Float32Array[] = [];
      for (const n of [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 2048, 32000]) rows.push(randn(rng, n, 3));
      const tie = new Float32Array(40).fill(1);
      tie[5] = 2;
      tie[29] = 2; // first of equal maxima
      const late = randn(rng, 100);
      late[99] = 50; // in the scalar tail
      const nan = randn(rng, 50);
      nan[7] = Number.NaN; // skipped
      const nan0 = randn(rng, 50);
      nan0[0] = Number.NaN; // index 0, as the scan's start
      const zeros = new Float32Array([-1, -0, 0, -0, -3, -2, -5, -7, -9]); // -0 first: it stays
      const neg = new Float32Array(70).fill(-Number.MAX_VALUE);
      neg[66] = Number.NEGATIVE_INFINITY;
      const inf = randn(rng, 24);
      inf[20] = Number.POSITIVE_INFINITY;
      rows.push(tie, late, nan, nan0, zeros, neg, inf);
      for (const x of rows) {
        const want = ts.argmax(x, x.length);
        const xv = inView(x);
        assert.equal(be.argmax(xv.v, x.length), want, `argmax n=${x.length}`);
        if (x.length > 3) assert.equal(be.argmax(x, 3), ts.argmax(x, 3), `argmax of the first 3 of ${x.length}`);
      }
    });

    it('rmsnorm (with and without rstd) and rmsnormBack (accumulate on/off)', async () => {
      for (const [rows, dim] of [
        [1, 8],
        [3, 64],
        [7, 100],
        [64, 1024],
      ]) {
        const x = randn(rng, rows * dim, 2),
          w = randn(rng, dim);
        const want = new Float32Array(rows * dim),
          rstdW = new Float32Array(rows);
        ts.rmsnorm(want, x, w, rows, dim, 1e-5, rstdW);
        const ov = inView(new Float32Array(rows * dim)),
          rv = inView(new Float32Array(rows)),
          xv = inView(x);
        await ker.rmsnorm(ov.v, xv.v, w, rows, dim, 1e-5, rv.v);
        close(ov.v, want, RTOL, `rmsnorm ${rows}x${dim}`);
        close(rv.v, rstdW, RTOL, `rmsnorm rstd ${rows}x${dim}`);
        const o2 = new Float32Array(rows * dim);
        await ker.rmsnorm(o2, x, w, rows, dim, 1e-5);
        close(o2, want, RTOL, `rmsnorm no rstd ${rows}x${dim}`);
        assert.ok(ov.intact() && rv.intact(), 'rmsnorm wrote outside its views');
        for (const acc of [false, true]) {
          const dy = randn(rng, rows * dim),
            init = randn(rng, rows * dim);
          const wantB = init.slice();
          ts.rmsnormBack(wantB, dy, x, w, rstdW, rows, dim, acc);
          const dv = inView(init);
          await ker.rmsnormBack(dv.v, dy, xv.v, w, rstdW, rows, dim, acc);
          close(dv.v, wantB, RTOL, `rmsnormBack ${rows}x${dim} acc=${acc}`);
          assert.ok(dv.intact(), 'rmsnormBack wrote outside dx');
        }
      }
    });

    it('rope: forward and inverse, per-row positions, views', async () => {
      for (const [B, T, H, hs] of [
        [1, 1, 1, 2],
        [2, 3, 4, 8],
        [3, 5, 2, 64],
        [2, 16, 8, 34],
      ]) {
        const { cos, sin } = ropeTables(64, hs);
        const pos = Int32Array.from({ length: B }, (_, b) => (b * 7) % (64 - T));
        const x = randn(rng, B * T * H * hs);
        for (const inverse of [false, true]) {
          const want = x.slice();
          ts.rope(want, B, T, H, hs, pos, cos, sin, inverse);
          const xv = inView(x),
            pv = inView(pos);
          await ker.rope(xv.v, B, T, H, hs, pv.v, cos, sin, inverse);
          close(xv.v, want, RTOL, `rope B=${B} T=${T} H=${H} hs=${hs} inverse=${inverse}`);
          assert.ok(xv.intact(), 'rope wrote outside x');
        }
      }
    });

    it('siluGate, siluGateBack, add (small and threaded sizes, extreme inputs)', async () => {
      for (const n of [1, 17, 1000, 70001]) {
        const a = randn(rng, n, 3),
          b = randn(rng, n),
          dy = randn(rng, n);
        if (n > 4) {
          a[0] = 60;
          a[1] = -60;
          a[2] = 100;
          a[3] = -100;
        }
        const want = new Float32Array(n);
        ts.siluGate(want, a, b, n);
        const ov = inView(new Float32Array(n)),
          av = inView(a);
        await ker.siluGate(ov.v, av.v, b, n);
        close(ov.v, want, RTOL, `siluGate n=${n}`, 1e-30);
        assert.ok(ov.intact(), 'siluGate wrote outside out');
        const da = new Float32Array(n),
          db = new Float32Array(n);
        ts.siluGateBack(da, db, dy, a, b, n);
        const dav = inView(new Float32Array(n)),
          dbv = inView(new Float32Array(n));
        await ker.siluGateBack(dav.v, dbv.v, dy, av.v, b, n);
        close(dav.v, da, RTOL, `siluGateBack da n=${n}`);
        close(dbv.v, db, RTOL, `siluGateBack db n=${n}`);
        assert.ok(dav.intact() && dbv.intact(), 'siluGateBack wrote outside its views');
        const x = randn(rng, n),
          wantAdd = x.slice();
        ts.add(wantAdd, b, n);
        const xv = inView(x);
        await ker.add(xv.v, b, n);
        sameBits(xv.v, wantAdd, `add n=${n}`);
        assert.ok(xv.intact(), 'add wrote outside x');
      }
    });

    it('toBf16 / fromBf16: bit-identical to weights.ts toBf16 (ties to even, NaN, infinities, tails)', async () => {
      for (const n of [1, 15, 16, 17, 1000]) {
        const x = randn(rng, n);
        const u = new Uint32Array(x.buffer);
        const specials = [0x3f808000, 0x3f818000, 0x7f800000, 0xff800000, 0x7fc00001, 0xff7fffff, 0x80000000, 0x00000001];
        for (let i = 0; i < Math.min(n, specials.length); i++) u[i] = specials[i];
        const want = toBf16(x);
        const got = new Uint16Array(n);
        await ker.toBf16(got, x, n);
        assert.deepEqual(got, want, `native toBf16 n=${n}`);
        const got2 = new Uint16Array(n);
        ts.toBf16(got2, x, n);
        assert.deepEqual(got2, want, `ts toBf16 n=${n}`);
        const back = new Float32Array(n),
          backTs = new Float32Array(n);
        await ker.fromBf16(back, got, n);
        ts.fromBf16(backTs, got, n);
        assert.deepEqual(new Uint32Array(back.buffer), new Uint32Array(backTs.buffer));
        for (let i = 0; i < n; i++) assert.equal(new Uint32Array(back.buffer)[i], (want[i] << 16) >>> 0);
      }
    });

    it('embed: f32, bf16 and f16 tables, first/last ids, views; bad ids throw', async () => {
      for (const dtype of dtypes) {
        const vocab = 50,
          dim = 24;
        const table = weight(rng, vocab, dim, dtype);
        const ids = Int32Array.from([0, 49, 3, 3, 17]);
        const want = new Float32Array(ids.length * dim);
        ts.embed(want, table, ids, ids.length);
        const tv = weightView(table),
          ov = inView(new Float32Array(ids.length * dim)),
          iv = inView(ids);
        await ker.embed(ov.v, tv.w, iv.v, ids.length);
        sameBits(ov.v, want, `embed ${dtype}`);
        assert.ok(ov.intact(), 'embed wrote outside out');
        assert.throws(() => be.embed(ov.v, tv.w, Int32Array.from([50]), 1), RangeError);
        assert.throws(() => be.embed(ov.v, tv.w, Int32Array.from([-1]), 1), RangeError);
      }
    });

    const attnShapes: (AttnShape & { pos: number[] })[] = [
      { B: 1, T: 5, S: 5, H: 4, Hkv: 4, hs: 8, pos: [0] }, // prefill, MHA
      { B: 3, T: 1, S: 12, H: 8, Hkv: 2, hs: 16, pos: [0, 5, 11] }, // decode, GQA 4
      { B: 2, T: 4, S: 16, H: 6, Hkv: 3, hs: 20, pos: [2, 12] }, // chunk, GQA 2, odd hs
      { B: 2, T: 33, S: 40, H: 4, Hkv: 1, hs: 64, pos: [7, 0] }, // MQA, longer rows
    ];

    it('attention: causal over the cache, per-row positions, GQA, decode T=1, views', async () => {
      for (const s of attnShapes) {
        const { B, T, S, H, Hkv, hs } = s;
        const pos = Int32Array.from(s.pos);
        const q = randn(rng, B * T * H * hs),
          kc = randn(rng, B * S * Hkv * hs),
          vc = randn(rng, B * S * Hkv * hs);
        const want = new Float32Array(B * T * H * hs);
        ts.attention(want, q, kc, vc, pos, s);
        const ov = inView(new Float32Array(want.length).fill(NaN));
        const qv = inView(q),
          kv = inView(kc),
          vv = inView(vc),
          posv = inView(pos);
        await ker.attention(ov.v, qv.v, kv.v, vv.v, posv.v, s);
        const tag = JSON.stringify(s);
        close(ov.v, want, RTOL, `attention out ${tag}`);
        assert.ok(ov.intact(), 'attention wrote outside its views');
        const o2 = new Float32Array(want.length);
        await ker.attention(o2, q, kc, vc, pos, s, null);
        close(o2, want, RTOL, `attention with cacheRows null ${tag}`);
      }
    });

    it("block: the bits of its kernels called one by one on this backend, the oracle's values, shapes checked", async () => {
      // [B, T, S, H, Hkv, hs, dim, hidden, dtype]: decode rows in sparse cache rows, a prefill chunk, GQA
      const cases: [number, number, number, number, number, number, number, number, 'f32' | 'bf16'][] = [
        [1, 1, 16, 4, 2, 8, 32, 64, 'f32'],
        [3, 1, 12, 4, 4, 8, 32, 48, 'bf16'],
        [2, 5, 16, 6, 2, 16, 96, 160, 'f32'],
      ];
      for (const [B, T, S, H, Hkv, hs, dim, hidden, dtype] of cases) {
        const tag = `B=${B} T=${T} H=${H}/${Hkv} hs=${hs} ${dtype}`;
        const slots = B + 2;
        const cacheRows = Int32Array.from({ length: B }, (_, b) => (b * 2 + 1) % slots);
        const pos = Int32Array.from({ length: B }, (_, b) => (b * 3) % (S - T + 1));
        const s = { B, T, S, H, Hkv, hs };
        const { cos, sin } = ropeTables(S, hs);
        const M = B * T,
          qDim = H * hs,
          kvDim = Hkv * hs;
        const w = (r: number, c: number): Matrix => weight(rng, r, c, dtype, 0.3);
        const W = { an: randn(rng, dim), fn: randn(rng, dim), wq: w(qDim, dim), wk: w(kvDim, dim), wv: w(kvDim, dim), wo: w(dim, qDim) };
        const F = { w1: w(hidden, dim), w3: w(hidden, dim), w2: w(dim, hidden) };
        const x0 = randn(rng, M * dim),
          kc0 = randn(rng, slots * S * kvDim),
          vc0 = randn(rng, slots * S * kvDim);
        const scratch = () => [M * dim, M * qDim, M * kvDim, M * kvDim, M * qDim, M * hidden, M * hidden, M * hidden].map((n) => new Float32Array(n));
        const run = async (k: AwaitedKernels, one: boolean) => {
          const x = x0.slice(),
            kc = kc0.slice(),
            vc = vc0.slice();
          const [h, q, kk, v, att, a, b, g] = scratch();
          if (one) await k.block(x, W.an, W.wq, W.wk, W.wv, W.wo, W.fn, F.w1, F.w3, F.w2, h, q, kk, v, att, a, b, g, kc, vc, cacheRows, pos, s, cos, sin, 1e-5);
          else {
            // forward.ts's layer, one kernel at a time
            await k.rmsnorm(h, x, W.an, M, dim, 1e-5);
            await k.matmul3(q, kk, v, h, W.wq, W.wk, W.wv, M);
            await k.rope(q, B, T, H, hs, pos, cos, sin, false);
            await k.rope(kk, B, T, Hkv, hs, pos, cos, sin, false);
            for (let r = 0; r < B; r++) {
              kc.set(kk.subarray(r * T * kvDim, (r + 1) * T * kvDim), (cacheRows[r] * S + pos[r]) * kvDim);
              vc.set(v.subarray(r * T * kvDim, (r + 1) * T * kvDim), (cacheRows[r] * S + pos[r]) * kvDim);
            }
            await k.attention(att, q, kc, vc, pos, s, cacheRows);
            await k.matmul(x, att, W.wo, M, true);
            await k.rmsnorm(h, x, W.fn, M, dim, 1e-5);
            await k.matmul2(a, b, h, F.w1, F.w3, M);
            await k.siluGate(g, a, b, M * hidden);
            await k.matmul(x, g, F.w2, M, true);
          }
          return { x, kc, vc };
        };
        const got = await run(ker, true);
        if (!be.memory.device) {
          const steps = await run(ker, false);
          sameBits(got.x, steps.x, `block ${tag}: x`);
          sameBits(got.kc, steps.kc, `block ${tag}: key cache`);
          sameBits(got.vc, steps.vc, `block ${tag}: value cache`);
        }
        const want = await run(kernelsOf(ts), false);
        close(got.x, want.x, dtype === 'bf16' ? RTOL_BF16 : 1e-4, `block ${tag}: x vs the oracle`);
        close(got.kc, want.kc, dtype === 'bf16' ? RTOL_BF16 : 1e-4, `block ${tag}: key cache vs the oracle`);
      }
      const [h, q, kk, v, att, a, b, g] = [32, 32, 16, 16, 32, 64, 64, 64].map((n) => new Float32Array(n));
      const W = weight(rng, 32, 32, 'f32'),
        K = weight(rng, 16, 32, 'f32'),
        bad = weight(rng, 64, 31, 'f32');
      const { cos, sin } = ropeTables(8, 8);
      // this backend and the oracle refuse it with the same words
      for (const k of [be, ts])
        assert.throws(
          () =>
            k.block(
              new Float32Array(32),
              new Float32Array(32),
              W,
              K,
              K,
              W,
              new Float32Array(32),
              weight(rng, 64, 32, 'f32'),
              weight(rng, 64, 32, 'f32'),
              bad,
              h,
              q,
              kk,
              v,
              att,
              a,
              b,
              g,
              new Float32Array(8 * 16),
              new Float32Array(8 * 16),
              Int32Array.of(0),
              Int32Array.of(0),
              { B: 1, T: 1, S: 8, H: 4, Hkv: 2, hs: 8 },
              cos,
              sin,
              1e-5,
            ),
          /block: w2 is 64 x 31, expected 32 x 64/,
          `${k.name} block with a w2 of the wrong width`,
        );
    });

    it('attention with cacheRows: permuted and sparse slot rows read as the identity layout does', async () => {
      for (const s of attnShapes) {
        const { B, T, S, H, Hkv, hs } = s;
        const row = S * Hkv * hs;
        const pos = Int32Array.from(s.pos);
        const q = randn(rng, B * T * H * hs),
          kc = randn(rng, B * row),
          vc = randn(rng, B * row);
        const want = new Float32Array(B * T * H * hs);
        ts.attention(want, q, kc, vc, pos, s); // identity layout: query row b reads cache row b
        const permuted = Int32Array.from({ length: B }, (_, b) => B - 1 - b); // reversed
        const sparse = Int32Array.from({ length: B }, (_, b) => 3 * b + 2); // rows 2, 5, 8, ... of 3B slots
        for (const [kind, rows] of [
          ['permuted', permuted],
          ['sparse', sparse],
        ] as const) {
          const nRows = Math.max(...rows) + 1;
          // the same rows moved to slots rows[b]; every other slot holds NaN (must not be read)
          const kSlots = new Float32Array(nRows * row).fill(NaN),
            vSlots = new Float32Array(nRows * row).fill(NaN);
          for (let b = 0; b < B; b++) {
            kSlots.set(kc.subarray(b * row, (b + 1) * row), rows[b] * row);
            vSlots.set(vc.subarray(b * row, (b + 1) * row), rows[b] * row);
          }
          const tag = `${kind} ${JSON.stringify(s)}`;
          for (const [who, k] of [
            ['oracle', ts],
            [id, be],
          ] as const) {
            const ov = inView(new Float32Array(want.length).fill(NaN)),
              kv = inView(kSlots),
              vv = inView(vSlots),
              rv = inView(rows);
            await kernelsOf(k).attention(ov.v, q, kv.v, vv.v, pos, s, rv.v);
            if (who === 'oracle') sameBits(ov.v, want, `${who} attention cacheRows ${tag}`);
            else close(ov.v, want, RTOL, `${who} attention cacheRows ${tag}`);
            assert.ok(ov.intact(), `${who} attention cacheRows wrote outside out`);
          }
        }
      }
    });

    it('attentionBack: full causal pass, MHA / GQA 2 / GQA 4 / MQA, B > 1', async () => {
      // T 65 and 130: the native backward's causal query blocks (64 rows): one full block plus a
      // row, and a partial last block
      for (const [B, T, H, Hkv, hs] of [
        [1, 1, 2, 2, 8],
        [2, 7, 4, 2, 16],
        [2, 9, 8, 2, 12],
        [1, 20, 4, 1, 32],
        [3, 5, 4, 4, 64],
        [1, 65, 2, 1, 8],
        [2, 130, 4, 2, 16],
      ]) {
        const s: AttnShape = { B, T, S: T, H, Hkv, hs };
        const q = randn(rng, B * T * H * hs),
          k = randn(rng, B * T * Hkv * hs),
          v = randn(rng, B * T * Hkv * hs);
        const dout = randn(rng, q.length);
        const dqW = new Float32Array(q.length),
          dkW = new Float32Array(k.length),
          dvW = new Float32Array(v.length);
        ts.attentionBack(dqW, dkW, dvW, dout, q, k, v, s);
        const dq = inView(new Float32Array(q.length).fill(NaN)),
          dk = inView(new Float32Array(k.length).fill(NaN));
        const dv = inView(new Float32Array(v.length).fill(NaN));
        await ker.attentionBack(dq.v, dk.v, dv.v, inView(dout).v, inView(q).v, inView(k).v, inView(v).v, s);
        const tag = JSON.stringify(s);
        close(dq.v, dqW, RTOL, `attentionBack dq ${tag}`);
        close(dk.v, dkW, RTOL, `attentionBack dk ${tag}`);
        close(dv.v, dvW, RTOL, `attentionBack dv ${tag}`);
        assert.ok(dq.intact() && dk.intact() && dv.intact(), 'attentionBack wrote outside its views');
      }
    });

    const promptShapes: PromptShape[] = [
      { B: 1, T: 1, K: 1, H: 2, Hkv: 2, hs: 8 },
      { B: 2, T: 3, K: 10, H: 4, Hkv: 2, hs: 16 },
      { B: 3, T: 1, K: 10, H: 8, Hkv: 2, hs: 20 },
      { B: 2, T: 6, K: 1, H: 4, Hkv: 1, hs: 64 },
    ];

    it('promptAttention: K = 1 and 10, GQA, probs; zero-gate heads untouched bit for bit', async () => {
      for (const s of promptShapes) {
        const { B, T, K, H, Hkv, hs } = s;
        const q = randn(rng, B * T * H * hs),
          pk = randn(rng, K * Hkv * hs),
          pv = randn(rng, K * Hkv * hs);
        const gate = randn(rng, H, 0.5);
        gate[H - 1] = 0; // a zero-init head
        if (H > 2) gate[0] = -0;
        const init = randn(rng, B * T * H * hs);
        init[(H - 1) * hs] = -0; // signed zero and NaN in a zero-gate head survive untouched
        init[(H - 1) * hs + 1] = NaN;
        const want = init.slice(),
          probsW = new Float32Array(B * H * T * K);
        ts.promptAttention(want, q, pk, pv, gate, s, probsW);
        const ov = inView(init),
          pr = inView(new Float32Array(probsW.length));
        await ker.promptAttention(ov.v, inView(q).v, inView(pk).v, inView(pv).v, inView(gate).v, s, pr.v);
        const tag = JSON.stringify(s);
        close(ov.v, want, RTOL, `promptAttention out ${tag}`);
        close(pr.v, probsW, RTOL, `promptAttention probs ${tag}`);
        assert.ok(ov.intact() && pr.intact(), 'promptAttention wrote outside its views');
        for (let b = 0; b < B; b++)
          for (let t = 0; t < T; t++)
            for (let h = 0; h < H; h++) {
              if (gate[h] !== 0) continue;
              const o = ((b * T + t) * H + h) * hs;
              sameBits(ov.v.subarray(o, o + hs), init.subarray(o, o + hs), `zero-gate head ${h} ${tag}`);
            }
        const o2 = init.slice();
        await ker.promptAttention(o2, q, pk, pv, gate, s);
        close(o2, want, RTOL, `promptAttention without probs ${tag}`);
      }
    });

    it('promptAttentionBack: dq null / given, accumulating dpk, dpv, dgate', async () => {
      for (const s of promptShapes)
        for (const withDq of [true, false]) {
          const { B, T, K, H, Hkv, hs } = s;
          const q = randn(rng, B * T * H * hs),
            pk = randn(rng, K * Hkv * hs),
            pv = randn(rng, K * Hkv * hs);
          const gate = randn(rng, H, 0.5);
          gate[0] = 0;
          const out = new Float32Array(q.length),
            probs = new Float32Array(B * H * T * K);
          ts.promptAttention(out, q, pk, pv, gate, s, probs);
          const dout = randn(rng, q.length);
          const dq0 = randn(rng, q.length),
            dpk0 = randn(rng, pk.length),
            dpv0 = randn(rng, pv.length),
            dg0 = randn(rng, H);
          const dqW = withDq ? dq0.slice() : null,
            dpkW = dpk0.slice(),
            dpvW = dpv0.slice(),
            dgW = dg0.slice();
          ts.promptAttentionBack(dqW, dpkW, dpvW, dgW, dout, q, pk, pv, gate, probs, s);
          const dq = inView(dq0),
            dpk = inView(dpk0),
            dpv = inView(dpv0),
            dg = inView(dg0);
          await ker.promptAttentionBack(
            withDq ? dq.v : null,
            dpk.v,
            dpv.v,
            dg.v,
            inView(dout).v,
            inView(q).v,
            inView(pk).v,
            inView(pv).v,
            inView(gate).v,
            inView(probs).v,
            s,
          );
          const tag = `${JSON.stringify(s)} dq=${withDq}`;
          if (dqW) close(dq.v, dqW, RTOL, `promptAttentionBack dq ${tag}`);
          else sameBits(dq.v, dq0, 'dq untouched when null is passed');
          close(dpk.v, dpkW, RTOL, `promptAttentionBack dpk ${tag}`);
          close(dpv.v, dpvW, RTOL, `promptAttentionBack dpv ${tag}`);
          close(dg.v, dgW, RTOL, `promptAttentionBack dgate ${tag}`);
          assert.ok(dq.intact() && dpk.intact() && dpv.intact() && dg.intact(), 'promptAttentionBack wrote outside its views');
        }
    });

    it('crossEntropy: ignored rows, separate and aliased dlogits, scale, row losses, threaded sizes', async () => {
      for (const [rows, V] of [
        [1, 2],
        [5, 37],
        [64, 1000],
        [3, 32000],
      ]) {
        const logits = randn(rng, rows * V, 3);
        const targets = Int32Array.from({ length: rows }, (_, r) => (r === 1 ? -1 : (r * 7919) % V));
        const scale = 0.5;
        const dW = new Float32Array(rows * V),
          rowW = new Float32Array(rows);
        const lossW = ts.crossEntropy(logits, targets, rows, V, dW, scale, rowW);
        assert.ok(Math.abs(rowW.reduce((a, b) => a + b, 0) - lossW) <= 1e-5 * Math.max(1, lossW), 'oracle row losses sum to its loss');
        const lossClose = (got: number, what: string): void =>
          assert.ok(Math.abs(got - lossW) <= 1e-5 * Math.max(1, Math.abs(lossW)), `crossEntropy ${what} ${rows}x${V}: ${got} vs ${lossW}`);
        // a device backend only queues the kernel (it returns NaN): its loss is the row losses' sum
        const summed = async (r: Promise<number>, ls: Float32Array): Promise<number> => {
          const v = await r;
          return be.memory.device ? ls.reduce((a, b) => a + b, 0) : v;
        };
        const lv = inView(logits),
          dv = inView(new Float32Array(rows * V).fill(NaN)),
          rl = inView(new Float32Array(rows).fill(NaN));
        lossClose(await summed(ker.crossEntropy(lv.v, inView(targets).v, rows, V, dv.v, scale, rl.v), rl.v), 'loss');
        close(rl.v, rowW, RTOL, `crossEntropy row losses ${rows}x${V}`);
        close(dv.v, dW, RTOL, `crossEntropy dlogits ${rows}x${V}`);
        assert.ok(dv.intact() && lv.intact() && rl.intact(), 'crossEntropy wrote outside its views');
        const r2 = new Float32Array(rows);
        lossClose(await summed(ker.crossEntropy(logits, targets, rows, V, null, scale, r2), r2), 'without dlogits');
        if (!be.memory.device) lossClose(await ker.crossEntropy(logits, targets, rows, V, null, scale), 'without row losses');
        const alias = logits.slice(),
          r3 = new Float32Array(rows);
        lossClose(await summed(ker.crossEntropy(alias, targets, rows, V, alias, scale, r3), r3), 'aliased');
        close(alias, dW, RTOL, `crossEntropy aliased dlogits ${rows}x${V}`);
      }
    });

    it('adamw: steps 1 and 10, weight decay on/off, threaded sizes', async () => {
      for (const n of [1, 1000, 70001])
        for (const [step, wd] of [
          [1, 0],
          [10, 0.1],
        ]) {
          const p = randn(rng, n),
            g = randn(rng, n, 0.1),
            m = randn(rng, n, 0.01),
            v = new Float32Array(n);
          for (let i = 0; i < n; i++) v[i] = Math.abs(rng.normal()) * 1e-3;
          const o = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: wd, step };
          const [pW, mW, vW] = [p.slice(), m.slice(), v.slice()];
          ts.adamw(pW, g, mW, vW, n, o);
          const pv = inView(p),
            mv = inView(m),
            vv = inView(v);
          await ker.adamw(pv.v, inView(g).v, mv.v, vv.v, n, o);
          close(pv.v, pW, RTOL, `adamw p n=${n} step=${step}`);
          close(mv.v, mW, RTOL, `adamw m n=${n} step=${step}`);
          close(vv.v, vW, RTOL, `adamw v n=${n} step=${step}`);
          // The update itself (p - p0) must match too, not just p.
          const dN = pv.v.map((x, i) => x - p[i]),
            dW = pW.map((x, i) => x - p[i]);
          close(dN, dW, 1e-4, `adamw update n=${n} step=${step}`);
          assert.ok(pv.intact() && mv.intact() && vv.intact(), 'adamw wrote outside its views');
        }
    });

    it('is deterministic for a fixed thread count and agrees across thread counts', async () => {
      const one = load(1),
        three = load(3);
      const M = 96,
        N = 200,
        K = 320;
      for (const dtype of ['f32', 'bf16'] as const) {
        const w = weight(rng, N, K, dtype),
          x = randn(rng, M * K);
        const a = new Float32Array(M * N),
          b = new Float32Array(M * N),
          c = new Float32Array(M * N);
        await ker.matmul(a, x, w, M);
        await ker.matmul(b, x, w, M);
        sameBits(a, b, `matmul ${dtype} repeat`);
        await kernelsOf(one).matmul(c, x, w, M);
        close(c, a, dtype === 'f32' ? RTOL : RTOL_BF16, `matmul ${dtype} 1 vs 2 threads`);
      }
      const s: AttnShape = { B: 2, T: 24, S: 24, H: 8, Hkv: 2, hs: 32 };
      const q = randn(rng, 2 * 24 * 8 * 32),
        k = randn(rng, 2 * 24 * 2 * 32),
        v = randn(rng, k.length);
      const dout = randn(rng, q.length);
      const run = async (b: Backend) => {
        const dq = new Float32Array(q.length),
          dk = new Float32Array(k.length),
          dv = new Float32Array(v.length);
        await kernelsOf(b).attentionBack(dq, dk, dv, dout, q, k, v, s);
        return [dq, dk, dv];
      };
      const r2a = await run(be),
        r2b = await run(be),
        r1 = await run(one),
        r3 = await run(three);
      for (let i = 0; i < 3; i++) {
        sameBits(r2a[i], r2b[i], `attentionBack repeat ${i}`);
        sameBits(r1[i], r2a[i], `attentionBack 1 vs 2 threads ${i}`); // partitioned by output rows: same bits
        sameBits(r3[i], r2a[i], `attentionBack 3 vs 2 threads ${i}`);
      }
      const logits = randn(rng, 64 * 500),
        targets = Int32Array.from({ length: 64 }, (_, i) => i * 7);
      const l2 = new Float32Array(64),
        l1 = new Float32Array(64);
      const sum2 = await ker.crossEntropy(logits, targets, 64, 500, null, 1, l2);
      const sum1 = await kernelsOf(one).crossEntropy(logits, targets, 64, 500, null, 1, l1);
      sameBits(l2, l1, 'crossEntropy row losses 1 vs 2 threads');
      if (!be.memory.device) assert.equal(sum2, sum1, 'crossEntropy 1 vs 2 threads');
    });

    it('encoder kernels: layerNorm (+ statistics), gelu (erf, tanh, quick), biasAdd, encoderAttention (MHA/GQA, T > 64), patches', {
      skip: lacks('encoder'),
    }, async () => {
      for (const [rows, dim] of [
        [1, 1],
        [3, 7],
        [5, 48],
        [257, 130],
        [300, 1024],
      ] as const) {
        const x = randn(rng, rows * dim, 2),
          w = randn(rng, dim),
          b = randn(rng, dim);
        x[0] += 50; // a large common offset: the two-pass variance must not cancel
        const want = new Float32Array(rows * dim),
          wm = new Float32Array(rows),
          wr = new Float32Array(rows);
        ts.layerNorm(want, x, w, b, rows, dim, 1e-5, wm, wr);
        const ov = inView(new Float32Array(rows * dim)),
          mv = inView(new Float32Array(rows)),
          rv = inView(new Float32Array(rows));
        await ker.layerNorm(ov.v, x, w, b, rows, dim, 1e-5, mv.v, rv.v);
        close(ov.v, want, RTOL, `layerNorm ${rows}x${dim}`);
        close(mv.v, wm, RTOL, `layerNorm mean ${rows}x${dim}`);
        close(rv.v, wr, RTOL, `layerNorm rstd ${rows}x${dim}`);
        assert.ok(ov.intact() && mv.intact() && rv.intact(), 'layerNorm wrote outside its views');
        const out2 = new Float32Array(rows * dim);
        await ker.layerNorm(out2, x, w, b, rows, dim, 1e-5);
        sameBits(out2, ov.v, `layerNorm without statistics ${rows}x${dim}`);
        const xb = x.slice(),
          wantB = x.slice();
        ts.biasAdd(wantB, b, rows, dim);
        const xbv = inView(xb);
        await ker.biasAdd(xbv.v, b, rows, dim);
        sameBits(xbv.v, wantB, `biasAdd ${rows}x${dim}`);
        assert.ok(xbv.intact(), 'biasAdd wrote outside x');
      }
      for (const n of [1, 7, 33, 1000, 70001])
        for (const kind of [GELU.erf, GELU.tanh, GELU.quick]) {
          const x = randn(rng, n, 3);
          if (n > 4) [x[0], x[1], x[2], x[3]] = [30, -30, 0, -1e-30];
          const want = new Float32Array(n);
          ts.gelu(want, x, n, kind);
          const ov = inView(new Float32Array(n));
          await ker.gelu(ov.v, x, n, kind);
          close(ov.v, want, RTOL, `gelu kind ${kind} n=${n}`, 2e-7);
          assert.ok(ov.intact(), 'gelu wrote outside out');
          const inPlace = x.slice();
          await ker.gelu(inPlace, inPlace, n, kind);
          sameBits(inPlace, ov.v, `gelu in place kind ${kind}`);
        }
      for (const s of [
        { B: 1, T: 1, S: 1, H: 1, Hkv: 1, hs: 4 },
        { B: 2, T: 17, S: 17, H: 4, Hkv: 4, hs: 12 },
        { B: 2, T: 50, S: 50, H: 4, Hkv: 2, hs: 16 },
        { B: 1, T: 197, S: 197, H: 3, Hkv: 3, hs: 64 },
      ] satisfies AttnShape[]) {
        const q = randn(rng, s.B * s.T * s.H * s.hs),
          k = randn(rng, s.B * s.T * s.Hkv * s.hs),
          v = randn(rng, k.length);
        const want = new Float32Array(q.length);
        ts.encoderAttention(want, q, k, v, s);
        const ov = inView(new Float32Array(q.length));
        await ker.encoderAttention(ov.v, q, k, v, s);
        close(ov.v, want, RTOL, `encoderAttention B${s.B} T${s.T} H${s.H}/${s.Hkv} hs${s.hs}`);
        assert.ok(ov.intact(), 'encoderAttention wrote outside out');
      }
      for (const [B, C, size, p] of [
        [1, 1, 2, 1],
        [2, 3, 32, 8],
        [1, 3, 28, 14],
      ] as const) {
        const px = randn(rng, B * C * size * size);
        const want = new Float32Array(px.length);
        ts.patches(want, px, B, C, size, p);
        const ov = inView(new Float32Array(px.length));
        await ker.patches(ov.v, px, B, C, size, p);
        sameBits(ov.v, want, `patches ${B}x${C}x${size} p${p}`);
        assert.ok(ov.intact(), 'patches wrote outside out');
      }
      assert.throws(() => be.patches(new Float32Array(27), new Float32Array(27), 1, 3, 3, 2), RangeError); // 3 is not a multiple of 2
      assert.throws(() => be.gelu(new Float32Array(4), new Float32Array(4), 4, 3 as never), RangeError);
      assert.throws(() => be.layerNorm(new Float32Array(8), new Float32Array(8), new Float32Array(3), new Float32Array(4), 2, 4, 1e-5), RangeError);
    });

    it('encoder backward and prefix attention: layerNormBack, geluBack, prefixAttention(+Back) with prompts, padding masks, causal order, GQA, K = 0', {
      skip: lacks('encoder'),
    }, () => {
      for (const [rows, dim] of [
        [1, 1],
        [3, 7],
        [257, 130],
      ] as const) {
        const x = randn(rng, rows * dim, 2),
          w = randn(rng, dim),
          b = randn(rng, dim),
          dy = randn(rng, rows * dim);
        const mean = new Float32Array(rows),
          rstd = new Float32Array(rows);
        ts.layerNorm(new Float32Array(rows * dim), x, w, b, rows, dim, 1e-5, mean, rstd);
        for (const acc of [false, true]) {
          const init = randn(rng, rows * dim),
            want = init.slice();
          ts.layerNormBack(want, dy, x, w, mean, rstd, rows, dim, acc);
          const dv = inView(init);
          be.layerNormBack(dv.v, dy, x, w, mean, rstd, rows, dim, acc);
          // the terms are rstd * dy * w in size; for dim 1 they cancel to 0 exactly, up to their rounding
          const scale = Math.max(...rstd) * Math.max(...dy.map(Math.abs)) * Math.max(...w.map(Math.abs));
          close(dv.v, want, RTOL, `layerNormBack ${rows}x${dim} acc=${acc}`, 1e-6 * scale);
          assert.ok(dv.intact(), 'layerNormBack wrote outside dx');
        }
      }
      for (const n of [1, 7, 33, 70001])
        for (const kind of [GELU.erf, GELU.tanh, GELU.quick]) {
          const x = randn(rng, n, 3),
            dy = randn(rng, n);
          if (n > 4) [x[0], x[1], x[2], x[3]] = [30, -30, 0, -1e-30];
          const want = new Float32Array(n);
          ts.geluBack(want, dy, x, n, kind);
          const dv = inView(new Float32Array(n));
          be.geluBack(dv.v, dy, x, n, kind);
          close(dv.v, want, RTOL, `geluBack kind ${kind} n=${n}`, 2e-7);
          assert.ok(dv.intact(), 'geluBack wrote outside dx');
          const alias = dy.slice();
          be.geluBack(alias, alias, x, n, kind);
          sameBits(alias, dv.v, `geluBack in place kind ${kind}`);
        }
      for (const [s, masked, causal] of [
        [{ B: 1, T: 1, K: 0, H: 1, Hkv: 1, hs: 4 }, false, false],
        [{ B: 2, T: 17, K: 4, H: 4, Hkv: 4, hs: 12 }, true, false],
        [{ B: 2, T: 70, K: 0, H: 4, Hkv: 2, hs: 16 }, true, false],
        [{ B: 3, T: 9, K: 10, H: 8, Hkv: 2, hs: 8 }, true, true],
        [{ B: 1, T: 130, K: 3, H: 2, Hkv: 1, hs: 64 }, false, true],
      ] satisfies [PromptShape, boolean, boolean][]) {
        const { B, T, K, H, hs } = s;
        const { q, k, v, pk, pv } = prefixInputs(rng, s),
          dout = randn(rng, q.length);
        let mask: Int32Array | null = null;
        if (masked) {
          mask = new Int32Array(B * T).fill(1);
          for (let b = 1; b < B; b++) mask.fill(0, b * T + Math.max(1, T - 5 * b), (b + 1) * T); // right padding
          if (B > 2) mask.fill(0, 2 * T, 2 * T + 2); // and left padding
          if (K === 0 && B > 1) mask.fill(0, T, 2 * T); // K = 0: a row with no visible key gets zeros
        }
        const tag = `${JSON.stringify(s)} mask=${masked} causal=${causal}`;
        const want = new Float32Array(q.length);
        ts.prefixAttention(want, q, k, v, pk, pv, s, mask, causal);
        const ov = inView(new Float32Array(q.length));
        be.prefixAttention(ov.v, inView(q).v, inView(k).v, inView(v).v, inView(pk).v, inView(pv).v, s, mask ? inView(mask).v : null, causal);
        close(ov.v, want, RTOL, `prefixAttention ${tag}`);
        assert.ok(ov.intact(), 'prefixAttention wrote outside out');
        const g = (n: number) => new Float32Array(n);
        const wq = g(q.length),
          wk = g(k.length),
          wv = g(v.length),
          wpk = randn(rng, pk.length),
          wpv = randn(rng, pv.length);
        const gpk = inView(wpk.slice()),
          gpv = inView(wpv.slice()),
          gq = inView(randn(rng, q.length)),
          gk = inView(randn(rng, k.length)),
          gv = inView(randn(rng, v.length));
        ts.prefixAttentionBack(wq, wk, wv, wpk, wpv, dout, q, k, v, pk, pv, s, mask, causal);
        be.prefixAttentionBack(gq.v, gk.v, gv.v, gpk.v, gpv.v, inView(dout).v, q, k, v, pk, pv, s, mask, causal);
        close(gq.v, wq, RTOL, `prefixAttentionBack dq ${tag}`);
        close(gk.v, wk, RTOL, `prefixAttentionBack dk ${tag}`);
        close(gv.v, wv, RTOL, `prefixAttentionBack dv ${tag}`);
        close(gpk.v, wpk, RTOL, `prefixAttentionBack dpk (accumulated) ${tag}`);
        close(gpv.v, wpv, RTOL, `prefixAttentionBack dpv (accumulated) ${tag}`);
        assert.ok(gq.intact() && gk.intact() && gv.intact() && gpk.intact() && gpv.intact(), 'prefixAttentionBack wrote outside its views');
        if (mask && K === 0 && B > 1) for (let i = T * H * hs; i < 2 * T * H * hs; i++) assert.equal(ov.v[i], 0, 'a row whose every key is masked gets zeros');
      }
      // K = 0 and no mask is encoderAttention (the CLIP tower's kernel): the same bits
      const s = { B: 2, T: 50, K: 0, H: 4, Hkv: 2, hs: 16 };
      const q = randn(rng, 2 * 50 * 64),
        k = randn(rng, 2 * 50 * 32),
        v = randn(rng, k.length);
      const a = new Float32Array(q.length),
        c = new Float32Array(q.length);
      be.prefixAttention(a, q, k, v, new Float32Array(0), new Float32Array(0), s, null, false);
      be.encoderAttention(c, q, k, v, { B: 2, T: 50, S: 50, H: 4, Hkv: 2, hs: 16 });
      sameBits(a, c, 'prefixAttention K = 0 vs encoderAttention');
      assert.throws(
        () =>
          be.promptAttention(new Float32Array(8), new Float32Array(8), new Float32Array(0), new Float32Array(0), new Float32Array(2), {
            B: 1,
            T: 1,
            K: 0,
            H: 2,
            Hkv: 2,
            hs: 4,
          }),
        RangeError,
      );
    });

    it('rejects buffers too small for the shape (RangeError, no memory access)', async () => {
      const w: Matrix = { dtype: 'f32', rows: 8, cols: 8, data: new Float32Array(64) };
      assert.throws(() => be.matmul(new Float32Array(7), new Float32Array(8), w, 1), RangeError);
      assert.throws(() => be.matmul(new Float32Array(8), new Float32Array(7), w, 1), RangeError);
      assert.throws(() => be.matmul(new Float32Array(8), new Float32Array(8), { ...w, data: new Float32Array(63) }, 1), RangeError);
      const s: AttnShape = { B: 1, T: 2, S: 4, H: 2, Hkv: 1, hs: 4 };
      const q = new Float32Array(16),
        kv = new Float32Array(16),
        out = new Float32Array(16);
      assert.throws(() => be.attention(out, q, kv, kv, Int32Array.from([3]), s), RangeError); // pos + T > S
      assert.throws(() => be.attention(out, q, kv, kv, Int32Array.from([0]), { ...s, Hkv: 3 }), RangeError);
      // cacheRows: a row beyond the caches (2 rows of S * Hkv * hs = 16 needed, 16 given for 1), a negative row
      assert.throws(() => be.attention(out, q, kv, kv, Int32Array.from([0]), s, Int32Array.from([1])), RangeError);
      assert.throws(() => be.attention(out, q, kv, kv, Int32Array.from([0]), s, Int32Array.from([-1])), RangeError);
      const { cos, sin } = ropeTables(4, 4);
      assert.throws(() => be.rope(q, 1, 2, 2, 4, Int32Array.from([3]), cos, sin, false), RangeError);
      assert.throws(() => be.crossEntropy(new Float32Array(4), Int32Array.from([4]), 1, 4, null, 1), RangeError);
    });
  });
}

// ------------------------------------------------------------------ native feature paths vs the oracle

describe('native feature paths match the TypeScript oracle', { skip: skipNative }, () => {
  const rng = new Rng(4321);
  const native = nat.backend as NonNullable<typeof nat.backend>;
  // The bf16 GEMM engines: AMX tiles, AVX512_BF16 (vdpbf16ps), and widening to fp32 panels. A CPU
  // has some of them; this runs each one it has, switching the others off.
  const engines = (): { name: string; amx: boolean; avx512bf16: boolean }[] => {
    const info = nativeInfo();
    const out = [{ name: 'widen', amx: false, avx512bf16: false }];
    if (info?.cpuAvx512bf16) out.push({ name: 'avx512bf16', amx: false, avx512bf16: true });
    if (info?.amx) out.push({ name: 'amx', amx: true, avx512bf16: false });
    return out;
  };
  const withEngine = (e: { amx: boolean; avx512bf16: boolean }, fn: () => void): void => {
    const had = nativeInfo();
    setNativeFeature('amx', e.amx);
    setNativeFeature('avx512bf16', e.avx512bf16);
    try {
      fn();
    } finally {
      setNativeFeature('amx', had?.amx ?? false);
      setNativeFeature('avx512bf16', had?.avx512bf16 ?? false);
    }
  };

  it('quantized weights without the 8-bit dot-product instructions (AVX512_VNNI, dotprod) match', {
    skip: !nativeInfo()?.int8Dot && 'int8Dot not in use',
  }, async () => {
    setNativeFeature('int8Dot', false);
    try {
      await checkQuantized(kernelsOf(native), rng);
    } finally {
      setNativeFeature('int8Dot', true);
    }
  });

  it('bf16 matmul on every GEMM engine the CPU has (AMX, AVX512_BF16, widening) matches, accumulate on/off', () => {
    // M not a multiple of 8 or 16, N not a multiple of 32, depth beyond one packed block (2048)
    const shapes: [number, number, number][] = [
      [9, 70, 100],
      [20, 30, 1100],
      [64, 300, 256],
      [33, 40, 1000],
      [21, 45, 2090],
    ];
    for (const e of engines())
      withEngine(e, () => {
        for (const [M, N, K] of shapes)
          for (const acc of [false, true]) {
            const tag = `${e.name} ${M}x${N}x${K} acc=${acc}`;
            const w = weight(rng, N, K, 'bf16');
            const x = randn(rng, M * K),
              dy = randn(rng, M * N);
            const want = randn(rng, M * N),
              got = want.slice();
            ts.matmul(want, x, w, M, acc);
            native.matmul(got, x, w, M, acc);
            close(got, want, RTOL_BF16, `matmul bf16 ${tag}`);
            const wantB = randn(rng, M * K),
              gotB = wantB.slice();
            ts.matmulBack(wantB, dy, w, M, acc);
            native.matmulBack(gotB, dy, w, M, acc);
            close(gotB, wantB, RTOL_BF16, `matmulBack bf16 ${tag}`);
          }
      });
  });

  it('bf16Split keeps activations fp32: matches the exact product with the widened weight (every engine)', () => {
    setNativeFeature('bf16Split', true);
    try {
      for (const e of engines())
        withEngine(e, () => {
          for (const [M, N, K] of [
            [1, 37, 70],
            [9, 70, 100],
            [20, 30, 1100],
            [64, 300, 256],
          ] as [number, number, number][]) {
            const w = weight(rng, N, K, 'bf16'),
              wf: Matrix = { dtype: 'f32', rows: N, cols: K, data: matrixToF32(w) };
            const x = randn(rng, M * K),
              dy = randn(rng, M * N);
            const want = new Float32Array(M * N),
              got = new Float32Array(M * N);
            ts.matmul(want, x, wf, M);
            native.matmul(got, x, w, M);
            close(got, want, RTOL_BF16, `bf16Split matmul ${e.name} ${M}x${N}x${K}`);
            const wantB = new Float32Array(M * K),
              gotB = new Float32Array(M * K);
            ts.matmulBack(wantB, dy, wf, M);
            native.matmulBack(gotB, dy, w, M);
            close(gotB, wantB, RTOL_BF16, `bf16Split matmulBack ${e.name} ${M}x${N}x${K}`);
          }
        });
    } finally {
      setNativeFeature('bf16Split', false);
    }
  });

  it('decode products over weights too large for L2 (shared out by work stealing) match the oracle and the fixed split bit for bit', () => {
    // 8.6 MB of f32 (4.3 MB of bf16) per weight: over 2 MB per thread with two threads
    const N = 2100,
      K = 1030;
    for (const dtype of ['f32', 'bf16'] as const) {
      const ws = [weight(rng, N, K, dtype), weight(rng, 300, K, dtype), weight(rng, N, K, dtype)];
      const x = randn(rng, K);
      const run = (stealing: boolean): Float32Array[] => {
        setNativeFeature('decodeStealing', stealing);
        try {
          const one = new Float32Array(N),
            outs = [new Float32Array(N), new Float32Array(300), new Float32Array(N)];
          native.matmul(one, x, ws[0], 1);
          native.matmul3(outs[0], outs[1], outs[2], x, ws[0], ws[1], ws[2], 1);
          return [one, ...outs];
        } finally {
          setNativeFeature('decodeStealing', true);
        }
      };
      const stolen = run(true),
        fixed = run(false);
      const want = new Float32Array(N);
      ts.matmul(want, x, ws[0], 1);
      close(stolen[0], want, dtype === 'bf16' ? RTOL_BF16 : RTOL, `decode matmul ${dtype} ${N}x${K}`);
      stolen.forEach((o, i) => sameBits(o, fixed[i], `decode ${dtype} output ${i}: stealing vs fixed split`));
      sameBits(stolen[1], stolen[0], `decode ${dtype}: matmul3's first output vs matmul`);
    }
  });

  it('decode attention over blocks of positions for rows with large caches: the oracle, the same bits on 1 and 3 threads and alone or in a batch, the head-by-head bits for small caches, every SIMD target', () => {
    // decode rows (T = 1) at sparse cache rows and uneven positions; GQA and MHA; head sizes with a
    // lane tail. A row whose keys and values are over 512 KB goes by blocks of max(32 positions,
    // 32 KB of keys): rows 0 and 2 of the first shape span 10 and 5 blocks, its row 1 (position 0)
    // goes head by head, as do both rows of the last shape
    const shapes: (AttnShape & { pos: number[]; rows: number[] })[] = [
      { B: 3, T: 1, S: 400, H: 12, Hkv: 12, hs: 64, pos: [299, 0, 150], rows: [4, 0, 2] },
      { B: 2, T: 1, S: 2000, H: 8, Hkv: 2, hs: 20, pos: [17, 1900], rows: [1, 3] },
      { B: 1, T: 1, S: 2100, H: 5, Hkv: 1, hs: 36, pos: [2000], rows: [0] },
      { B: 2, T: 1, S: 600, H: 4, Hkv: 2, hs: 8, pos: [599, 5], rows: [1, 0] },
    ];
    const one = loadNativeBackend(1).backend!,
      three = loadNativeBackend(3).backend!;
    for (const simd of nativeInfo()?.simdTargets ?? [])
      for (const s of shapes) {
        assert.ok(setNativeSimd(simd));
        try {
          const { B, S, H, Hkv, hs } = s;
          const nRows = Math.max(...s.rows) + 1;
          const q = randn(rng, B * H * hs),
            kc = randn(rng, nRows * S * Hkv * hs),
            vc = randn(rng, nRows * S * Hkv * hs);
          const pos = Int32Array.from(s.pos),
            rows = Int32Array.from(s.rows);
          const run = (be: typeof native, blocks: boolean): Float32Array => {
            setNativeFeature('attnPositionBlocks', blocks);
            try {
              const out = new Float32Array(B * H * hs);
              be.attention(out, q, kc, vc, pos, s, rows);
              return out;
            } finally {
              setNativeFeature('attnPositionBlocks', true);
            }
          };
          const tag = `${simd} ${JSON.stringify(s)}`;
          const got = run(three, true),
            byHead = run(three, false);
          sameBits(run(one, true), got, `decode attention blocks, 1 vs 3 threads ${tag}`);
          const want = new Float32Array(B * H * hs);
          ts.attention(want, q, kc, vc, pos, s, rows);
          close(got, want, RTOL, `decode attention over blocks ${tag}`);
          close(byHead, want, RTOL, `decode attention head by head ${tag}`);
          // the rule: more keys than a block, and keys + values over 512 KB
          const blockPositions = Math.max(32, Math.floor((32 << 10) / (Hkv * hs * 4)));
          const r = (x: Float32Array, b: number) => x.subarray(b * H * hs, (b + 1) * H * hs);
          for (let b = 0; b < B; b++) {
            const n = s.pos[b] + 1;
            if (n > blockPositions && n * Hkv * hs * 8 > 512 << 10)
              // blocks merged through their sums round differently: the row did take the block path
              assert.ok(
                r(got, b).some((v, i) => v !== r(byHead, b)[i]),
                `row ${b} (${n} keys) went by blocks ${tag}`,
              );
            else sameBits(r(got, b), r(byHead, b), `row ${b} (a small cache): head by head ${tag}`);
            // the row alone, as a batch of one: the same bits
            const alone = new Float32Array(H * hs);
            three.attention(alone, q.subarray(b * H * hs, (b + 1) * H * hs), kc, vc, pos.subarray(b, b + 1), { ...s, B: 1 }, rows.subarray(b, b + 1));
            sameBits(alone, r(got, b), `row ${b} alone vs in its batch ${tag}`);
          }
        } finally {
          setNativeSimd('');
        }
      }
  });

  it('matmul of a few rows (decode batches) does not depend on how many rows are in the batch, on every SIMD target', () => {
    for (const simd of nativeInfo()?.simdTargets ?? [])
      for (const dtype of ['f32', 'bf16'] as const) {
        assert.ok(setNativeSimd(simd));
        try {
          const N = 70,
            K = 600,
            M = 15; // the dot-product kernel's range (AMX takes over at 16 rows)
          const w = weight(rng, N, K, dtype),
            x = randn(rng, M * K);
          const all = new Float32Array(M * N);
          native.matmul(all, x, w, M);
          for (const m of [1, 2, 3, 5, 8, 15]) {
            const part = new Float32Array(m * N);
            native.matmul(part, x.subarray(0, m * K), w, m);
            sameBits(part, all.subarray(0, m * N), `${simd} ${dtype}: ${m} rows vs ${M}`);
          }
          const one = new Float32Array(N);
          native.matmul(one, x.subarray(7 * K, 8 * K), w, 1);
          sameBits(one, all.subarray(7 * N, 8 * N), `${simd} ${dtype}: row 7 alone vs in the batch`);
        } finally {
          setNativeSimd('');
        }
      }
  });

  it('batchInvariant mode: a row computes the same bits alone or inside any batch', () => {
    const was = nativeInfo()?.batchInvariant ?? false;
    setNativeFeature('batchInvariant', true);
    try {
      for (const dtype of ['f32', 'bf16'] as const) {
        const N = 40,
          K = 1100,
          M = 50; // several KC pieces and a ragged tail, M beyond the dot range
        const w = weight(rng, N, K, dtype),
          x = randn(rng, M * K);
        const all = new Float32Array(M * N),
          want = new Float32Array(M * N);
        native.matmul(all, x, w, M);
        ts.matmul(want, x, w, M);
        close(all, want, RTOL, `batchInvariant matmul ${dtype}`);
        for (const r of [0, 17, 49]) {
          const one = new Float32Array(N);
          native.matmul(one, x.subarray(r * K, (r + 1) * K), w, 1);
          sameBits(one, all.subarray(r * N, (r + 1) * N), `batchInvariant ${dtype}: row ${r} alone vs in ${M}`);
        }
      }
    } finally {
      setNativeFeature('batchInvariant', was);
    }
  });

  // gemm is native-only (bench's GEMM peak), so its reference is the textbook triple loop here.
  const refGemm: Gemm = (tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) => {
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += (tA ? A[k * lda + i] : A[i * lda + k]) * (tB ? B[j * ldb + k] : B[k * ldb + j]);
        C[i * ldc + j] = beta === 0 ? alpha * s : alpha * s + beta * C[i * ldc + j];
      }
  };

  it('gemm: all transposes, alpha/beta, leading dims, beta = 0 ignores NaN in C', () => {
    for (const [M, N, K] of [
      [1, 1, 1],
      [4, 3, 0],
      [3, 5, 7],
      [17, 33, 20],
      [64, 80, 96],
    ] as [number, number, number][])
      for (const tA of [false, true])
        for (const tB of [false, true])
          for (const [alpha, beta] of [
            [1, 0],
            [0.5, 1],
            [-1.5, 0.25],
          ]) {
            const lda = (tA ? M : K) + 2,
              ldb = (tB ? K : N) + 1,
              ldc = N + 3;
            const A = randn(rng, (tA ? K : M) * lda),
              B = randn(rng, (tB ? N : K) * ldb);
            const C0 = randn(rng, M * ldc);
            if (beta === 0) C0.fill(NaN);
            const want = C0.slice();
            refGemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, want, ldc);
            const av = inView(A),
              bv = inView(B),
              cv = inView(C0);
            native.gemm(tA, tB, M, N, K, alpha, av.v, lda, bv.v, ldb, beta, cv.v, ldc);
            // Padding columns of C (j >= N) are not part of C: both leave them as they were.
            close(cv.v, want, RTOL, `gemm ${M}x${N}x${K} tA=${tA} tB=${tB} alpha=${alpha} beta=${beta}`);
            assert.ok(cv.intact(), 'gemm wrote outside C');
          }
  });
});

// ------------------------------------------------------------------ oracle vs finite differences

/** Central differences of f at the float32 entries of `x` (all, or `sample` random ones). */
function fdCheck(what: string, x: Float32Array, f: () => number, analytic: Float32Array, rng: Rng, sample = 0, eps = 1e-3): void {
  const idx = sample > 0 && sample < x.length ? Array.from({ length: sample }, () => rng.int(x.length)) : Array.from(x.keys());
  let err = 0,
    mag = 0;
  for (let i = 0; i < analytic.length; i++) mag = Math.max(mag, Math.abs(analytic[i]));
  for (const i of idx) {
    const x0 = x[i];
    x[i] = x0 + eps;
    const hiX = x[i],
      fp = f();
    x[i] = x0 - eps;
    const loX = x[i],
      fm = f();
    x[i] = x0;
    const fd = (fp - fm) / (hiX - loX);
    err = Math.max(err, Math.abs(fd - analytic[i]));
  }
  assert.ok(err <= 1e-2 * mag + 1e-4, `${what}: finite-difference error ${err.toExponential(3)} vs gradient scale ${mag.toExponential(3)}`);
}

/** sum_i a[i] * r[i] in double. */
function dotD(a: Float32Array, r: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * r[i];
  return s;
}

describe('TypeScript backward kernels match finite differences', () => {
  const rng = new Rng(99);
  const be = ts;

  it('matmulBack is the gradient of matmul (f32 weights)', () => {
    const M = 3,
      N = 5,
      K = 7;
    const w = weight(rng, N, K, 'f32'),
      x = randn(rng, M * K),
      r = randn(rng, M * N);
    const out = new Float32Array(M * N);
    const f = () => (be.matmul(out, x, w, M), dotD(out, r));
    const dx = new Float32Array(M * K);
    be.matmulBack(dx, r, w, M);
    fdCheck('matmulBack f32', x, f, dx, rng);
  });

  it('bf16 weights: matmulBack is the adjoint of matmul on bf16 inputs, and inputs are rounded to bf16', () => {
    // Products with bf16 weights round the activations to bf16, a step function (no finite
    // differences); on bf16-representable x and dy both are exact products, so <x W^T, r> = <x, r W>.
    const M = 3,
      N = 5,
      K = 7;
    const w = weight(rng, N, K, 'bf16'),
      x = randn(rng, M * K),
      r = randn(rng, M * N);
    roundBf16(x, x);
    roundBf16(r, r);
    const out = new Float32Array(M * N),
      dx = new Float32Array(M * K);
    be.matmul(out, x, w, M);
    be.matmulBack(dx, r, w, M);
    const lhs = dotD(out, r),
      rhs = dotD(x, dx);
    assert.ok(Math.abs(lhs - rhs) <= 1e-5 * Math.abs(lhs), `adjoint: ${lhs} vs ${rhs}`);
    // an input off the bf16 grid gives the same result as its rounding
    const xOff = x.map((v) => v * (1 + 2 ** -12)),
      out2 = new Float32Array(M * N);
    be.matmul(out2, xOff, w, M);
    const xr = xOff.slice();
    roundBf16(xr, xOff);
    const out3 = new Float32Array(M * N);
    be.matmul(out3, xr, w, M);
    assert.deepEqual(out2, out3);
  });

  it('rmsnormBack is the gradient of rmsnorm', () => {
    const rows = 3,
      dim = 8;
    const x = randn(rng, rows * dim),
      w = randn(rng, dim),
      r = randn(rng, rows * dim);
    const out = new Float32Array(rows * dim),
      rstd = new Float32Array(rows);
    const f = () => (be.rmsnorm(out, x, w, rows, dim, 1e-5, rstd), dotD(out, r));
    f();
    const dx = new Float32Array(rows * dim);
    be.rmsnormBack(dx, r, x, w, rstd, rows, dim, false);
    fdCheck('rmsnormBack', x, f, dx, rng);
  });

  it('rope inverse is the gradient of rope', () => {
    const B = 2,
      T = 3,
      H = 2,
      hs = 8;
    const { cos, sin } = ropeTables(16, hs);
    const pos = Int32Array.from([0, 5]);
    const x = randn(rng, B * T * H * hs),
      r = randn(rng, x.length);
    const f = () => {
      const y = x.slice();
      be.rope(y, B, T, H, hs, pos, cos, sin, false);
      return dotD(y, r);
    };
    const dx = r.slice();
    be.rope(dx, B, T, H, hs, pos, cos, sin, true);
    fdCheck('rope inverse', x, f, dx, rng);
  });

  it('siluGateBack is the gradient of siluGate', () => {
    const n = 20;
    const a = randn(rng, n, 2),
      b = randn(rng, n),
      r = randn(rng, n),
      out = new Float32Array(n);
    const f = () => (be.siluGate(out, a, b, n), dotD(out, r));
    const da = new Float32Array(n),
      db = new Float32Array(n);
    be.siluGateBack(da, db, r, a, b, n);
    fdCheck('siluGateBack da', a, f, da, rng);
    fdCheck('siluGateBack db', b, f, db, rng);
  });

  it('attentionBack is the gradient of attention (MHA and GQA)', () => {
    for (const [B, T, H, Hkv, hs] of [
      [1, 4, 2, 2, 4],
      [2, 3, 4, 2, 4],
      [1, 5, 4, 1, 6],
    ]) {
      const s: AttnShape = { B, T, S: T, H, Hkv, hs };
      const pos = new Int32Array(B);
      const q = randn(rng, B * T * H * hs),
        k = randn(rng, B * T * Hkv * hs),
        v = randn(rng, k.length),
        r = randn(rng, q.length);
      const out = new Float32Array(q.length);
      const f = () => (be.attention(out, q, k, v, pos, s), dotD(out, r));
      const dq = new Float32Array(q.length),
        dk = new Float32Array(k.length),
        dv = new Float32Array(v.length);
      be.attentionBack(dq, dk, dv, r, q, k, v, s);
      const tag = JSON.stringify(s);
      fdCheck(`attentionBack dq ${tag}`, q, f, dq, rng);
      fdCheck(`attentionBack dk ${tag}`, k, f, dk, rng);
      fdCheck(`attentionBack dv ${tag}`, v, f, dv, rng);
    }
  });

  it('promptAttentionBack is the gradient of promptAttention (q, prompt keys/values, gates)', () => {
    for (const s of [
      { B: 2, T: 2, K: 3, H: 4, Hkv: 2, hs: 4 },
      { B: 1, T: 3, K: 1, H: 2, Hkv: 2, hs: 6 },
      { B: 1, T: 2, K: 10, H: 2, Hkv: 1, hs: 4 },
    ] as PromptShape[]) {
      const { B, T, K, H, Hkv, hs } = s;
      const q = randn(rng, B * T * H * hs),
        pk = randn(rng, K * Hkv * hs),
        pv = randn(rng, pk.length),
        r = randn(rng, q.length);
      const gate = randn(rng, H, 0.7);
      const out = new Float32Array(q.length),
        probs = new Float32Array(B * H * T * K);
      const f = () => (out.fill(0), be.promptAttention(out, q, pk, pv, gate, s), dotD(out, r));
      out.fill(0);
      be.promptAttention(out, q, pk, pv, gate, s, probs);
      const dq = new Float32Array(q.length),
        dpk = new Float32Array(pk.length),
        dpv = new Float32Array(pv.length),
        dg = new Float32Array(H);
      be.promptAttentionBack(dq, dpk, dpv, dg, r, q, pk, pv, gate, probs, s);
      const tag = JSON.stringify(s);
      fdCheck(`promptAttentionBack dq ${tag}`, q, f, dq, rng);
      fdCheck(`promptAttentionBack dpk ${tag}`, pk, f, dpk, rng);
      fdCheck(`promptAttentionBack dpv ${tag}`, pv, f, dpv, rng);
      fdCheck(`promptAttentionBack dgate ${tag}`, gate, f, dg, rng);
    }
  });

  it('layerNormBack, geluBack and prefixAttentionBack are the gradients of their forwards (masks, causal order, prompts, GQA)', () => {
    const rows = 3,
      dim = 6;
    const x = randn(rng, rows * dim, 2),
      w = randn(rng, dim),
      b = randn(rng, dim),
      r = randn(rng, rows * dim);
    const out = new Float32Array(rows * dim),
      mean = new Float32Array(rows),
      rstd = new Float32Array(rows);
    be.layerNorm(out, x, w, b, rows, dim, 1e-5, mean, rstd);
    const dx = new Float32Array(rows * dim);
    be.layerNormBack(dx, r, x, w, mean, rstd, rows, dim, false);
    fdCheck('layerNormBack', x, () => (be.layerNorm(out, x, w, b, rows, dim, 1e-5), dotD(out, r)), dx, rng);
    for (const kind of [GELU.erf, GELU.tanh, GELU.quick]) {
      const xg = randn(rng, 20, 2),
        rg = randn(rng, 20),
        og = new Float32Array(20),
        dg = new Float32Array(20);
      be.geluBack(dg, rg, xg, 20, kind);
      fdCheck(`geluBack kind ${kind}`, xg, () => (be.gelu(og, xg, 20, kind), dotD(og, rg)), dg, rng);
    }
    for (const [s, masked, causal] of [
      [{ B: 2, T: 4, K: 3, H: 4, Hkv: 2, hs: 4 }, true, false],
      [{ B: 1, T: 5, K: 2, H: 2, Hkv: 1, hs: 6 }, false, true],
      [{ B: 2, T: 3, K: 0, H: 2, Hkv: 2, hs: 4 }, true, true],
    ] satisfies [PromptShape, boolean, boolean][]) {
      const { B, T, K } = s;
      const { q, k, v, pk, pv } = prefixInputs(rng, s),
        rr = randn(rng, q.length);
      const mask = masked ? Int32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 && i >= T ? 0 : 1)) : null;
      const o = new Float32Array(q.length);
      const f = () => (be.prefixAttention(o, q, k, v, pk, pv, s, mask, causal), dotD(o, rr));
      const dq = new Float32Array(q.length),
        dk = new Float32Array(k.length),
        dv = new Float32Array(v.length),
        dpk = new Float32Array(pk.length),
        dpv = new Float32Array(pv.length);
      be.prefixAttentionBack(dq, dk, dv, dpk, dpv, rr, q, k, v, pk, pv, s, mask, causal);
      const tag = `${JSON.stringify(s)} mask=${masked} causal=${causal}`;
      fdCheck(`prefixAttentionBack dq ${tag}`, q, f, dq, rng);
      fdCheck(`prefixAttentionBack dk ${tag}`, k, f, dk, rng);
      fdCheck(`prefixAttentionBack dv ${tag}`, v, f, dv, rng);
      if (K > 0) {
        fdCheck(`prefixAttentionBack dpk ${tag}`, pk, f, dpk, rng);
        fdCheck(`prefixAttentionBack dpv ${tag}`, pv, f, dpv, rng);
      }
    }
  });

  it('crossEntropy dlogits is scale x the gradient of the summed loss', () => {
    const rows = 4,
      V = 9,
      scale = 0.25;
    const logits = randn(rng, rows * V, 2),
      targets = Int32Array.from([3, -1, 0, 8]);
    const d = new Float32Array(rows * V);
    be.crossEntropy(logits, targets, rows, V, d, scale);
    for (let i = 0; i < V; i++) assert.equal(d[V + i], 0, 'ignored row gets zero gradient');
    const grad = d.map((x) => x / scale);
    fdCheck('crossEntropy', logits, () => be.crossEntropy(logits, targets, rows, V, null, 1), grad, rng);
  });

  it('encoder oracle: erf against tabulated values, GELU forms against their definitions, encoderAttention against attention at the last position, patches against a Conv2d by hand', () => {
    // erf(x) from Abramowitz & Stegun table 7.1 (to 1e-7)
    for (const [x, e] of [
      [0.1, 0.1124629],
      [0.5, 0.5204999],
      [1, 0.8427008],
      [1.5, 0.9661051],
      [2, 0.9953223],
      [-0.7, -0.6778012],
    ])
      assert.ok(Math.abs(erf(x) - e) < 2e-7, `erf(${x}) = ${erf(x)}, table ${e}`);
    const out = new Float32Array(3);
    ts.gelu(out, Float32Array.from([1, -2, 0.5]), 3, GELU.quick);
    close(out, [1 / (1 + Math.exp(-1.702)), -2 / (1 + Math.exp(3.404)), 0.5 / (1 + Math.exp(-0.851))], 1e-6, 'quick gelu');
    ts.gelu(out, Float32Array.from([1, -2, 0.5]), 3, GELU.tanh);
    close(out, [0.841192, -0.0454023, 0.345714], 1e-6, 'tanh gelu (PyTorch approximate="tanh")');
    ts.gelu(out, Float32Array.from([1, -2, 0.5]), 3, GELU.erf);
    close(out, [0.8413447, -0.0455003, 0.3457312], 1e-6, 'erf gelu (PyTorch)');
    // bidirectional attention = causal attention's last query over the whole row, for every t
    const s: AttnShape = { B: 2, T: 6, S: 6, H: 4, Hkv: 2, hs: 8 };
    const q = randn(rng, 2 * 6 * 32),
      k = randn(rng, 2 * 6 * 16),
      v = randn(rng, k.length);
    const enc = new Float32Array(q.length);
    ts.encoderAttention(enc, q, k, v, s);
    for (let t = 0; t < 6; t++) {
      const q1 = new Float32Array(2 * 32);
      for (let b = 0; b < 2; b++) q1.set(q.subarray((b * 6 + t) * 32, (b * 6 + t + 1) * 32), b * 32);
      const o = new Float32Array(q1.length);
      ts.attention(o, q1, k, v, Int32Array.from([5, 5]), { ...s, T: 1 });
      for (let b = 0; b < 2; b++) close(enc.subarray((b * 6 + t) * 32, (b * 6 + t + 1) * 32), o.subarray(b * 32, b * 32 + 32), 1e-6, `encoderAttention t=${t}`);
    }
    // patches + a product = a stride-p convolution summed by hand
    const C = 2,
      size = 4,
      p = 2,
      px = randn(rng, C * size * size),
      w = randn(rng, C * p * p);
    const tiles = new Float32Array(4 * C * p * p);
    ts.patches(tiles, px, 1, C, size, p);
    for (let gy = 0; gy < 2; gy++)
      for (let gx = 0; gx < 2; gx++) {
        let conv = 0,
          viaTiles = 0;
        for (let c = 0; c < C; c++)
          for (let dy = 0; dy < p; dy++) for (let dx = 0; dx < p; dx++) conv += px[(c * size + gy * p + dy) * size + gx * p + dx] * w[(c * p + dy) * p + dx];
        for (let i = 0; i < C * p * p; i++) viaTiles += tiles[(gy * 2 + gx) * C * p * p + i] * w[i];
        assert.ok(Math.abs(conv - viaTiles) < 1e-5, `patch (${gy}, ${gx})`);
      }
  });

  it('adamw matches the textbook update (bias-corrected, decoupled weight decay)', () => {
    const n = 5,
      o = { lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, step: 3 };
    const p = randn(rng, n),
      g = randn(rng, n),
      m = randn(rng, n, 0.1),
      v = randn(rng, n, 0.1).map(Math.abs);
    const [p1, m1, v1] = [p.slice(), m.slice(), v.slice()];
    be.adamw(p1, g, m1, v1, n, o);
    for (let i = 0; i < n; i++) {
      const mi = 0.9 * m[i] + 0.1 * g[i],
        vi = 0.99 * v[i] + 0.01 * g[i] * g[i];
      const upd = mi / (1 - 0.9 ** 3) / (Math.sqrt(vi / (1 - 0.99 ** 3)) + 1e-8);
      const pi = p[i] - 0.01 * (upd + 0.1 * p[i]);
      assert.ok(Math.abs(p1[i] - pi) <= 1e-6 * Math.max(1, Math.abs(pi)), `adamw p[${i}] ${p1[i]} vs ${pi}`);
      assert.ok(Math.abs(m1[i] - mi) <= 1e-6, `adamw m[${i}]`);
      assert.ok(Math.abs(v1[i] - vi) <= 1e-6, `adamw v[${i}]`);
    }
  });
});
