// Row-wise and elementwise kernels: RMSNorm (+ backward), RoPE, SiLU gate (+ backward), residual
// add, bf16 storage conversions, embedding lookup, softmax cross-entropy and AdamW. Written once
// over Highway (compiled per SIMD target, dispatched at run time: cpu.cc). Parallel over rows (or
// contiguous element ranges) when the work is large enough to pay for waking the pool;
// reductions whose result leaves the kernel (norms, losses) accumulate in double, in a fixed order.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "rows.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "common.h"
#include "simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace la {
namespace HWY_NAMESPACE {

void RmsnormRows(float* out, const float* x, const float* w, long r0, long r1, long dim, float eps, float* rstd) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  for (long r = r0; r < r1; r++) {
    const float* xr = x + r * dim;
    float* o = out + r * dim;
    const double ss = DotD(xr, xr, nullptr, dim);
    const float s = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
    if (rstd) rstd[r] = s;
    const VF sv = hn::Set(d, s);
    long i = 0;
    for (; i + N <= dim; i += N) hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(d, xr + i), sv), hn::LoadU(d, w + i)), d, o + i);
    for (; i < dim; i++) o[i] = xr[i] * s * w[i];
  }
}

// dx = s * (w*dy) - x * s^3 / dim * sum(w*dy*x)
void RmsnormBackRows(float* dx, const float* dy, const float* x, const float* w, const float* rstd, long r0, long r1, long dim, bool acc) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  for (long r = r0; r < r1; r++) {
    const float* xr = x + r * dim;
    const float* g = dy + r * dim;
    float* dr = dx + r * dim;
    const double s = rstd[r];
    const float c = static_cast<float>(DotD(w, g, xr, dim) * s * s * s / dim);
    const float sf = static_cast<float>(s);
    const VF cv = hn::Set(d, c), sv = hn::Set(d, sf);
    long i = 0;
    for (; i + N <= dim; i += N) {
      VF v = hn::Sub(hn::Mul(hn::Mul(sv, hn::LoadU(d, w + i)), hn::LoadU(d, g + i)), hn::Mul(cv, hn::LoadU(d, xr + i)));
      if (acc) v = hn::Add(hn::LoadU(d, dr + i), v);
      hn::StoreU(v, d, dr + i);
    }
    for (; i < dim; i++) {
      const float v = sf * w[i] * g[i] - c * xr[i];
      dr[i] = acc ? dr[i] + v : v;
    }
  }
}

// Rows [r0, r1) of x (B*T, H, hs), row r = (b, t) at position pos[b] + t; pairs (x[2i], x[2i+1]) rotate by table entry i.
void RopeRows(float* x, long r0, long r1, long T, long H, long hs, const int32_t* pos, const float* cos, const float* sin, bool inverse) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  const long half = hs / 2;
  const float sign = inverse ? -1.0f : 1.0f;
  for (long r = r0; r < r1; r++) {
    const long b = r / T, t = r % T;
    const long p = (static_cast<long>(pos[b]) + t) * half;
    const float* c = cos + p;
    const float* sn = sin + p;
    for (long h = 0; h < H; h++) {
      float* o = x + (r * H + h) * hs;
      long i = 0;
      if (N > 1) {
        for (; i + N <= half; i += N) {
          VF x0, x1;
          hn::LoadInterleaved2(d, o + 2 * i, x0, x1);
          const VF cc = hn::LoadU(d, c + i), ss = hn::Mul(hn::Set(d, sign), hn::LoadU(d, sn + i));
          hn::StoreInterleaved2(hn::Sub(hn::Mul(x0, cc), hn::Mul(x1, ss)), hn::Add(hn::Mul(x0, ss), hn::Mul(x1, cc)), d, o + 2 * i);
        }
      }
      for (; i < half; i++) {
        const float cc = c[i], ss = sign * sn[i];
        const float x0 = o[2 * i], x1 = o[2 * i + 1];
        o[2 * i] = x0 * cc - x1 * ss;
        o[2 * i + 1] = x0 * ss + x1 * cc;
      }
    }
  }
}

