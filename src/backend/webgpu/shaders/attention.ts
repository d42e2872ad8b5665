// WGSL for attention, one thread per query (flash-attention style): a workgroup takes 64
// consecutive positions of one (row, head), walks the keys in tiles that it loads into workgroup
// memory together, and each thread keeps its own online softmax (running max and sum, the output
// rescaled when the max grows), so there are no reductions across threads and no score rows in
// memory, whatever the context. A thread's query and output rows are arrays of the head size's
// class (the next power of two: a pipeline per class); loops run to the real head size.
//
// Two forms, as for the GEMM: 'tiled' shares the key/value tiles through workgroup memory (two
// barriers a tile: the GPU form); 'direct' reads them where they are (no workgroup memory or
// barriers: the form for software adapters, where barriers cost most of the run time and seconds
// of compile time per pipeline).
//
// The same shader serves causal attention over the slot cache (mode 0), the gated prompt branch
// (mode 1: out += gate * softmax(q pk^T) pv, zero-gate heads untouched, probabilities kept for
// backward) and bidirectional encoder attention (mode 2). Backward recomputes the probabilities:
// per query (dq, with each row's log-sum-exp and sum_j p_j dp_j kept in scratch), then per key (dk,
// dv over the queries that see it), so no thread adds into another's output.

import { entry, shader, type ShaderSpec } from './common.js';

export const MAX_HS = 256;

/** The head-size class of pipelines and per-thread arrays: the next power of two, at least 8. */
export function hsClass(hs: number): number {
  let c = 8;
  while (c < hs) c *= 2;
  return c;
}
const Q_TILE = 64; // queries (threads) per workgroup

/** Keys per tile: the tile's keys and values (or queries and output gradients) fit 16 KB of workgroup memory. */
export function tileOf(hs: number): number {
  return Math.max(1, Math.min(64, Math.floor(2048 / hs)));
}

/**
 * Below any score: the running max before the first key. Rescaling from it uses exp(max(m - s, -80))
 * (tiny, times a sum and output that are still 0): SwiftShader's exp of -3e38 gave NaN.
 */
const NEG = '-3.0e38';

/** Workgroups of an attention call over (B, H) pairs and T queries. */
export function queryGroups(B: number, H: number, T: number): number {
  return B * H * Math.ceil(T / Q_TILE);
}

/** Workgroup arrays for the tiles of the tiled form (none in the direct form). */
function tiles(tiled: boolean, n: number, hs: number, names: string[]): string {
  return tiled ? names.map((x) => `var<workgroup> ${x}: array<f32, ${n * hs}>;`).join('\n') : '';
}

/**
 * 'let name = value' for a value every thread of the workgroup computes alike: the tiled form's
 * loops around barriers need it provably uniform (thread 0's copy through workgroup memory).
 */
function uniform(tiled: boolean, name: string, value: string, wgVar: string): string {
  return tiled ? `  if (li == 0u) { ${wgVar} = ${value}; }\n  let ${name} = workgroupUniformLoad(&${wgVar});` : `  let ${name} = ${value};`;
}

/** Load the tile (tiled form: every thread a share, then a barrier); arrays [shared, source, source offset]. */
function load(tiled: boolean, arrays: [string, string, string][], src: string): string {
  if (!tiled) return '';
  return `    for (var e = li; e < cnt * p.hs; e += ${Q_TILE}u) {
      let src = ${src};
${arrays.map(([sh, g, o]) => `      ${sh}[e] = ${g}[${o} + src];`).join('\n')}
    }
    workgroupBarrier();`;
}

/** Where row jj of the tile starts: in the tile (tiled) or in the source (direct, given its index there). */
function row(tiled: boolean, direct: string): string {
  return tiled ? 'jj * p.hs' : direct;
}

/** Element d of a tile row. */
function at(tiled: boolean, shared: string, global: string, r: string): string {
  return tiled ? `${shared}[${r} + d]` : `${global}[${r} + d]`;
}

/**
 * The walk over keys j < n of this query, in tiles of KT up to the workgroup's nmax (loaded into
 * workgroup memory in the tiled form); `body` sees the row starts `kr`, `vr` (for `at`) and `j0 + jj`.
 */
