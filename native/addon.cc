// N-API glue of the native backend: argument checking and zero-copy access to the caller's
// typed arrays (napi_get_typedarray_info gives the view's own data pointer, byteOffset already
// applied), then a call into the kernels in la::. Every buffer length is checked against the
// shape before any kernel runs, so a wrong call throws a RangeError instead of touching memory
// outside the arrays. Uses the plain C node_api.h (no node-addon-api dependency).
//
// The numeric core is hand-written C++ because no TypeScript or wasm tensor library comes within
// 5x of PyTorch on CPU (BRIEF section 3); this addon over OpenBLAS + AVX-512/AMX does.

#include <node_api.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "common.h"

namespace {

class Call {
 public:
  Call(napi_env env, napi_callback_info info, const char* name) : env_(env), name_(name) {
    argc_ = kMax;
    if (napi_get_cb_info(env, info, &argc_, argv_, nullptr, nullptr) != napi_ok) fail("bad call");
  }
  bool ok() const { return ok_; }
  napi_env env() const { return env_; }

  bool present(size_t i) {
    if (!ok_ || i >= argc_) return false;
    napi_valuetype t;
    if (napi_typeof(env_, argv_[i], &t) != napi_ok) return false;
    return t != napi_undefined && t != napi_null;
  }

  double num(size_t i, const char* what) {
    if (!ok_) return 0;
    double v = 0;
    if (i >= argc_ || napi_get_value_double(env_, argv_[i], &v) != napi_ok) {
      fail(std::string(what) + " must be a number");
      return 0;
    }
    return v;
  }

  long integer(size_t i, const char* what, long min = 0) {
    double v = num(i, what);
    if (!ok_) return 0;
    if (!(v == std::floor(v)) || v < static_cast<double>(min) || v > 9.0e15) {
      fail(std::string(what) + " must be an integer >= " + std::to_string(min) + " (got " + std::to_string(v) + ")", true);
      return 0;
    }
    return static_cast<long>(v);
  }

  bool flag(size_t i) {
    if (!ok_ || !present(i)) return false;
    bool b = false;
    napi_value v;
    if (napi_coerce_to_bool(env_, argv_[i], &v) != napi_ok || napi_get_value_bool(env_, v, &b) != napi_ok) return false;
    return b;
  }

  // A typed array of the given element type with at least `need` elements (need < 0: any).
  void* array(size_t i, const char* what, napi_typedarray_type want, double need, size_t* lenOut = nullptr) {
    if (!ok_) return nullptr;
    bool is = false;
    if (i >= argc_ || napi_is_typedarray(env_, argv_[i], &is) != napi_ok || !is) {
      fail(std::string(what) + " must be a " + type_name(want));
      return nullptr;
    }
    napi_typedarray_type type;
    size_t len = 0, off = 0;
    void* data = nullptr;
    napi_value ab;
    if (napi_get_typedarray_info(env_, argv_[i], &type, &len, &data, &ab, &off) != napi_ok || type != want) {
      fail(std::string(what) + " must be a " + type_name(want));
      return nullptr;
    }
    if (need >= 0 && static_cast<double>(len) < need) {
      fail(std::string(what) + " is too small: " + std::to_string(len) + " elements, need " + std::to_string(static_cast<long long>(need)), true);
      return nullptr;
    }
    if (lenOut) *lenOut = len;
    return data;
  }
  float* f32(size_t i, const char* what, double need) { return static_cast<float*>(array(i, what, napi_float32_array, need)); }
  int32_t* i32(size_t i, const char* what, double need) { return static_cast<int32_t*>(array(i, what, napi_int32_array, need)); }
  uint16_t* u16(size_t i, const char* what, double need) { return static_cast<uint16_t*>(array(i, what, napi_uint16_array, need)); }