// out = silu(a) * b = a / (1 + exp(-a)) * b on [i0, i1).
void SiluGateRange(float* out, const float* a, const float* b, long i0, long i1) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  const VF one = hn::Set(d, 1.0f);
  for (long i = i0; i < i1; i += N) {
    const size_t k = static_cast<size_t>(i1 - i < N ? i1 - i : N);
    const bool full = static_cast<long>(k) == N;
    const VF av = full ? hn::LoadU(d, a + i) : LoadPart(d, a + i, k);
    const VF bv = full ? hn::LoadU(d, b + i) : LoadPart(d, b + i, k);
    const VF r = hn::Mul(hn::Div(av, hn::Add(one, Exp(d, hn::Neg(av)))), bv);
    if (full) hn::StoreU(r, d, out + i);
    else StorePart(d, r, out + i, k);
  }
}

void SiluGateBackRange(float* da, float* db, const float* dy, const float* a, const float* b, long i0, long i1) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  const VF one = hn::Set(d, 1.0f);
  for (long i = i0; i < i1; i += N) {
    const size_t k = static_cast<size_t>(i1 - i < N ? i1 - i : N);
    const bool full = static_cast<long>(k) == N;
    const VF av = full ? hn::LoadU(d, a + i) : LoadPart(d, a + i, k);
    const VF bv = full ? hn::LoadU(d, b + i) : LoadPart(d, b + i, k);
    const VF g = full ? hn::LoadU(d, dy + i) : LoadPart(d, dy + i, k);
    const VF sig = hn::Div(one, hn::Add(one, Exp(d, hn::Neg(av))));
    const VF dbv = hn::Mul(hn::Mul(g, av), sig);
    const VF dav = hn::Mul(hn::Mul(hn::Mul(g, bv), sig), hn::MulAdd(av, hn::Sub(one, sig), one));
    if (full) {
      hn::StoreU(dbv, d, db + i);
      hn::StoreU(dav, d, da + i);
    } else {
      StorePart(d, dbv, db + i, k);
      StorePart(d, dav, da + i, k);
    }
  }
}

void ToBf16Range(uint16_t* out, const float* x, long i0, long i1) {
  const DF d;
  const DU16 d16;
  const DI32 di;
  const long N = static_cast<long>(hn::Lanes(d));
  long i = i0;
  for (; i + N <= i1; i += N) {
    const auto bits = hn::BitCast(di, hn::ShiftRight<16>(Bf16RoundBits(d, hn::LoadU(d, x + i))));
    hn::StoreU(hn::DemoteTo(d16, bits), d16, out + i);  // values < 65536: the demotion is exact
  }
  const uint32_t* u = reinterpret_cast<const uint32_t*>(x);
  for (; i < i1; i++) out[i] = static_cast<uint16_t>(bf16_round_bits(u[i]) >> 16);
}

void FromBf16Range(float* out, const uint16_t* x, long i0, long i1) { Bf16ToF32(out + i0, x + i0, i1 - i0); }

void AddRange(float* x, const float* y, long i0, long i1) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  long i = i0;
  for (; i + N <= i1; i += N) hn::StoreU(hn::Add(hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, x + i);
  for (; i < i1; i++) x[i] += y[i];
}

// The first index of the largest of x[0, n), n >= 1: the maximum over the numbers (a NaN lane
// never replaces one: Gt is false), then its first occurrence (== also matches -0 for +0, as the
// scalar scan with `>` keeps the first of them). x[0] NaN gives 0, as that scan does.
long ArgmaxRange(const float* x, long n) {
  if (!(x[0] == x[0])) return 0;
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  float m = x[0];
  long i = 0;
  if (n >= N) {
    VF vm = hn::Set(d, m);
    for (; i + N <= n; i += N) {
      const VF v = hn::LoadU(d, x + i);
      vm = hn::IfThenElse(hn::Gt(v, vm), v, vm);
    }
    m = hn::GetLane(hn::MaxOfLanes(d, vm));
  }
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  const VF vm = hn::Set(d, m);
  long j = 0;
  for (; j + N <= n; j += N) {
    const intptr_t f = hn::FindFirstTrue(d, hn::Eq(hn::LoadU(d, x + j), vm));
    if (f >= 0) return j + f;
  }
  for (; j < n; j++)
    if (x[j] == m) return j;
  return 0;
}

