// One transformer block of inference in one call (Backend.block): the kernels forward.ts calls
// for a layer that keeps no activations, in the same order on the same buffers, so the result is
// the same bits. A decode step of a small model is bound by the cost of each call from
// JavaScript (argument conversion, the engine's code around it), not by its arithmetic: ten
// calls with 95 arguments and two cache copies in JavaScript per layer become one call with 52.

#include "common.h"

namespace la {

void block(float* x, const float* attnNorm, const Mat& wq, const Mat& wk, const Mat& wv, const Mat& wo, const float* ffnNorm,
           const Mat& w1, const Mat& w3, const Mat& w2, float* h, float* q, float* k, float* v, float* att, float* a, float* b,
           float* g, float* kc, float* vc, const int32_t* cacheRows, const int32_t* pos, const AttnShape& s, const float* cos,
           const float* sin, double eps) {
  const long M = s.B * s.T, dim = wq.cols, kvDim = s.Hkv * s.hs;
  // ---- attention: h (M, dim), q (M, H*hs), k / v (M, kvDim), att (M, H*hs)
  rmsnorm(h, x, attnNorm, M, dim, static_cast<float>(eps), nullptr);
  matmul3(q, k, v, h, wq, wk, wv, M);
  rope(q, s.B, s.T, s.H, s.hs, pos, cos, sin, false);
  rope(k, s.B, s.T, s.Hkv, s.hs, pos, cos, sin, false);
  // this chunk's keys / values at positions pos[r] .. pos[r]+T-1 of cache row cacheRows[r]
  for (long r = 0; r < s.B; r++) {
    const long dst = (static_cast<long>(cacheRows[r]) * s.S + pos[r]) * kvDim, src = r * s.T * kvDim;
    std::memcpy(kc + dst, k + src, sizeof(float) * s.T * kvDim);
    std::memcpy(vc + dst, v + src, sizeof(float) * s.T * kvDim);
  }
  attention(att, q, kc, vc, pos, s, cacheRows);
  matmul(x, att, wo, M, true);
  // ---- feed-forward (SwiGLU): a / b / g (M, hidden)
  rmsnorm(h, x, ffnNorm, M, dim, static_cast<float>(eps), nullptr);
  matmul2(a, b, h, w1, w3, M);
  silu_gate(g, a, b, M * w1.rows);
  matmul(x, g, w2, M, true);
}

}  // namespace la
