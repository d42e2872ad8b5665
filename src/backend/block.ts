// Backend.block composed of a backend's own kernels and memory copies: the block of the
// TypeScript oracle and of the WebGPU backend (the native backend makes it one call,
// native/block.cc, with the same kernels in the same order).

import type { Matrix } from '../core/weights.js';
import type { AttnShape, Backend, Kernels } from './backend.js';

/** block()'s weights against each other and the shape, with native/addon.cc's messages (block_shapes). */
function checkBlockShapes(name: string, ws: Record<'wq' | 'wk' | 'wv' | 'wo' | 'w1' | 'w3' | 'w2', Matrix>, s: AttnShape): void {
  if (s.hs % 2 !== 0) throw new RangeError(`${name} block: s.hs must be even`);
  const dim = ws.wq.cols,
    qDim = s.H * s.hs,
    kvDim = s.Hkv * s.hs,
    hidden = ws.w1.rows;
  const want: [keyof typeof ws, number, number][] = [
    ['wq', qDim, dim],
    ['wk', kvDim, dim],
    ['wv', kvDim, dim],
    ['wo', dim, qDim],
    ['w1', hidden, dim],
    ['w3', hidden, dim],
    ['w2', dim, hidden],
  ];
  for (const [n, rows, cols] of want) {
    const m = ws[n];
    if (m.rows !== rows || m.cols !== cols) throw new RangeError(`${name} block: ${n} is ${m.rows} x ${m.cols}, expected ${rows} x ${cols}`);
  }
}

/** block() for `be`, calling its kernels one by one (be is read when the block runs). */
export function composedBlock(be: Backend): Kernels['block'] {
  return (x, attnNorm, wq, wk, wv, wo, ffnNorm, w1, w3, w2, h, q, k, v, att, a, b, g, kc, vc, cacheRows, pos, s, cos, sin, eps) => {
    checkBlockShapes(be.name, { wq, wk, wv, wo, w1, w3, w2 }, s);
    const M = s.B * s.T,
      dim = wq.cols,
      kvDim = s.Hkv * s.hs;
    be.rmsnorm(h, x, attnNorm, M, dim, eps); // h (M, dim)
    be.matmul3(q, k, v, h, wq, wk, wv, M); // q (M, H*hs), k / v (M, kvDim)
    be.rope(q, s.B, s.T, s.H, s.hs, pos, cos, sin, false);
    be.rope(k, s.B, s.T, s.Hkv, s.hs, pos, cos, sin, false);
    for (let r = 0; r < s.B; r++) {
      const dst = (cacheRows[r] * s.S + pos[r]) * kvDim,
        src = r * s.T * kvDim;
      be.memory.copy(kc, dst, k, src, s.T * kvDim);
      be.memory.copy(vc, dst, v, src, s.T * kvDim);
    }
    be.attention(att, q, kc, vc, pos, s, cacheRows); // (M, H*hs)
    be.matmul(x, att, wo, M, true);
    be.rmsnorm(h, x, ffnNorm, M, dim, eps);
    be.matmul2(a, b, h, w1, w3, M); // (M, hidden)
    be.siluGate(g, a, b, M * w1.rows);
    be.matmul(x, g, w2, M, true);
  };
}