// out (n, dim) = rows ids[i] of table (vocab, dim); ids are validated by the caller.
void EmbedRows(float* out, const void* table, int wk, long dim, const int32_t* ids, long n) {
  for (long i = 0; i < n; i++) {
    const long id = ids[i];
    if (wk == kWBF16) Bf16ToF32(out + i * dim, static_cast<const uint16_t*>(table) + id * dim, dim);
    else if (wk == kWF16) F16ToF32(out + i * dim, static_cast<const uint16_t*>(table) + id * dim, dim);
    else std::memcpy(out + i * dim, static_cast<const float*>(table) + id * dim, dim * sizeof(float));
  }
}

// Loss of rows [r0, r1) into loss[r]; gradient rows (softmax - onehot) * scale when dlogits.
void CrossEntropyRows(const float* logits, const int32_t* targets, long r0, long r1, long V, float* dlogits, float scale, double* loss) {
  const DF d;
  const DD dd;
  const DFH dh;
  const long N = static_cast<long>(hn::Lanes(d));
  for (long r = r0; r < r1; r++) {
    const float* l = logits + r * V;
    const int32_t tgt = targets[r];
    if (tgt < 0) {
      if (dlogits) std::memset(dlogits + r * V, 0, V * sizeof(float));
      continue;
    }
    const float mx = Max(l, V);
    const VF mv = hn::Set(d, mx);
    // sum of exp(l - mx) in double: each vector of exps widened in two halves, in order
    auto s = hn::Zero(dd);
    for (long i = 0; i < V; i += N) {
      const size_t k = static_cast<size_t>(V - i < N ? V - i : N);
      const VF ev = hn::IfThenElseZero(hn::FirstN(d, k), Exp(d, hn::Sub(static_cast<long>(k) == N ? hn::LoadU(d, l + i) : LoadPart(d, l + i, k), mv)));
#if HWY_TARGET == HWY_SCALAR
      (void)dh;
      s = hn::Add(s, hn::PromoteTo(dd, ev));
#else
      s = hn::Add(s, hn::Add(hn::PromoteTo(dd, hn::LowerHalf(dh, ev)), hn::PromoteTo(dd, hn::UpperHalf(dh, ev))));
#endif
    }
    const double lse = mx + std::log(hn::GetLane(hn::SumOfLanes(dd, s)));
    loss[r] = lse - l[tgt];
    if (dlogits) {
      float* g = dlogits + r * V;
      const VF lv = hn::Set(d, static_cast<float>(lse)), sv = hn::Set(d, scale);
      for (long i = 0; i < V; i += N) {
        const size_t k = static_cast<size_t>(V - i < N ? V - i : N);
        if (static_cast<long>(k) == N) hn::StoreU(hn::Mul(Exp(d, hn::Sub(hn::LoadU(d, l + i), lv)), sv), d, g + i);
        else StorePart(d, hn::Mul(Exp(d, hn::Sub(LoadPart(d, l + i, k), lv)), sv), g + i, k);
      }
      g[tgt] -= scale;
    }
  }
}