  // Weight data: Float32Array (f32) or Uint16Array (bf16), at least `need` elements.
  const void* weights(size_t i, const char* what, double need, bool* bf16, size_t* lenOut = nullptr) {
    if (!ok_) return nullptr;
    bool is = false;
    napi_typedarray_type type;
    size_t len = 0, off = 0;
    void* data = nullptr;
    napi_value ab;
    if (i >= argc_ || napi_is_typedarray(env_, argv_[i], &is) != napi_ok || !is ||
        napi_get_typedarray_info(env_, argv_[i], &type, &len, &data, &ab, &off) != napi_ok ||
        (type != napi_float32_array && type != napi_uint16_array)) {
      fail(std::string(what) + " must be a Float32Array (f32) or Uint16Array (bf16)");
      return nullptr;
    }
    if (static_cast<double>(len) < need) {
      fail(std::string(what) + " is too small: " + std::to_string(len) + " elements, need " + std::to_string(static_cast<long long>(need)), true);
      return nullptr;
    }
    *bf16 = type == napi_uint16_array;
    if (lenOut) *lenOut = len;
    return data;
  }

  // Throws a RangeError built by msg() unless cond holds (the message is only built on failure).
  template <class F>
  void require(bool cond, F&& msg) {
    if (ok_ && !cond) fail(msg(), true);
  }

  void fail(const std::string& msg, bool range = false) {
    if (!ok_) return;
    ok_ = false;
    std::string m = std::string("native ") + name_ + ": " + msg;
    if (range) napi_throw_range_error(env_, nullptr, m.c_str());
    else napi_throw_type_error(env_, nullptr, m.c_str());
  }

  napi_value undefined() {
    napi_value u;
    napi_get_undefined(env_, &u);
    return u;
  }

 private:
  static const char* type_name(napi_typedarray_type t) {
    switch (t) {
      case napi_float32_array: return "Float32Array";
      case napi_int32_array: return "Int32Array";
      case napi_uint16_array: return "Uint16Array";
      default: return "typed array";
    }
  }
  static constexpr size_t kMax = 20;
  napi_env env_;
  const char* name_;
  size_t argc_;
  napi_value argv_[kMax];
  bool ok_ = true;
};

using la::Shape;

// ------------------------------------------------------------------ linear algebra

// matmul(out, x, wData, N, K, M, accumulate): out (M, N) (+)= x (M, K) · W^T, W (N, K).
napi_value Matmul(napi_env env, napi_callback_info info) {
  Call c(env, info, "matmul");
  long N = c.integer(3, "N"), K = c.integer(4, "K"), M = c.integer(5, "M");
  bool acc = c.flag(6);
  bool bf16 = false;
  float* out = c.f32(0, "out", 1.0 * M * N);
  float* x = c.f32(1, "x", 1.0 * M * K);
  const void* w = c.weights(2, "w", 1.0 * N * K, &bf16);
  if (!c.ok()) return nullptr;
  la::matmul(out, x, w, bf16, N, K, M, acc);
  return c.undefined();
}

// matmulBack(out, dy, wData, N, K, M, accumulate): out (M, K) (+)= dy (M, N) · W.
napi_value MatmulBack(napi_env env, napi_callback_info info) {
  Call c(env, info, "matmulBack");
  long N = c.integer(3, "N"), K = c.integer(4, "K"), M = c.integer(5, "M");
  bool acc = c.flag(6);
  bool bf16 = false;
  float* out = c.f32(0, "out", 1.0 * M * K);
  float* dy = c.f32(1, "dy", 1.0 * M * N);
  const void* w = c.weights(2, "w", 1.0 * N * K, &bf16);
  if (!c.ok()) return nullptr;
  la::matmul_back(out, dy, w, bf16, N, K, M, acc);
  return c.undefined();
}

// gemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
napi_value Gemm(napi_env env, napi_callback_info info) {
  Call c(env, info, "gemm");
  bool tA = c.flag(0), tB = c.flag(1);
  long M = c.integer(2, "M"), N = c.integer(3, "N"), K = c.integer(4, "K");
  double alpha = c.num(5, "alpha");
  long lda = c.integer(7, "lda", 1), ldb = c.integer(9, "ldb", 1);
  double beta = c.num(10, "beta");
  long ldc = c.integer(12, "ldc", 1);
  // Stored shapes (rows x cols) of A, B, C.
  long aRows = tA ? K : M, aCols = tA ? M : K, bRows = tB ? N : K, bCols = tB ? K : N;
  c.require(lda >= aCols, [&] { return "lda must be >= " + std::to_string(aCols); });
  c.require(ldb >= bCols, [&] { return "ldb must be >= " + std::to_string(bCols); });
  c.require(ldc >= N, [&] { return "ldc must be >= " + std::to_string(N); });
  c.require(M < 2147483647L && N < 2147483647L && K < 2147483647L, [] { return std::string("dimensions exceed 32-bit BLAS"); });
  auto need = [](long rows, long cols, long ld) { return rows == 0 || cols == 0 ? 0.0 : (rows - 1.0) * ld + cols; };
  float* A = c.f32(6, "A", need(aRows, aCols, lda));
  float* B = c.f32(8, "B", need(bRows, bCols, ldb));
  float* C = c.f32(11, "C", need(M, N, ldc));
  if (!c.ok()) return nullptr;
  la::gemm(tA, tB, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), static_cast<float>(alpha), A, static_cast<int>(lda), B,
           static_cast<int>(ldb), static_cast<float>(beta), C, static_cast<int>(ldc));
  return c.undefined();
}

