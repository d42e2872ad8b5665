// WGSL for the frozen linear layers. A tiled GEMM (64 x 64 output tiles, 16-deep k slices in
// workgroup memory, 4 x 4 outputs per thread) for matmul (W^T: B(k, n) = W[n, k]) and matmulBack
// (B(k, n) = W[k, n]); and the small-M path of matmul (decode: at most GEMV_ROWS rows), one
// workgroup per output column reducing over k, so a decode step reads each weight once. bf16
// weights are widened in the shader and the activations rounded to bf16 first (Backend.matmul's
// semantics); sums are fp32.

import { BF16, bf16At, entry, shader, type ShaderSpec } from './common.js';

/** Rows up to which matmul takes the GEMV kernel. */
export const GEMV_ROWS = 8;

function helpers(bf: boolean): string {
  return bf
    ? `${BF16}
${bf16At('w')}
fn W(e: u32) -> f32 { return wBf16(e); }
fn X(e: u32) -> f32 { return roundBf16(x[e]); }`
    : `fn W(e: u32) -> f32 { return w[e]; }
fn X(e: u32) -> f32 { return x[e]; }`;
}

const BUFS = (bf: boolean): [string, 'f32' | 'u32'][] => [
  ['o', 'f32'],
  ['x', 'f32'],
  ['w', bf ? 'u32' : 'f32'],
];

/**
 * o (M, N) (+)= x (M, K) · B, B(k, n) = W[wo + n*ldw + k] (trans: matmul) or W[wo + k*ldw + n]
 * (matmulBack). Grid: (ceil(N/64), ceil(M/64)).
 */
export function gemm(bf: boolean, trans: boolean): ShaderSpec {
  return shader(
    ['M: u32', 'N: u32', 'K: u32', 'ldw: u32', 'acc: u32'],
    BUFS(bf),
    `${helpers(bf)}
var<workgroup> As: array<f32, 1024>; // [k 16][row 64]
var<workgroup> Bs: array<f32, 1024>; // [k 16][col 64]
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row0 = wid.y * 64u;
  let col0 = wid.x * 64u;
  let tid = lid.y * 16u + lid.x;
  var c0 = vec4f(0.0);
  var c1 = vec4f(0.0);
  var c2 = vec4f(0.0);
  var c3 = vec4f(0.0);
  for (var k0 = 0u; k0 < p.K; k0 += 16u) {
    for (var i = 0u; i < 4u; i++) {
      let e = tid + i * 256u;
      let r = e / 16u;
      let kk = e % 16u;
      let gr = row0 + r;
      let gk = k0 + kk;
      var v = 0.0;
      if (gr < p.M && gk < p.K) { v = X(p.x_o + gr * p.K + gk); }
      As[kk * 64u + r] = v;
    }
    for (var i = 0u; i < 4u; i++) {
      let e = tid + i * 256u;
      ${trans ? 'let c = e / 16u;\n      let kk = e % 16u;' : 'let kk = e / 64u;\n      let c = e % 64u;'}
      let gc = col0 + c;
      let gk = k0 + kk;
      var v = 0.0;
      if (gc < p.N && gk < p.K) { v = W(p.w_o + ${trans ? 'gc * p.ldw + gk' : 'gk * p.ldw + gc'}); }
      Bs[kk * 64u + c] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      let ar = kk * 64u + lid.y;
      let br = kk * 64u + lid.x;
      let a = vec4f(As[ar], As[ar + 16u], As[ar + 32u], As[ar + 48u]);
      let b = vec4f(Bs[br], Bs[br + 16u], Bs[br + 32u], Bs[br + 48u]);
      c0 += a.x * b;
      c1 += a.y * b;
      c2 += a.z * b;
      c3 += a.w * b;
    }
    workgroupBarrier();
  }
  let acc = array<vec4f, 4>(c0, c1, c2, c3);
  for (var i = 0u; i < 4u; i++) {
    let r = row0 + lid.y + i * 16u;
    if (r >= p.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let c = col0 + lid.x + j * 16u;
      if (c >= p.N) { continue; }
      let idx = p.o_o + r * p.N + c;
      var v = acc[i][j];
      if (p.acc == 1u) { v = o[idx] + v; }
      o[idx] = v;
    }
  }
}`,
  );
}

