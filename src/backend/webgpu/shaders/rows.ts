// WGSL for the row and elementwise kernels: RMSNorm and its backward (one thread per row), RoPE (one thread per rotated pair),
// SiLU-gate and its backward, residual add, bf16 storage conversions (on the bits, so NaN and
// signed zeros survive) and the embedding lookup.

import { bf16At, BF16, elementwise, entry, perRow, shader, type ShaderSpec } from './common.js';

// One thread per row for the norms (rows across the 64 threads of a workgroup): no workgroup
// reductions, whose barriers cost most of the time under SwiftShader; a row is a few thousand values.
export const RMSNORM = shader(
  ['rows: u32', 'dim: u32', 'eps: f32', 'hasR: u32'],
  [
    ['o', 'f32'],
    ['x', 'f32'],
    ['w', 'f32'],
    ['rstd', 'f32'],
  ],
  perRow(`  let base = r * p.dim;
  var ss = 0.0;
  for (var i = 0u; i < p.dim; i++) { let v = x[p.x_o + base + i]; ss += v * v; }
  let inv = 1.0 / sqrt(ss / f32(p.dim) + p.eps);
  if (p.hasR == 1u) { rstd[p.rstd_o + r] = inv; }
  for (var i = 0u; i < p.dim; i++) { o[p.o_o + base + i] = x[p.x_o + base + i] * inv * w[p.w_o + i]; }`),
);

// dx = s * w * dy - x * s^3 / dim * sum(w * dy * x)
export const RMSNORM_BACK = shader(
  ['rows: u32', 'dim: u32', 'acc: u32'],
  [
    ['dx', 'f32'],
    ['dy', 'f32'],
    ['x', 'f32'],
    ['w', 'f32'],
    ['rstd', 'f32'],
  ],
  perRow(`  let base = r * p.dim;
  let s = rstd[p.rstd_o + r];
  var d = 0.0;
  for (var i = 0u; i < p.dim; i++) { d += w[p.w_o + i] * dy[p.dy_o + base + i] * x[p.x_o + base + i]; }
  let c = d * s * s * s / f32(p.dim);
  for (var i = 0u; i < p.dim; i++) {
    var g = s * w[p.w_o + i] * dy[p.dy_o + base + i] - c * x[p.x_o + base + i];
    if (p.acc == 1u) { g = dx[p.dx_o + base + i] + g; }
    dx[p.dx_o + base + i] = g;
  }`),
);

/** One thread per rotated pair (b, t, h, i); positions pos[b] + t. */
export const ROPE = shader(
  ['n: u32', 'T: u32', 'H: u32', 'half: u32', 'sign: f32'],
  [
    ['x', 'f32'],
    ['pos', 'i32'],
    ['cosT', 'f32'],
    ['sinT', 'f32'],
  ],
  `${entry(64)}
  let id = lin * 64u + li;
  if (id >= p.n) { return; }
  let i = id % p.half;
  let rest = id / p.half;
  let bt = rest / p.H;
  let t = bt % p.T;
  let b = bt / p.T;
  let tab = (u32(pos[p.pos_o + b]) + t) * p.half + i;
  let c = cosT[p.cosT_o + tab];
  let s = p.sign * sinT[p.sinT_o + tab];
  let o = p.x_o + rest * 2u * p.half + 2u * i;
  let x0 = x[o];
  let x1 = x[o + 1u];
  x[o] = x0 * c - x1 * s;
  x[o + 1u] = x0 * s + x1 * c;
}`,
);

/** sigmoid without overflow in exp (exp(88) is the largest finite f32 power of e). */
const SIGMOID = 'fn sigm(v: f32) -> f32 { return 1.0 / (1.0 + exp(min(-v, 88.0))); }';

export const SILU_GATE = shader(
  ['n: u32'],
  [
    ['o', 'f32'],
    ['a', 'f32'],
    ['b', 'f32'],
  ],
  `${SIGMOID}
${elementwise(`  let v = a[p.a_o + i];
  o[p.o_o + i] = v * sigm(v) * b[p.b_o + i];`)}`,
);

export const SILU_GATE_BACK = shader(
  ['n: u32'],
  [
    ['da', 'f32'],
    ['db', 'f32'],
    ['dy', 'f32'],
    ['a', 'f32'],
    ['b', 'f32'],
  ],
  `${SIGMOID}
${elementwise(`  let v = a[p.a_o + i];
  let sg = sigm(v);
  let g = dy[p.dy_o + i];
  let bv = b[p.b_o + i];
  db[p.db_o + i] = g * v * sg;
  da[p.da_o + i] = g * bv * sg * (1.0 + v * (1.0 - sg));`)}`,
);

export const ADD = shader(
  ['n: u32'],
  [
    ['x', 'f32'],
    ['y', 'f32'],
  ],
  elementwise(`  x[p.x_o + i] = x[p.x_o + i] + y[p.y_o + i];`),
);

/** One thread per 32-bit word of the bf16 output (two elements); halves outside the view are kept. */
export const TO_BF16 = shader(
  ['n: u32', 'words: u32'],
  [
    ['o', 'u32'],
    ['x', 'u32'],
  ],
  `${BF16}
${entry(256)}
  let wi = lin * 256u + li;
  if (wi >= p.words) { return; }
  let word = (p.o_o >> 1u) + wi;
  var v = o[word];
  for (var h = 0u; h < 2u; h++) {
    let e = word * 2u + h;
    if (e >= p.o_o && e < p.o_o + p.n) {
      let bits = bf16Bits(x[p.x_o + e - p.o_o]);
      v = select((v & 0xffff0000u) | bits, (v & 0x0000ffffu) | (bits << 16u), h == 1u);
    }
  }
  o[word] = v;
}`,
);

export const FROM_BF16 = shader(
  ['n: u32'],
  [
    ['o', 'u32'],
    ['x', 'u32'],
  ],
  elementwise(`  let e = p.x_o + i;
  let u = x[e >> 1u];
  o[p.o_o + i] = select(u << 16u, u & 0xffff0000u, (e & 1u) == 1u);`),
);

/** out (n, dim) = rows ids[i] of the table (f32, or bf16 widened exactly). */
export function embed(bf: boolean): ShaderSpec {
  return shader(
    ['n: u32', 'dim: u32'],
    [
      ['o', 'f32'],
      ['table', bf ? 'u32' : 'f32'],
      ['ids', 'i32'],
    ],
    `${bf ? bf16At('table') : ''}
${entry(256)}
  let e = lin * 256u + li;
  if (e >= p.n * p.dim) { return; }
  let i = e / p.dim;
  let c = e % p.dim;
  let src = p.table_o + u32(ids[p.ids_o + i]) * p.dim + c;
  o[p.o_o + e] = ${bf ? 'tableBf16(src)' : 'table[src]'};
}`,
  );
}