// ------------------------------------------------------------------ rows / elementwise

// rmsnorm(out, x, w, rows, dim, eps, rstd?)
napi_value Rmsnorm(napi_env env, napi_callback_info info) {
  Call c(env, info, "rmsnorm");
  long rows = c.integer(3, "rows"), dim = c.integer(4, "dim");
  double eps = c.num(5, "eps");
  float* out = c.f32(0, "out", 1.0 * rows * dim);
  float* x = c.f32(1, "x", 1.0 * rows * dim);
  float* w = c.f32(2, "w", dim);
  float* rstd = c.present(6) ? c.f32(6, "rstd", rows) : nullptr;
  if (!c.ok()) return nullptr;
  la::rmsnorm(out, x, w, rows, dim, static_cast<float>(eps), rstd);
  return c.undefined();
}

// rmsnormBack(dx, dy, x, w, rstd, rows, dim, accumulate)
napi_value RmsnormBack(napi_env env, napi_callback_info info) {
  Call c(env, info, "rmsnormBack");
  long rows = c.integer(5, "rows"), dim = c.integer(6, "dim");
  bool acc = c.flag(7);
  float* dx = c.f32(0, "dx", 1.0 * rows * dim);
  float* dy = c.f32(1, "dy", 1.0 * rows * dim);
  float* x = c.f32(2, "x", 1.0 * rows * dim);
  float* w = c.f32(3, "w", dim);
  float* rstd = c.f32(4, "rstd", rows);
  if (!c.ok()) return nullptr;
  la::rmsnorm_back(dx, dy, x, w, rstd, rows, dim, acc);
  return c.undefined();
}