function walkKeys(tiled: boolean, K: string, V: string, body: string): string {
  return `  for (var j0 = 0u; j0 < nmax; j0 += KT) {
    let cnt = min(KT, nmax - j0);
${load(
  tiled,
  [
    ['ks', K, `p.${K}_o`],
    ['vs', V, `p.${V}_o`],
  ],
  'kb + (j0 + e / p.hs) * p.kvs + e % p.hs',
)}
    if (valid) {
      for (var jj = 0u; jj < cnt && j0 + jj < n; jj++) {
        let kr = ${row(tiled, `p.${K}_o + kb + (j0 + jj) * p.kvs`)};
        let vr = ${row(tiled, `p.${V}_o + kb + (j0 + jj) * p.kvs`)};
${body}
      }
    }
${tiled ? '    workgroupBarrier();' : ''}
  }`;
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

export function attention(hs: number, tiled: boolean): ShaderSpec {
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
      'hasRows: u32',
      'hasProbs: u32',
      'hs: u32',
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
    `const KT = ${KT}u;
${tiles(tiled, KT, hs, ['ks', 'vs'])}
var<workgroup> wn: u32;
var<workgroup> wkb: u32;
${entry(Q_TILE)}
${QUERY_PRELUDE}
  var n = 0u; // keys this query sees
  if (p.mode == 0u) { n = u32(POS[p.POS_o + b]) + t + 1u; } else if (p.mode == 1u) { n = p.K; } else { n = p.T; }
  // keys the workgroup walks (its last query's) and where its cache row starts
  var n1 = 0u;
  var kb1 = 0u;
  let last = min(p.T, tile * ${Q_TILE}u + ${Q_TILE}u) - 1u;
  if (p.mode == 0u) {
    var cr = b;
    if (p.hasRows == 1u) { cr = u32(ROWS[p.ROWS_o + b]); }
    n1 = u32(POS[p.POS_o + b]) + last + 1u;
    kb1 = cr * p.S * p.kvs;
  } else if (p.mode == 1u) {
    n1 = p.K;
  } else {
    n1 = p.T;
    kb1 = b * p.T * p.kvs;
  }
${uniform(tiled, 'nmax', 'n1', 'wn')}
${uniform(tiled, 'kb0', 'kb1', 'wkb')}
  let kb = kb0 + kvh * p.hs;
  let qoff = p.Q_o + bt * p.qs + h * p.hs;
  var qv: array<f32, ${hs}>;
  var acc: array<f32, ${hs}>;
  if (valid) { for (var d = 0u; d < p.hs; d++) { qv[d] = Q[qoff + d]; } }
  var m = ${NEG};
  var l = 0.0;
${walkKeys(
  tiled,
  'Kc',
  'Vc',
  `        var s = 0.0;
        for (var d = 0u; d < p.hs; d++) { s += qv[d] * ${at(tiled, 'ks', 'Kc', 'kr')}; }
        s *= p.scale;
        if (s > m) {
          let c = exp(max(m - s, -80.0));
          l *= c;
          for (var d = 0u; d < p.hs; d++) { acc[d] *= c; }
          m = s;
        }
        let w = exp(s - m);
        l += w;
        for (var d = 0u; d < p.hs; d++) { acc[d] += w * ${at(tiled, 'vs', 'Vc', 'vr')}; }`,
)}
  if (!valid) { return; }
  let ooff = p.O_o + bt * p.qs + h * p.hs;
  if (p.mode == 1u) {
    let g = GATE[p.GATE_o + h];
    if (g != 0.0) { for (var d = 0u; d < p.hs; d++) { O[ooff + d] = O[ooff + d] + g * (acc[d] / l); } }
    if (p.hasProbs == 1u) {
      let pr = p.PROBS_o + ((b * p.H + h) * p.T + t) * p.K;
      for (var j = 0u; j < p.K; j++) {
        var s = 0.0;
        for (var d = 0u; d < p.hs; d++) { s += qv[d] * Kc[p.Kc_o + kb + j * p.kvs + d]; }
        PROBS[pr + j] = exp(s * p.scale - m) / l;
      }
    }
  } else {
    for (var d = 0u; d < p.hs; d++) { O[ooff + d] = acc[d] / l; }
  }
}`,
  );
}

const BACK_PARAMS = ['B: u32', 'T: u32', 'H: u32', 'Hkv: u32', 'rep: u32', 'kvs: u32', 'qs: u32', 'scale: f32', 'hs: u32'];

/** The buffers both backward passes read (the upstream gradient, q, k, v, and the per-query statistics). */
const BACK_INPUTS: [string, 'f32'][] = [
  ['DOUT', 'f32'],
  ['Q', 'f32'],
  ['Kb', 'f32'],
  ['Vb', 'f32'],
  ['LSE', 'f32'],
  ['DD', 'f32'],
];

/**
 * Per query (b, t, h) of a full causal pass: dq (overwritten), and LSE / DD at (b*T + t)*H + h for
 * the per-key pass. One pass keeps the running max, sum and sum_j e_j dp_j; a second makes dq.
 */
