// WGSL for attention, one thread per query (flash-attention style): a workgroup takes 64
// consecutive positions of one (row, head), walks the keys in tiles that it loads into workgroup
// memory together, and each thread keeps its own online softmax (running max and sum, the output
// rescaled when the max grows), so there are no reductions across threads and no score rows in
// memory, whatever the context. The head size is a compile-time constant (a pipeline per head
// size), so a thread's query and output rows live in registers.
//
// The same shader serves causal attention over the slot cache (mode 0), the gated prompt branch
// (mode 1: out += gate * softmax(q pk^T) pv, zero-gate heads untouched, probabilities kept for
// backward) and bidirectional encoder attention (mode 2). Backward recomputes the probabilities:
// per query (dq, with each row's log-sum-exp and sum_j p_j dp_j kept in scratch), then per key (dk,
// dv over the queries that see it), so no thread adds into another's output.

import { entry, shader, type ShaderSpec } from './common.js';

export const MAX_HS = 256;
const Q_TILE = 64; // queries (threads) per workgroup

/** Keys per tile: the tile's keys and values (or queries and output gradients) fit 16 KB of workgroup memory. */
export function tileOf(hs: number): number {
  return Math.max(1, Math.min(64, Math.floor(2048 / hs)));
}

/** Below any score: the running max before the first key (exp of it minus a real score is 0). */
const NEG = '-3.0e38';

/** Workgroups of an attention call over (B, H) pairs and T queries. */
export function queryGroups(B: number, H: number, T: number): number {
  return B * H * Math.ceil(T / Q_TILE);
}

/** The linearised workgroup -> (b, h, t) prelude; `t` is this thread's query, `valid` whether it exists. */
const QUERY_PRELUDE = `
  let tiles = (p.T + ${Q_TILE - 1}u) / ${Q_TILE}u;
  if (lin >= p.B * p.H * tiles) { return; }
  let tile = lin % tiles;
  let bh = lin / tiles;
  let h = bh % p.H;
  let b = bh / p.H;
  let t = tile * ${Q_TILE}u + li;
  let valid = t < p.T;
  let kvh = h / p.rep;
  let bt = b * p.T + t;`;