// rope(x, B, T, nHeads, headDim, pos, cos, sin, inverse)
napi_value Rope(napi_env env, napi_callback_info info) {
  Call c(env, info, "rope");
  long B = c.integer(1, "B"), T = c.integer(2, "T"), H = c.integer(3, "nHeads"), hs = c.integer(4, "headDim");
  bool inv = c.flag(8);
  c.require(hs % 2 == 0, [] { return std::string("headDim must be even"); });
  float* x = c.f32(0, "x", 1.0 * B * T * H * hs);
  int32_t* pos = c.i32(5, "pos", B);
  size_t cosLen = 0, sinLen = 0;
  float* cs = static_cast<float*>(c.array(6, "cos", napi_float32_array, -1, &cosLen));
  float* sn = static_cast<float*>(c.array(7, "sin", napi_float32_array, -1, &sinLen));
  if (!c.ok()) return nullptr;
  if (T > 0 && hs > 0) {
    for (long b = 0; b < B; b++) {
      double end = (static_cast<double>(pos[b]) + T) * (hs / 2);
      c.require(pos[b] >= 0, [] { return std::string("pos must be >= 0"); });
      c.require(end <= static_cast<double>(cosLen) && end <= static_cast<double>(sinLen),
                [&] { return "position " + std::to_string(pos[b] + T - 1) + " is beyond the cos/sin tables"; });
      if (!c.ok()) return nullptr;
    }
  }
  la::rope(x, B, T, H, hs, pos, cs, sn, inv);
  return c.undefined();
}

// siluGate(out, a, b, n)
napi_value SiluGate(napi_env env, napi_callback_info info) {
  Call c(env, info, "siluGate");
  long n = c.integer(3, "n");
  float* out = c.f32(0, "out", n);
  float* a = c.f32(1, "a", n);
  float* b = c.f32(2, "b", n);
  if (!c.ok()) return nullptr;
  la::silu_gate(out, a, b, n);
  return c.undefined();
}

// siluGateBack(da, db, dy, a, b, n)
napi_value SiluGateBack(napi_env env, napi_callback_info info) {
  Call c(env, info, "siluGateBack");
  long n = c.integer(5, "n");
  float* da = c.f32(0, "da", n);
  float* db = c.f32(1, "db", n);
  float* dy = c.f32(2, "dy", n);
  float* a = c.f32(3, "a", n);
  float* b = c.f32(4, "b", n);
  if (!c.ok()) return nullptr;
  la::silu_gate_back(da, db, dy, a, b, n);
  return c.undefined();
}

// add(x, y, n)
napi_value Add(napi_env env, napi_callback_info info) {
  Call c(env, info, "add");
  long n = c.integer(2, "n");
  float* x = c.f32(0, "x", n);
  float* y = c.f32(1, "y", n);
  if (!c.ok()) return nullptr;
  la::add(x, y, n);
  return c.undefined();
}

// toBf16(out u16, x f32, n) / fromBf16(out f32, x u16, n)
napi_value ToBf16(napi_env env, napi_callback_info info) {
  Call c(env, info, "toBf16");
  long n = c.integer(2, "n");
  uint16_t* out = c.u16(0, "out", n);
  float* x = c.f32(1, "x", n);
  if (!c.ok()) return nullptr;
  la::to_bf16_array(out, x, n);
  return c.undefined();
}

napi_value FromBf16(napi_env env, napi_callback_info info) {
  Call c(env, info, "fromBf16");
  long n = c.integer(2, "n");
  float* out = c.f32(0, "out", n);
  uint16_t* x = c.u16(1, "x", n);
  if (!c.ok()) return nullptr;
  la::from_bf16_array(out, x, n);
  return c.undefined();
}

// embed(out, tableData, dim, ids, n)
napi_value Embed(napi_env env, napi_callback_info info) {
  Call c(env, info, "embed");
  long dim = c.integer(2, "dim"), n = c.integer(4, "n");
  bool bf16 = false;
  float* out = c.f32(0, "out", 1.0 * n * dim);
  size_t tlen = 0;
  const void* table = c.weights(1, "table", 0, &bf16, &tlen);
  int32_t* ids = c.i32(3, "ids", n);
  if (!c.ok()) return nullptr;
  const long vocab = dim > 0 ? static_cast<long>(tlen) / dim : 0;
  for (long i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= vocab) {
      c.fail("token id " + std::to_string(ids[i]) + " is outside the table (vocab " + std::to_string(vocab) + ")", true);
      return nullptr;
    }
  la::embed(out, table, bf16, dim, ids, n);
  return c.undefined();
}

// ------------------------------------------------------------------ attention

