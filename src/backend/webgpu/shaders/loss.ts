// WGSL for softmax cross-entropy (one thread per row; the loss of each row goes to `losses`, so
// nothing is summed across threads) and the AdamW step (one thread per parameter).

import { elementwise, perRow, shader, type ShaderSpec } from './common.js';

/**
 * One thread per row (rows across the 64 threads of a workgroup): max, sum of exps, then the
 * gradient row. inPlace: dlogits is the logits buffer (bound once: WebGPU refuses two writable
 * bindings of one buffer).
 */
export const crossEntropy = (inPlace: boolean): ShaderSpec =>
  shader(
    ['rows: u32', 'V: u32', 'dlo: u32', 'scale: f32', 'hasD: u32', 'hasL: u32'],
    inPlace
      ? [
          ['LG', 'f32'],
          ['TG', 'i32'],
          ['LS', 'f32'],
        ]
      : [
          ['LG', 'f32'],
          ['TG', 'i32'],
          ['DL', 'f32'],
          ['LS', 'f32'],
        ],
    `${inPlace ? 'fn dl(i: u32, v: f32) { LG[i] = v; }' : 'fn dl(i: u32, v: f32) { DL[i] = v; }'}
${perRow(`  let tgt = TG[p.TG_o + r];
  let base = p.LG_o + r * p.V;
  let dbase = p.dlo + r * p.V;
  if (tgt < 0) {
    if (p.hasD == 1u) { for (var i = 0u; i < p.V; i++) { dl(dbase + i, 0.0); } }
    if (p.hasL == 1u) { LS[p.LS_o + r] = 0.0; }
    return;
  }
  var mx = -3.0e38;
  for (var i = 0u; i < p.V; i++) { mx = max(mx, LG[base + i]); }
  var s = 0.0;
  for (var i = 0u; i < p.V; i++) { s += exp(LG[base + i] - mx); }
  let lse = mx + log(s);
  if (p.hasL == 1u) { LS[p.LS_o + r] = lse - LG[base + u32(tgt)]; }
  if (p.hasD == 1u) {
    for (var i = 0u; i < p.V; i++) {
      var v = exp(LG[base + i] - lse) * p.scale;
      if (i == u32(tgt)) { v -= p.scale; }
      dl(dbase + i, v);
    }
  }`)}`,
  );

export const ADAMW = shader(
  ['n: u32', 'lr: f32', 'b1: f32', 'b2: f32', 'c1: f32', 'c2: f32', 'inv1: f32', 'inv2: f32', 'eps: f32', 'wd: f32'],
  [
    ['P', 'f32'],
    ['G', 'f32'],
    ['M', 'f32'],
    ['Vm', 'f32'],
  ],
  elementwise(`  let g = G[p.G_o + i];
  let m = p.b1 * M[p.M_o + i] + p.c1 * g;
  let v = p.b2 * Vm[p.Vm_o + i] + p.c2 * g * g;
  M[p.M_o + i] = m;
  Vm[p.Vm_o + i] = v;
  let x = P[p.P_o + i];
  P[p.P_o + i] = x - p.lr * ((m * p.inv1) / (sqrt(v * p.inv2) + p.eps) + p.wd * x);`),
);