export function attention(hs: number): ShaderSpec {
  const KT = tileOf(hs);
  return shader(
    [
      'B: u32',
      'T: u32',
      'S: u32',
      'H: u32',
      'rep: u32',
      'kvs: u32',
      'qs: u32',
      'mode: u32',
      'K: u32',
      'scale: f32',
      'oo: u32',
      'qo: u32',
      'ko: u32',
      'vo: u32',
      'po: u32',
      'ro: u32',
      'hasRows: u32',
      'go: u32',
      'pro: u32',
      'hasProbs: u32',
    ],
    [
      ['O', 'f32'],
      ['Q', 'f32'],
      ['Kc', 'f32'],
      ['Vc', 'f32'],
      ['POS', 'i32'],
      ['ROWS', 'i32'],
      ['GATE', 'f32'],
      ['PROBS', 'f32'],
    ],
    `const HS = ${hs}u;
const KT = ${KT}u;
var<workgroup> ks: array<f32, ${KT * hs}>;
var<workgroup> vs: array<f32, ${KT * hs}>;
var<workgroup> wn: u32;
var<workgroup> wkb: u32;
${entry(Q_TILE)}
${QUERY_PRELUDE}
  var n = 0u; // keys this query sees
  if (p.mode == 0u) { n = u32(POS[p.po + b]) + t + 1u; } else if (p.mode == 1u) { n = p.K; } else { n = p.T; }
  if (li == 0u) {
    // keys the workgroup walks (its last query's) and where its cache row starts
    let last = min(p.T, tile * ${Q_TILE}u + ${Q_TILE}u) - 1u;
    if (p.mode == 0u) {
      var cr = b;
      if (p.hasRows == 1u) { cr = u32(ROWS[p.ro + b]); }
      wn = u32(POS[p.po + b]) + last + 1u;
      wkb = cr * p.S * p.kvs;
    } else if (p.mode == 1u) {
      wn = p.K;
      wkb = 0u;
    } else {
      wn = p.T;
      wkb = b * p.T * p.kvs;
    }
  }
  let nmax = workgroupUniformLoad(&wn);
  let kb = workgroupUniformLoad(&wkb) + kvh * HS;
  let qoff = p.qo + bt * p.qs + h * HS;
  var qv: array<f32, ${hs}>;
  var acc: array<f32, ${hs}>;
  if (valid) { for (var d = 0u; d < HS; d++) { qv[d] = Q[qoff + d]; } }
  var m = ${NEG};
  var l = 0.0;
  for (var j0 = 0u; j0 < nmax; j0 += KT) {
    let cnt = min(KT, nmax - j0);
    for (var e = li; e < cnt * HS; e += ${Q_TILE}u) {
      let src = kb + (j0 + e / HS) * p.kvs + e % HS;
      ks[e] = Kc[p.ko + src];
      vs[e] = Vc[p.vo + src];
    }
    workgroupBarrier();
    if (valid) {
      for (var jj = 0u; jj < cnt && j0 + jj < n; jj++) {
        var s = 0.0;
        for (var d = 0u; d < HS; d++) { s += qv[d] * ks[jj * HS + d]; }
        s *= p.scale;
        if (s > m) {
          let c = exp(m - s);
          l *= c;
          for (var d = 0u; d < HS; d++) { acc[d] *= c; }
          m = s;
        }
        let w = exp(s - m);
        l += w;
        for (var d = 0u; d < HS; d++) { acc[d] += w * vs[jj * HS + d]; }
      }
    }
    workgroupBarrier();
  }
  if (!valid) { return; }
  let ooff = p.oo + bt * p.qs + h * HS;
  if (p.mode == 1u) {
    let g = GATE[p.go + h];
    if (g != 0.0) { for (var d = 0u; d < HS; d++) { O[ooff + d] = O[ooff + d] + g * (acc[d] / l); } }
    if (p.hasProbs == 1u) {
      let pr = p.pro + ((b * p.H + h) * p.T + t) * p.K;
      for (var j = 0u; j < p.K; j++) {
        var s = 0.0;
        for (var d = 0u; d < HS; d++) { s += qv[d] * Kc[p.ko + kb + j * p.kvs + d]; }
        PROBS[pr + j] = exp(s * p.scale - m) / l;
      }
    }
  } else {
    for (var d = 0u; d < HS; d++) { O[ooff + d] = acc[d] / l; }
  }
}`,
  );
}

const BACK_PARAMS = ['B: u32', 'T: u32', 'H: u32', 'Hkv: u32', 'rep: u32', 'kvs: u32', 'qs: u32', 'scale: f32'];

/**
 * Per query (b, t, h) of a full causal pass: dq (overwritten), and LSE / DD at (b*T + t)*H + h for
 * the per-key pass. One pass keeps the running max, sum and sum_j e_j dp_j; a second makes dq.
 */