bool attn_shape(Call& c, size_t i, Shape* s, bool prompt) {
  s->B = c.integer(i, "B");
  s->T = c.integer(i + 1, "T");
  if (prompt) {
    s->K = c.integer(i + 2, "K", 1);
    s->S = 0;
  } else {
    s->S = c.integer(i + 2, "S");
    s->K = 0;
  }
  s->H = c.integer(i + 3, "nHeads", 1);
  s->Hkv = c.integer(i + 4, "nKvHeads", 1);
  s->hs = c.integer(i + 5, "headDim", 1);
  c.require(s->H % s->Hkv == 0, [] { return std::string("nHeads must be a multiple of nKvHeads"); });
  return c.ok();
}

// attention(out, q, kCache, vCache, pos, B, T, S, H, Hkv, hs, probs?)
napi_value Attention(napi_env env, napi_callback_info info) {
  Call c(env, info, "attention");
  Shape s;
  if (!attn_shape(c, 5, &s, false)) return nullptr;
  const double qn = 1.0 * s.B * s.T * s.H * s.hs, kvn = 1.0 * s.B * s.S * s.Hkv * s.hs;
  float* out = c.f32(0, "out", qn);
  float* q = c.f32(1, "q", qn);
  float* kc = c.f32(2, "kCache", kvn);
  float* vc = c.f32(3, "vCache", kvn);
  int32_t* pos = c.i32(4, "pos", s.B);
  float* probs = c.present(11) ? c.f32(11, "probs", 1.0 * s.B * s.H * s.T * s.S) : nullptr;
  if (!c.ok()) return nullptr;
  for (long b = 0; b < s.B; b++)
    if (pos[b] < 0 || static_cast<long>(pos[b]) + s.T > s.S) {
      c.fail("pos[" + std::to_string(b) + "] = " + std::to_string(pos[b]) + " with T = " + std::to_string(s.T) + " does not fit S = " + std::to_string(s.S), true);
      return nullptr;
    }
  la::attention(out, q, kc, vc, pos, s, probs);
  return c.undefined();
}

// attentionBack(dq, dk, dv, dout, q, k, v, B, T, S, H, Hkv, hs)
napi_value AttentionBack(napi_env env, napi_callback_info info) {
  Call c(env, info, "attentionBack");
  Shape s;
  if (!attn_shape(c, 7, &s, false)) return nullptr;
  const double qn = 1.0 * s.B * s.T * s.H * s.hs, kvn = 1.0 * s.B * s.T * s.Hkv * s.hs;
  float* dq = c.f32(0, "dq", qn);
  float* dk = c.f32(1, "dk", kvn);
  float* dv = c.f32(2, "dv", kvn);
  float* dout = c.f32(3, "dout", qn);
  float* q = c.f32(4, "q", qn);
  float* k = c.f32(5, "k", kvn);
  float* v = c.f32(6, "v", kvn);
  if (!c.ok()) return nullptr;
  la::attention_back(dq, dk, dv, dout, q, k, v, s);
  return c.undefined();
}

// promptAttention(out, q, pk, pv, gate, B, T, K, H, Hkv, hs, probs?)
napi_value PromptAttention(napi_env env, napi_callback_info info) {
  Call c(env, info, "promptAttention");
  Shape s;
  if (!attn_shape(c, 5, &s, true)) return nullptr;
  const double qn = 1.0 * s.B * s.T * s.H * s.hs, pn = 1.0 * s.K * s.Hkv * s.hs;
  float* out = c.f32(0, "out", qn);
  float* q = c.f32(1, "q", qn);
  float* pk = c.f32(2, "pk", pn);
  float* pv = c.f32(3, "pv", pn);
  float* gate = c.f32(4, "gate", s.H);
  float* probs = c.present(11) ? c.f32(11, "probs", 1.0 * s.B * s.H * s.T * s.K) : nullptr;
  if (!c.ok()) return nullptr;
  la::prompt_attention(out, q, pk, pv, gate, s, probs);
  return c.undefined();
}

