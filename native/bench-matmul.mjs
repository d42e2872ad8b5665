// Micro-benchmark of the native matmul kernels (not part of the test suite):
//   node native/bench-matmul.mjs [threads]
// Prints median and best GFLOP/s of matmul / matmulBack for f32 and bf16 weights on the BRIEF's shapes.
// Needs the compiled TypeScript (npx tsc) and the built addon.
import { loadNativeBackend, nativeInfo } from '../dist/src/backend/native.js';
import { toBf16 } from '../dist/src/core/weights.js';

const threads = process.argv[2] ? Number(process.argv[2]) : undefined;
const { backend: be, error } = loadNativeBackend(threads);
if (!be) {
  console.log(`native backend unavailable: ${error}`);
  process.exit(0);
}
console.log('features', JSON.stringify(nativeInfo()));

function rnd(n) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}
/** [median, best] seconds of fn over repeated runs (best is the less load-sensitive one). */
function timeIt(fn, minTime = 0.5) {
  fn();
  const ts = [];
  const t0 = performance.now();
  while (ts.length < 3 || (performance.now() - t0 < minTime * 1000 && ts.length < 200)) {
    const t = performance.now();
    fn();
    ts.push(performance.now() - t);
  }
  ts.sort((a, b) => a - b);
  return [ts[ts.length >> 1] / 1000, ts[0] / 1000];
}

const shapes = process.env.SHAPES
  ? JSON.parse(process.env.SHAPES)
  : [
      [1024, 1024, 1024],
      [512, 4096, 4096],
      [1, 4096, 4096],
      [4, 4096, 4096],
      [16, 4096, 4096],
      [64, 4096, 4096],
      [1, 32000, 4096],
    ];
for (const [M, N, K] of shapes) {
  const x = rnd(M * K),
    wf = rnd(N * K),
    dy = rnd(M * N);
  const out = new Float32Array(M * N),
    outb = new Float32Array(M * K);
  for (const dtype of ['f32', 'bf16']) {
    const w = dtype === 'f32' ? { dtype, rows: N, cols: K, data: wf } : { dtype, rows: N, cols: K, data: toBf16(wf) };
    const f = 2 * M * N * K;
    const [tf, bf] = timeIt(() => be.matmul(out, x, w, M));
    const [tb, bb] = timeIt(() => be.matmulBack(outb, dy, w, M));
    const g = (t) => (f / t / 1e9).toFixed(1);
    console.log(
      `${dtype.padEnd(4)} M=${M} N=${N} K=${K}: matmul ${g(tf)} GFLOP/s median, ${g(bf)} best (${(tf * 1e3).toFixed(3)} ms); matmulBack ${g(tb)} median, ${g(bb)} best`,
    );
  }
}