export function attentionBackQ(hs: number): ShaderSpec {
  const KT = tileOf(hs);
  return shader(
    [...BACK_PARAMS, 'dqo: u32', 'doo: u32', 'qo: u32', 'ko: u32', 'vo: u32'],
    [
      ['DQ', 'f32'],
      ['DOUT', 'f32'],
      ['Q', 'f32'],
      ['Kb', 'f32'],
      ['Vb', 'f32'],
      ['LSE', 'f32'],
      ['DD', 'f32'],
    ],
    `const HS = ${hs}u;
const KT = ${KT}u;
var<workgroup> ks: array<f32, ${KT * hs}>;
var<workgroup> vs: array<f32, ${KT * hs}>;
${entry(Q_TILE)}
${QUERY_PRELUDE}
  let n = t + 1u;
  let nmax = min(p.T, tile * ${Q_TILE}u + ${Q_TILE}u);
  let kb = b * p.T * p.kvs + kvh * HS;
  let qoff = bt * p.qs + h * HS;
  var qv: array<f32, ${hs}>;
  var dov: array<f32, ${hs}>;
  if (valid) {
    for (var d = 0u; d < HS; d++) {
      qv[d] = Q[p.qo + qoff + d];
      dov[d] = DOUT[p.doo + qoff + d];
    }
  }
  var m = ${NEG};
  var l = 0.0;
  var dn = 0.0; // sum_j exp(s_j - m) dp_j, rescaled with l
  for (var j0 = 0u; j0 < nmax; j0 += KT) {
    let cnt = min(KT, nmax - j0);
    for (var e = li; e < cnt * HS; e += ${Q_TILE}u) {
      let src = kb + (j0 + e / HS) * p.kvs + e % HS;
      ks[e] = Kb[p.ko + src];
      vs[e] = Vb[p.vo + src];
    }
    workgroupBarrier();
    if (valid) {
      for (var jj = 0u; jj < cnt && j0 + jj < n; jj++) {
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < HS; d++) {
          s += qv[d] * ks[jj * HS + d];
          dp += dov[d] * vs[jj * HS + d];
        }
        s *= p.scale;
        if (s > m) {
          let c = exp(m - s);
          l *= c;
          dn *= c;
          m = s;
        }
        let w = exp(s - m);
        l += w;
        dn += w * dp;
      }
    }
    workgroupBarrier();
  }
  let lse = m + log(l);
  let D = dn / l;
  var acc: array<f32, ${hs}>;
  for (var j0 = 0u; j0 < nmax; j0 += KT) {
    let cnt = min(KT, nmax - j0);
    for (var e = li; e < cnt * HS; e += ${Q_TILE}u) {
      let src = kb + (j0 + e / HS) * p.kvs + e % HS;
      ks[e] = Kb[p.ko + src];
      vs[e] = Vb[p.vo + src];
    }
    workgroupBarrier();
    if (valid) {
      for (var jj = 0u; jj < cnt && j0 + jj < n; jj++) {
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < HS; d++) {
          s += qv[d] * ks[jj * HS + d];
          dp += dov[d] * vs[jj * HS + d];
        }
        let ds = exp(s * p.scale - lse) * (dp - D) * p.scale;
        for (var d = 0u; d < HS; d++) { acc[d] += ds * ks[jj * HS + d]; }
      }
    }
    workgroupBarrier();
  }
  if (!valid) { return; }
  for (var d = 0u; d < HS; d++) { DQ[p.dqo + qoff + d] = acc[d]; }
  let r = bt * p.H + h;
  LSE[r] = lse;
  DD[r] = D;
}`,
  );
}