// promptAttentionBack(dq?, dpk, dpv, dgate, dout, q, pk, pv, gate, probs, B, T, K, H, Hkv, hs)
napi_value PromptAttentionBack(napi_env env, napi_callback_info info) {
  Call c(env, info, "promptAttentionBack");
  Shape s;
  if (!attn_shape(c, 10, &s, true)) return nullptr;
  const double qn = 1.0 * s.B * s.T * s.H * s.hs, pn = 1.0 * s.K * s.Hkv * s.hs;
  float* dq = c.present(0) ? c.f32(0, "dq", qn) : nullptr;
  float* dpk = c.f32(1, "dpk", pn);
  float* dpv = c.f32(2, "dpv", pn);
  float* dgate = c.f32(3, "dgate", s.H);
  float* dout = c.f32(4, "dout", qn);
  float* q = c.f32(5, "q", qn);
  float* pk = c.f32(6, "pk", pn);
  float* pv = c.f32(7, "pv", pn);
  float* gate = c.f32(8, "gate", s.H);
  float* probs = c.f32(9, "probs", 1.0 * s.B * s.H * s.T * s.K);
  if (!c.ok()) return nullptr;
  la::prompt_attention_back(dq, dpk, dpv, dgate, dout, q, pk, pv, gate, probs, s);
  return c.undefined();
}

// ------------------------------------------------------------------ loss / optimiser

// crossEntropy(logits, targets, rows, V, dlogits?, scale) -> summed loss
napi_value CrossEntropy(napi_env env, napi_callback_info info) {
  Call c(env, info, "crossEntropy");
  long rows = c.integer(2, "rows"), V = c.integer(3, "V", 1);
  double scale = c.num(5, "scale");
  float* logits = c.f32(0, "logits", 1.0 * rows * V);
  int32_t* targets = c.i32(1, "targets", rows);
  float* dl = c.present(4) ? c.f32(4, "dlogits", 1.0 * rows * V) : nullptr;
  if (!c.ok()) return nullptr;
  for (long r = 0; r < rows; r++)
    if (targets[r] >= V) {
      c.fail("target " + std::to_string(targets[r]) + " is outside the vocabulary (" + std::to_string(V) + ")", true);
      return nullptr;
    }
  double total = la::cross_entropy(logits, targets, rows, V, dl, static_cast<float>(scale));
  napi_value r;
  napi_create_double(env, total, &r);
  return r;
}

// adamw(p, g, m, v, n, lr, beta1, beta2, eps, weightDecay, step)
napi_value Adamw(napi_env env, napi_callback_info info) {
  Call c(env, info, "adamw");
  long n = c.integer(4, "n");
  double lr = c.num(5, "lr"), b1 = c.num(6, "beta1"), b2 = c.num(7, "beta2"), eps = c.num(8, "eps"), wd = c.num(9, "weightDecay"),
         step = c.num(10, "step");
  float* p = c.f32(0, "p", n);
  float* g = c.f32(1, "g", n);
  float* m = c.f32(2, "m", n);
  float* v = c.f32(3, "v", n);
  if (!c.ok()) return nullptr;
  la::adamw(p, g, m, v, n, lr, b1, b2, eps, wd, step);
  return c.undefined();
}

// ------------------------------------------------------------------ setup

// setThreads(n): threads used by the kernels (the pool grows as needed).
napi_value SetThreads(napi_env env, napi_callback_info info) {
  Call c(env, info, "setThreads");
  long n = c.integer(0, "n", 1);
  if (!c.ok()) return nullptr;
  la::pool_set_threads(static_cast<int>(n));
  return c.undefined();
}