export function attentionBackQ(hs: number, tiled: boolean): ShaderSpec {
  const KT = tileOf(hs);
  const walk = (body: string): string =>
    walkKeys(
      tiled,
      'Kb',
      'Vb',
      `        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < p.hs; d++) {
          s += qv[d] * ${at(tiled, 'ks', 'Kb', 'kr')};
          dp += dov[d] * ${at(tiled, 'vs', 'Vb', 'vr')};
        }
${body}`,
    );
  return shader(
    BACK_PARAMS,
    [['DQ', 'f32'], ...BACK_INPUTS],
    `const KT = ${KT}u;
${tiles(tiled, KT, hs, ['ks', 'vs'])}
${entry(Q_TILE)}
${QUERY_PRELUDE}
  let n = t + 1u;
  let nmax = min(p.T, tile * ${Q_TILE}u + ${Q_TILE}u);
  let kb = b * p.T * p.kvs + kvh * p.hs;
  let qoff = bt * p.qs + h * p.hs;
  var qv: array<f32, ${hs}>;
  var dov: array<f32, ${hs}>;
  if (valid) {
    for (var d = 0u; d < p.hs; d++) {
      qv[d] = Q[p.Q_o + qoff + d];
      dov[d] = DOUT[p.DOUT_o + qoff + d];
    }
  }
  var m = ${NEG};
  var l = 0.0;
  var dn = 0.0; // sum_j exp(s_j - m) dp_j, rescaled with l
${walk(`        s *= p.scale;
        if (s > m) {
          let c = exp(max(m - s, -80.0));
          l *= c;
          dn *= c;
          m = s;
        }
        let w = exp(s - m);
        l += w;
        dn += w * dp;`)}
  let lse = m + log(l);
  let D = dn / l;
  var acc: array<f32, ${hs}>;
${walk(`        let ds = exp(s * p.scale - lse) * (dp - D) * p.scale;
        for (var d = 0u; d < p.hs; d++) { acc[d] += ds * ${at(tiled, 'ks', 'Kb', 'kr')}; }`)}
  if (!valid) { return; }
  for (var d = 0u; d < p.hs; d++) { DQ[p.DQ_o + qoff + d] = acc[d]; }
  let r = bt * p.H + h;
  LSE[r] = lse;
  DD[r] = D;
}`,
  );
}