/** Per key (b, j, kv head), one thread each: dk, dv (overwritten) over the queries t >= j of the heads sharing it. */
export function attentionBackKV(hs: number): ShaderSpec {
  const QT = tileOf(hs);
  return shader(
    [...BACK_PARAMS, 'dko: u32', 'dvo: u32', 'doo: u32', 'qo: u32', 'ko: u32', 'vo: u32'],
    [
      ['DK', 'f32'],
      ['DV', 'f32'],
      ['DOUT', 'f32'],
      ['Q', 'f32'],
      ['Kb', 'f32'],
      ['Vb', 'f32'],
      ['LSE', 'f32'],
      ['DD', 'f32'],
    ],
    `const HS = ${hs}u;
const QT = ${QT}u;
var<workgroup> qs: array<f32, ${QT * hs}>;
var<workgroup> dos: array<f32, ${QT * hs}>;
var<workgroup> lse: array<f32, ${QT}>;
var<workgroup> dd: array<f32, ${QT}>;
${entry(Q_TILE)}
  let tiles = (p.T + ${Q_TILE - 1}u) / ${Q_TILE}u;
  if (lin >= p.B * p.Hkv * tiles) { return; }
  let tile = lin % tiles;
  let bk = lin / tiles;
  let kvh = bk % p.Hkv;
  let b = bk / p.Hkv;
  let j = tile * ${Q_TILE}u + li;
  let valid = j < p.T;
  let koff = (b * p.T + j) * p.kvs + kvh * HS;
  var kv: array<f32, ${hs}>;
  var vv: array<f32, ${hs}>;
  var adk: array<f32, ${hs}>;
  var adv: array<f32, ${hs}>;
  if (valid) {
    for (var d = 0u; d < HS; d++) {
      kv[d] = Kb[p.ko + koff + d];
      vv[d] = Vb[p.vo + koff + d];
    }
  }
  let tStart = tile * ${Q_TILE}u; // the workgroup's first key: no query before it sees any of its keys
  for (var hh = 0u; hh < p.rep; hh++) {
    let h = kvh * p.rep + hh;
    for (var t0 = tStart; t0 < p.T; t0 += QT) {
      let cnt = min(QT, p.T - t0);
      for (var e = li; e < cnt * HS; e += ${Q_TILE}u) {
        let row = (b * p.T + t0 + e / HS) * p.qs + h * HS + e % HS;
        qs[e] = Q[p.qo + row];
        dos[e] = DOUT[p.doo + row];
      }
      for (var e = li; e < cnt; e += ${Q_TILE}u) {
        let r = (b * p.T + t0 + e) * p.H + h;
        lse[e] = LSE[r];
        dd[e] = DD[r];
      }
      workgroupBarrier();
      if (valid) {
        for (var tt = 0u; tt < cnt; tt++) {
          if (t0 + tt < j) { continue; }
          var s = 0.0;
          var dp = 0.0;
          for (var d = 0u; d < HS; d++) {
            s += qs[tt * HS + d] * kv[d];
            dp += dos[tt * HS + d] * vv[d];
          }
          let pr = exp(s * p.scale - lse[tt]);
          let dsc = pr * (dp - dd[tt]) * p.scale;
          for (var d = 0u; d < HS; d++) {
            adk[d] += dsc * qs[tt * HS + d];
            adv[d] += pr * dos[tt * HS + d];
          }
        }
      }
      workgroupBarrier();
    }
  }
  if (!valid) { return; }
  for (var d = 0u; d < HS; d++) {
    DK[p.dko + koff + d] = adk[d];
    DV[p.dvo + koff + d] = adv[d];
  }
}`,
  );
}

/** Workgroups of the per-key backward pass. */
export function keyGroups(B: number, Hkv: number, T: number): number {
  return B * Hkv * Math.ceil(T / Q_TILE);
}

const PROMPT_PARAMS = ['B: u32', 'T: u32', 'H: u32', 'rep: u32', 'kvs: u32', 'qs: u32', 'K: u32', 'scale: f32'];

/**
 * Prompt-branch backward, one thread per query (b, t, h): ds_j = p_j (g dout·pv_j - sum) scale into
 * scratch SCR (B, H, T, K) at dso, the row's dgate share sum_j p_j dout·pv_j at dgo + (b*H + h)*T + t,
 * and dq += sum_j ds_j pk_j when wanted. The prompt's keys and values are read where they are.
 */