// info() -> { avx512, avx512bf16, cpuAvx512bf16, amx, batchInvariant, threads }
napi_value Info(napi_env env, napi_callback_info) {
  napi_value o, v;
  napi_create_object(env, &o);
  napi_get_boolean(env, la::g_features.avx512, &v);
  napi_set_named_property(env, o, "avx512", v);
  napi_get_boolean(env, la::g_features.avx512bf16, &v);
  napi_set_named_property(env, o, "avx512bf16", v);
  napi_get_boolean(env, la::g_features.cpuAvx512bf16, &v);
  napi_set_named_property(env, o, "cpuAvx512bf16", v);
  napi_get_boolean(env, la::g_features.amx, &v);
  napi_set_named_property(env, o, "amx", v);
  napi_get_boolean(env, la::g_features.batchInvariant, &v);
  napi_set_named_property(env, o, "batchInvariant", v);
  napi_create_int32(env, la::pool_threads(), &v);
  napi_set_named_property(env, o, "threads", v);
  return o;
}

// setFeature(name, enabled) -> boolean now in effect. 'amx' / 'avx512bf16': turn the AMX or the
// AVX512_BF16 GEMM off (or back on, when the CPU has it), for tests and benchmarks of the fallbacks;
// 'batchInvariant': matmul results of a row independent of the rest of its batch.
napi_value SetFeature(napi_env env, napi_callback_info info) {
  Call c(env, info, "setFeature");
  bool on = c.flag(1);
  if (!c.ok()) return nullptr;
  char name[32] = {0};
  size_t len = 0;
  {
    napi_value argv[2];
    size_t argc = 2;
    napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
    if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
      napi_throw_type_error(env, nullptr, "native setFeature: name must be a string");
      return nullptr;
    }
  }
  bool now = false;
  if (std::string(name) == "amx") now = la::g_features.amx = on && la::amx_available();
  else if (std::string(name) == "batchInvariant") now = la::g_features.batchInvariant = on;
  else if (std::string(name) == "bf16Split") now = la::g_features.bf16Split = on;
  else if (std::string(name) == "avx512bf16") now = la::g_features.avx512bf16 = on && la::g_features.cpuAvx512bf16;
  else {
    napi_throw_type_error(env, nullptr, "native setFeature: unknown feature (amx, batchInvariant)");
    return nullptr;
  }
  napi_value r;
  napi_get_boolean(env, now, &r);
  return r;
}

// Every kernel entry point runs under la::NoDenormals (FTZ/DAZ) for the whole call and restores
// the JS thread's MXCSR on return; the argument checks inside do no float arithmetic.
template <napi_value (*F)(napi_env, napi_callback_info)>
napi_value kernel(napi_env env, napi_callback_info info) {
  la::NoDenormals nd;
  return F(env, info);
}

bool g_initialised = false;

}  // namespace

NAPI_MODULE_INIT() {
  if (!g_initialised) {
    g_initialised = true;
    openblas_set_num_threads(1);  // parallelism comes from our pool (see pool.cc)
    la::detect_features();
  }
  napi_property_descriptor props[] = {
      {"matmul", nullptr, kernel<Matmul>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"matmulBack", nullptr, kernel<MatmulBack>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"gemm", nullptr, kernel<Gemm>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"rmsnorm", nullptr, kernel<Rmsnorm>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"rmsnormBack", nullptr, kernel<RmsnormBack>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"rope", nullptr, kernel<Rope>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"siluGate", nullptr, kernel<SiluGate>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"siluGateBack", nullptr, kernel<SiluGateBack>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"add", nullptr, kernel<Add>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"toBf16", nullptr, kernel<ToBf16>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"fromBf16", nullptr, kernel<FromBf16>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"embed", nullptr, kernel<Embed>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"attention", nullptr, kernel<Attention>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"attentionBack", nullptr, kernel<AttentionBack>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"promptAttention", nullptr, kernel<PromptAttention>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"promptAttentionBack", nullptr, kernel<PromptAttentionBack>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"crossEntropy", nullptr, kernel<CrossEntropy>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"adamw", nullptr, kernel<Adamw>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setFeature", nullptr, SetFeature, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}