/**
 * The same product without workgroup memory: each thread makes a 4 x 4 block of outputs straight
 * from memory (caches do the reuse). No barriers: the form for software adapters (SwiftShader
 * runs a workgroup barrier as a switch of every invocation's coroutine).
 */
export function gemmDirect(bf: boolean, trans: boolean): ShaderSpec {
  return shader(
    ['M: u32', 'N: u32', 'K: u32', 'ldw: u32', 'acc: u32'],
    BUFS(bf),
    `${helpers(bf)}
fn B(k: u32, n: u32) -> f32 { return W(p.w_o + ${trans ? 'n * p.ldw + k' : 'k * p.ldw + n'}); }
${entry(64)}
  let nb = (p.N + 3u) / 4u;
  let id = lin * 64u + li;
  if (id >= nb * ((p.M + 3u) / 4u)) { return; }
  let r0 = (id / nb) * 4u;
  let c0 = (id % nb) * 4u;
  let rr = vec4u(min(r0, p.M - 1u), min(r0 + 1u, p.M - 1u), min(r0 + 2u, p.M - 1u), min(r0 + 3u, p.M - 1u));
  let cc = vec4u(min(c0, p.N - 1u), min(c0 + 1u, p.N - 1u), min(c0 + 2u, p.N - 1u), min(c0 + 3u, p.N - 1u));
  var a0 = vec4f(0.0);
  var a1 = vec4f(0.0);
  var a2 = vec4f(0.0);
  var a3 = vec4f(0.0);
  for (var k = 0u; k < p.K; k++) {
    let b = vec4f(B(k, cc.x), B(k, cc.y), B(k, cc.z), B(k, cc.w));
    a0 += X(p.x_o + rr.x * p.K + k) * b;
    a1 += X(p.x_o + rr.y * p.K + k) * b;
    a2 += X(p.x_o + rr.z * p.K + k) * b;
    a3 += X(p.x_o + rr.w * p.K + k) * b;
  }
  let acc = array<vec4f, 4>(a0, a1, a2, a3);
  for (var i = 0u; i < 4u; i++) {
    let r = r0 + i;
    if (r >= p.M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let c = c0 + j;
      if (c >= p.N) { break; }
      let idx = p.o_o + r * p.N + c;
      var v = acc[i][j];
      if (p.acc == 1u) { v = o[idx] + v; }
      o[idx] = v;
    }
  }
}`,
  );
}

/**
 * o (M, N) (+)= x (M, K) · W^T for M <= GEMV_ROWS: one thread per output, no workgroup memory or
 * barriers (each weight row streams through one thread, four values at a time).
 */
export function gemv(bf: boolean): ShaderSpec {
  return shader(
    ['M: u32', 'N: u32', 'K: u32', 'acc: u32'],
    BUFS(bf),
    `${helpers(bf)}
${entry(64)}
  let id = lin * 64u + li;
  if (id >= p.M * p.N) { return; }
  let m = id / p.N;
  let n = id % p.N;
  let xr = p.x_o + m * p.K;
  let wr = p.w_o + n * p.K;
  var s4 = vec4f(0.0);
  var k = 0u;
  for (; k + 4u <= p.K; k += 4u) {
    s4 += vec4f(X(xr + k), X(xr + k + 1u), X(xr + k + 2u), X(xr + k + 3u)) * vec4f(W(wr + k), W(wr + k + 1u), W(wr + k + 2u), W(wr + k + 3u));
  }
  var s = (s4.x + s4.y) + (s4.z + s4.w);
  for (; k < p.K; k++) { s += X(xr + k) * W(wr + k); }
  let idx = p.o_o + m * p.N + n;
  if (p.acc == 1u) { s = o[idx] + s; }
  o[idx] = s;
}`,
  );
}