/** Per key (b, j, kv head), one thread each: dk, dv (overwritten) over the queries t >= j of the heads sharing it. */
export function attentionBackKV(hs: number, tiled: boolean): ShaderSpec {
  const QT = tileOf(hs);
  return shader(
    BACK_PARAMS,
    [['DK', 'f32'], ['DV', 'f32'], ...BACK_INPUTS],
    `const QT = ${QT}u;
${tiles(tiled, QT, hs, ['qs', 'dos'])}
${
  tiled
    ? `var<workgroup> lse: array<f32, ${QT}>;
var<workgroup> dd: array<f32, ${QT}>;`
    : ''
}
${entry(Q_TILE)}
  let tiles = (p.T + ${Q_TILE - 1}u) / ${Q_TILE}u;
  if (lin >= p.B * p.Hkv * tiles) { return; }
  let tile = lin % tiles;
  let bk = lin / tiles;
  let kvh = bk % p.Hkv;
  let b = bk / p.Hkv;
  let j = tile * ${Q_TILE}u + li;
  let valid = j < p.T;
  let koff = (b * p.T + j) * p.kvs + kvh * p.hs;
  var kv: array<f32, ${hs}>;
  var vv: array<f32, ${hs}>;
  var adk: array<f32, ${hs}>;
  var adv: array<f32, ${hs}>;
  if (valid) {
    for (var d = 0u; d < p.hs; d++) {
      kv[d] = Kb[p.Kb_o + koff + d];
      vv[d] = Vb[p.Vb_o + koff + d];
    }
  }
  let tStart = tile * ${Q_TILE}u; // the workgroup's first key: no query before it sees any of its keys
  for (var hh = 0u; hh < p.rep; hh++) {
    let h = kvh * p.rep + hh;
    for (var t0 = tStart; t0 < p.T; t0 += QT) {
      let cnt = min(QT, p.T - t0);
${
  tiled
    ? `      for (var e = li; e < cnt * p.hs; e += ${Q_TILE}u) {
        let row = (b * p.T + t0 + e / p.hs) * p.qs + h * p.hs + e % p.hs;
        qs[e] = Q[p.Q_o + row];
        dos[e] = DOUT[p.DOUT_o + row];
      }
      for (var e = li; e < cnt; e += ${Q_TILE}u) {
        let r = (b * p.T + t0 + e) * p.H + h;
        lse[e] = LSE[r];
        dd[e] = DD[r];
      }
      workgroupBarrier();`
    : ''
}
      if (valid) {
        for (var tt = 0u; tt < cnt; tt++) {
          if (t0 + tt < j) { continue; }
          let qr = ${tiled ? 'tt * p.hs' : 'p.Q_o + (b * p.T + t0 + tt) * p.qs + h * p.hs'};
          let dr = ${tiled ? 'tt * p.hs' : 'p.DOUT_o + (b * p.T + t0 + tt) * p.qs + h * p.hs'};
          let ri = (b * p.T + t0 + tt) * p.H + h;
          var s = 0.0;
          var dp = 0.0;
          for (var d = 0u; d < p.hs; d++) {
            s += ${tiled ? 'qs' : 'Q'}[qr + d] * kv[d];
            dp += ${tiled ? 'dos' : 'DOUT'}[dr + d] * vv[d];
          }
          let pr = exp(s * p.scale - ${tiled ? 'lse[tt]' : 'LSE[ri]'});
          let dsc = pr * (dp - ${tiled ? 'dd[tt]' : 'DD[ri]'}) * p.scale;
          for (var d = 0u; d < p.hs; d++) {
            adk[d] += dsc * ${tiled ? 'qs' : 'Q'}[qr + d];
            adv[d] += pr * ${tiled ? 'dos' : 'DOUT'}[dr + d];
          }
        }
      }
${tiled ? '      workgroupBarrier();' : ''}
    }
  }
  if (!valid) { return; }
  for (var d = 0u; d < p.hs; d++) {
    DK[p.DK_o + koff + d] = adk[d];
    DV[p.DV_o + koff + d] = adv[d];
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
    [...PROMPT_PARAMS, 'hasDq: u32', 'dso: u32', 'dgo: u32', 'hs: u32'],
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
    `${entry(64)}
  let id = lin * 64u + li;
  if (id >= p.B * p.T * p.H) { return; }
  let h = id % p.H;
  let bt = id / p.H;
  let t = bt % p.T;
  let b = bt / p.T;
  let kvb = (h / p.rep) * p.hs;
  let g = GATE[p.GATE_o + h];
  let row = (b * p.H + h) * p.T + t;
  let pr = p.PROBS_o + row * p.K;
  let qoff = bt * p.qs + h * p.hs;
  var dov: array<f32, ${hs}>;
  for (var d = 0u; d < p.hs; d++) { dov[d] = DOUT[p.DOUT_o + qoff + d]; }
  var dg = 0.0;
  for (var j = 0u; j < p.K; j++) {
    var x = 0.0;
    for (var d = 0u; d < p.hs; d++) { x += dov[d] * PV[p.PV_o + j * p.kvs + kvb + d]; }
    dg += PROBS[pr + j] * x;
  }
  let total = g * dg;
  var acc: array<f32, ${hs}>;
  for (var j = 0u; j < p.K; j++) {
    var x = 0.0;
    for (var d = 0u; d < p.hs; d++) { x += dov[d] * PV[p.PV_o + j * p.kvs + kvb + d]; }
    let ds = PROBS[pr + j] * (g * x - total) * p.scale;
    SCR[p.dso + row * p.K + j] = ds;
    if (p.hasDq == 1u) { for (var d = 0u; d < p.hs; d++) { acc[d] += ds * PK[p.PK_o + j * p.kvs + kvb + d]; } }
  }
  if (p.hasDq == 1u) { for (var d = 0u; d < p.hs; d++) { DQ[p.DQ_o + qoff + d] = DQ[p.DQ_o + qoff + d] + acc[d]; } }
  SCR[p.dgo + row] = dg;
}`,
  );
}

/** dpk, dpv (K, Hkv*hs) += sums over (b, t, heads of the group): one thread per element. */
export const PROMPT_BACK_KV = shader(
  [...PROMPT_PARAMS, 'hs: u32', 'dso: u32'],
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
        sk += SCR[p.dso + idx] * Q[p.Q_o + row];
        sv += GATE[p.GATE_o + h] * PROBS[p.PROBS_o + idx] * DOUT[p.DOUT_o + row];
      }
    }
  }
  DPK[p.DPK_o + id] = DPK[p.DPK_o + id] + sk;
  DPV[p.DPV_o + id] = DPV[p.DPV_o + id] + sv;
}`,
);

/** dgate (H) += the rows' shares: one thread per head. */
export const PROMPT_BACK_GATE = shader(
  ['B: u32', 'T: u32', 'H: u32', 'so: u32'],
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
  DG[p.DG_o + h] = DG[p.DG_o + h] + s;
}`,
);