void AdamwRange(float* p, const float* g, float* m, float* v, long i0, long i1, float b1, float b2, float ob1, float ob2, float inv1,
                float inv2, float lr, float eps, float wd) {
  const DF d;
  const long N = static_cast<long>(hn::Lanes(d));
  const VF vb1 = hn::Set(d, b1), vb2 = hn::Set(d, b2), vob1 = hn::Set(d, ob1), vob2 = hn::Set(d, ob2);
  const VF vi1 = hn::Set(d, inv1), vi2 = hn::Set(d, inv2), vlr = hn::Set(d, lr), veps = hn::Set(d, eps), vwd = hn::Set(d, wd);
  long i = i0;
  for (; i + N <= i1; i += N) {
    const VF gi = hn::LoadU(d, g + i), pi = hn::LoadU(d, p + i);
    const VF mi = hn::Add(hn::Mul(vb1, hn::LoadU(d, m + i)), hn::Mul(vob1, gi));
    const VF vi = hn::Add(hn::Mul(vb2, hn::LoadU(d, v + i)), hn::Mul(hn::Mul(vob2, gi), gi));
    hn::StoreU(mi, d, m + i);
    hn::StoreU(vi, d, v + i);
    const VF upd = hn::Div(hn::Mul(mi, vi1), hn::Add(hn::Sqrt(hn::Mul(vi, vi2)), veps));
    hn::StoreU(hn::Sub(pi, hn::Mul(vlr, hn::Add(upd, hn::Mul(vwd, pi)))), d, p + i);
  }
  for (; i < i1; i++) {
    const float gi = g[i];
    const float mi = b1 * m[i] + ob1 * gi;
    const float vi = b2 * v[i] + ob2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float upd = (mi * inv1) / (std::sqrt(vi * inv2) + eps);
    p[i] -= lr * (upd + wd * p[i]);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace la
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <vector>

namespace la {

HWY_EXPORT(RmsnormRows);
HWY_EXPORT(RmsnormBackRows);
HWY_EXPORT(RopeRows);
HWY_EXPORT(SiluGateRange);
HWY_EXPORT(SiluGateBackRange);
HWY_EXPORT(ToBf16Range);
HWY_EXPORT(FromBf16Range);
HWY_EXPORT(AddRange);
HWY_EXPORT(ArgmaxRange);
HWY_EXPORT(EmbedRows);
HWY_EXPORT(CrossEntropyRows);
HWY_EXPORT(AdamwRange);

namespace {
// Elements per thread below which a streaming kernel stays single-threaded.
constexpr double kStreamGrain = 1 << 16;
// Elementwise kernels split their range in whole blocks of this many elements (a multiple of
// every target's lane count), so no two threads share a vector.
constexpr long kBlock = 64;

/** f(i0, i1) over [0, n) in whole blocks, on as many threads as `work` units pay for. */
template <class F>
void blocks(long n, double work, double grain, F&& f) {
  parallel_for((n + kBlock - 1) / kBlock, threads_for(work, grain), [&](long v0, long v1) { f(v0 * kBlock, v1 * kBlock < n ? v1 * kBlock : n); });
}
}  // namespace

void rmsnorm(float* out, const float* x, const float* w, long rows, long dim, float eps, float* rstd) {
  parallel_for(rows, threads_for(static_cast<double>(rows) * dim, kStreamGrain),
               [&](long r0, long r1) { HWY_DYNAMIC_DISPATCH(RmsnormRows)(out, x, w, r0, r1, dim, eps, rstd); });
}

void rmsnorm_back(float* dx, const float* dy, const float* x, const float* w, const float* rstd, long rows, long dim, bool acc) {
  parallel_for(rows, threads_for(static_cast<double>(rows) * dim, kStreamGrain),
               [&](long r0, long r1) { HWY_DYNAMIC_DISPATCH(RmsnormBackRows)(dx, dy, x, w, rstd, r0, r1, dim, acc); });
}

// x (B, T, H, hs) rotated in interleaved pairs at positions pos[b] + t; cos/sin (maxPos, hs/2).
void rope(float* x, long B, long T, long H, long hs, const int32_t* pos, const float* cos, const float* sin, bool inverse) {
  parallel_for(B * T, threads_for(static_cast<double>(B) * T * H * hs, kStreamGrain),
               [&](long r0, long r1) { HWY_DYNAMIC_DISPATCH(RopeRows)(x, r0, r1, T, H, hs, pos, cos, sin, inverse); });
}

void silu_gate(float* out, const float* a, const float* b, long n) {
  blocks(n, n * 8.0, kStreamGrain, [&](long i0, long i1) { HWY_DYNAMIC_DISPATCH(SiluGateRange)(out, a, b, i0, i1); });
}

void silu_gate_back(float* da, float* db, const float* dy, const float* a, const float* b, long n) {
  blocks(n, n * 8.0, kStreamGrain, [&](long i0, long i1) { HWY_DYNAMIC_DISPATCH(SiluGateBackRange)(da, db, dy, a, b, i0, i1); });
}

void to_bf16_array(uint16_t* out, const float* x, long n) {
  blocks(n, static_cast<double>(n), kStreamGrain * 4, [&](long i0, long i1) { HWY_DYNAMIC_DISPATCH(ToBf16Range)(out, x, i0, i1); });
}

void from_bf16_array(float* out, const uint16_t* x, long n) {
  blocks(n, static_cast<double>(n), kStreamGrain * 4, [&](long i0, long i1) { HWY_DYNAMIC_DISPATCH(FromBf16Range)(out, x, i0, i1); });
}

void add(float* x, const float* y, long n) {
  blocks(n, static_cast<double>(n), kStreamGrain * 4, [&](long i0, long i1) { HWY_DYNAMIC_DISPATCH(AddRange)(x, y, i0, i1); });
}

long argmax(const float* x, long n) { return HWY_DYNAMIC_DISPATCH(ArgmaxRange)(x, n); }

void embed(float* out, const Mat& table, const int32_t* ids, long n) {
  if (table.qtype) {
    const long rb = quant_row_bytes(table.qtype, table.cols);
    for (long i = 0; i < n; i++) quant_dequant_row(table.qtype, static_cast<const uint8_t*>(table.data) + ids[i] * rb, out + i * table.cols, table.cols);
    return;
  }
  HWY_DYNAMIC_DISPATCH(EmbedRows)(out, table.data, table.bf16 ? 1 : table.f16 ? 2 : 0, table.cols, ids, n);
}

// Softmax cross-entropy over rows of logits (rows, V). dlogits may alias logits; losses (rows) gets
// each row's loss when given (0 for rows without a target).
double cross_entropy(float* logits, const int32_t* targets, long rows, long V, float* dlogits, float scale, float* losses) {
  std::vector<double> loss(rows > 0 ? rows : 1, 0.0);
  parallel_for(rows, threads_for(static_cast<double>(rows) * V * 4, kStreamGrain), [&](long r0, long r1) {
    HWY_DYNAMIC_DISPATCH(CrossEntropyRows)(logits, targets, r0, r1, V, dlogits, scale, loss.data());
  });
  double total = 0;
  for (long r = 0; r < rows; r++) total += loss[r];
  if (losses)
    for (long r = 0; r < rows; r++) losses[r] = static_cast<float>(loss[r]);
  return total;
}

void adamw(float* p, const float* g, float* m, float* v, long n, const AdamwStep& o) {
  const double b1 = o.beta1, b2 = o.beta2;
  const float inv1 = 1.0f / static_cast<float>(1.0 - std::pow(b1, o.step));
  const float inv2 = 1.0f / static_cast<float>(1.0 - std::pow(b2, o.step));
  blocks(n, n * 4.0, kStreamGrain, [&](long i0, long i1) {
    HWY_DYNAMIC_DISPATCH(AdamwRange)(p, g, m, v, i0, i1, static_cast<float>(b1), static_cast<float>(b2),
                                     static_cast<float>(1.0 - b1), static_cast<float>(1.0 - b2), inv1, inv2, static_cast<float>(o.lr),
                                     static_cast<float>(o.eps), static_cast<float>(o.weightDecay));
  });
}

}  // namespace la
#endif  // HWY_ONCE