export function promptBackQ(hs: number): ShaderSpec {
  return shader(
    [...PROMPT_PARAMS, 'hasDq: u32', 'dqo: u32', 'doo: u32', 'qo: u32', 'pko: u32', 'pvo: u32', 'go: u32', 'pro: u32', 'dso: u32', 'dgo: u32'],
    [
      ['DQ', 'f32'],
      ['DOUT', 'f32'],
      ['Q', 'f32'],
      ['PK', 'f32'],
      ['PV', 'f32'],
      ['GATE', 'f32'],
      ['PROBS', 'f32'],
      ['SCR', 'f32'],
    ],
    `const HS = ${hs}u;
${entry(64)}
  let id = lin * 64u + li;
  if (id >= p.B * p.T * p.H) { return; }
  let h = id % p.H;
  let bt = id / p.H;
  let t = bt % p.T;
  let b = bt / p.T;
  let kvb = (h / p.rep) * HS;
  let g = GATE[p.go + h];
  let row = (b * p.H + h) * p.T + t;
  let pr = p.pro + row * p.K;
  let qoff = bt * p.qs + h * HS;
  var dov: array<f32, ${hs}>;
  for (var d = 0u; d < HS; d++) { dov[d] = DOUT[p.doo + qoff + d]; }
  var dg = 0.0;
  for (var j = 0u; j < p.K; j++) {
    var x = 0.0;
    for (var d = 0u; d < HS; d++) { x += dov[d] * PV[p.pvo + j * p.kvs + kvb + d]; }
    dg += PROBS[pr + j] * x;
  }
  let total = g * dg;
  var acc: array<f32, ${hs}>;
  for (var j = 0u; j < p.K; j++) {
    var x = 0.0;
    for (var d = 0u; d < HS; d++) { x += dov[d] * PV[p.pvo + j * p.kvs + kvb + d]; }
    let ds = PROBS[pr + j] * (g * x - total) * p.scale;
    SCR[p.dso + row * p.K + j] = ds;
    if (p.hasDq == 1u) { for (var d = 0u; d < HS; d++) { acc[d] += ds * PK[p.pko + j * p.kvs + kvb + d]; } }
  }
  if (p.hasDq == 1u) { for (var d = 0u; d < HS; d++) { DQ[p.dqo + qoff + d] = DQ[p.dqo + qoff + d] + acc[d]; } }
  SCR[p.dgo + row] = dg;
}`,
  );
}

/** dpk, dpv (K, Hkv*hs) += sums over (b, t, heads of the group): one thread per element. */
export const PROMPT_BACK_KV = shader(
  [...PROMPT_PARAMS, 'hs: u32', 'dpko: u32', 'dpvo: u32', 'doo: u32', 'qo: u32', 'go: u32', 'pro: u32', 'dso: u32'],
  [
    ['DPK', 'f32'],
    ['DPV', 'f32'],
    ['DOUT', 'f32'],
    ['Q', 'f32'],
    ['GATE', 'f32'],
    ['PROBS', 'f32'],
    ['SCR', 'f32'],
  ],
  `${entry(64)}
  let id = lin * 64u + li;
  if (id >= p.K * p.kvs) { return; }
  let j = id / p.kvs;
  let c = id % p.kvs;
  let kvh = c / p.hs;
  let d = c % p.hs;
  var sk = 0.0;
  var sv = 0.0;
  for (var b = 0u; b < p.B; b++) {
    for (var t = 0u; t < p.T; t++) {
      for (var hh = 0u; hh < p.rep; hh++) {
        let h = kvh * p.rep + hh;
        let idx = ((b * p.H + h) * p.T + t) * p.K + j;
        let row = (b * p.T + t) * p.qs + h * p.hs + d;
        sk += SCR[p.dso + idx] * Q[p.qo + row];
        sv += GATE[p.go + h] * PROBS[p.pro + idx] * DOUT[p.doo + row];
      }
    }
  }
  DPK[p.dpko + id] = DPK[p.dpko + id] + sk;
  DPV[p.dpvo + id] = DPV[p.dpvo + id] + sv;
}`,
);

/** dgate (H) += the rows' shares: one thread per head. */
export const PROMPT_BACK_GATE = shader(
  ['B: u32', 'T: u32', 'H: u32', 'dgo: u32', 'so: u32'],
  [
    ['DG', 'f32'],
    ['SCR', 'f32'],
  ],
  `${entry(64)}
  let h = lin * 64u + li;
  if (h >= p.H) { return; }
  var s = 0.0;
  for (var b = 0u; b < p.B; b++) {
    for (var t = 0u; t < p.T; t++) { s += SCR[p.so + (b * p.H + h) * p.T + t]; }
  }
  DG[p.dgo + h] = DG[p.dgo + h] + s;
}`,
);
