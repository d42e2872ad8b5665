// N-API glue of the native backend, generated from one kernel list (LA_KERNELS below): each entry
// names a kernel and describes its arguments in order (typed-array buffers with the length they
// must have, numbers, integers, flags, and the named objects of src/backend/backend.ts: AttnShape,
// PromptShape, Matrix, AdamwStep, whose fields are listed once here, in LA_*_FIELDS), plus value
// checks. From that entry come the wrapper (read, check, call la::, convert the result), its
// function in every backend object, and its argument layout in `signatures`, from which
// src/backend/native.ts generates the JS side: a function with the Backend method's parameters
// that passes an object argument's fields in list order. The fields are read in JS (inline
// caches) because napi_get_property per field made small decode-time kernel calls several times
// dearer than positional arguments.
// Every buffer length is checked before any kernel runs, so a wrong call throws a RangeError
// instead of touching memory outside the arrays; typed arrays are used in place (zero-copy,
// napi_get_typedarray_info gives the view's own data pointer). Plain C node_api.h.
//
// The numeric core is hand-written C++ because no TypeScript or wasm tensor library comes within
// 5x of PyTorch on CPU (bench/README.md, "Kernel decisions"); this addon over OpenBLAS, Highway SIMD kernels and AMX does.
//
// Adding a kernel: its la:: function (arguments in the order of the Backend method) and one
// line in LA_KERNELS.

#include <node_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>

#include "common.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace {

// ------------------------------------------------------------------ object fields
// The fields of each object kind, in the order the JS side passes them (F(name, min) for integer
// fields, F(name) for numbers); the same names as the TS interfaces and the la:: structs.
#define LA_ATTN_FIELDS(F) F(B, 0) F(T, 0) F(S, 0) F(H, 1) F(Hkv, 1) F(hs, 1)
#define LA_PROMPT_FIELDS(F) F(B, 0) F(T, 0) F(K, 0) F(H, 1) F(Hkv, 1) F(hs, 1)  // K >= 1 except for prefixAttention
#define LA_ADAMW_FIELDS(F) F(lr) F(beta1) F(beta2) F(eps) F(weightDecay) F(step)
#define LA_MAT_FIELDS(F) F(data) F(rows, 0) F(cols, 0) F(dtype)

#define LA_FIELD_STR_(f, ...) #f,
const char* const kAttnFields[] = {LA_ATTN_FIELDS(LA_FIELD_STR_) nullptr};
const char* const kPromptFields[] = {LA_PROMPT_FIELDS(LA_FIELD_STR_) nullptr};
const char* const kAdamwFields[] = {LA_ADAMW_FIELDS(LA_FIELD_STR_) nullptr};
const char* const kMatFields[] = {LA_MAT_FIELDS(LA_FIELD_STR_) nullptr};

/** Matrix dtypes by name and ggml type id: a Matrix's dtype field may be either (the module's
 * `dtypeIds` hands this table to native.ts, which passes ids: a name costs a UTF-8 copy and
 * compares for each matrix of every call). */
const struct {
  const char* name;
  int id;
} kDtypes[] = {{"f32", 0}, {"f16", 1}, {"bf16", 30}, {"q8_0", 8}, {"q4_0", 2}, {"q4_1", 3}, {"q5_0", 6}, {"q4_k", 12}, {"q5_k", 13}, {"q6_k", 14}};

/** What a backend's kernel functions carry: its thread count. Shared by the backend's functions
 * (which JavaScript may copy anywhere): freed when the last of them is collected. */
struct BackendCtx {
  int threads;
  int refs;
};

// ------------------------------------------------------------------ argument reading

class Call {
 public:
  Call(napi_env env, napi_callback_info info, const char* name) : env_(env), name_(name) {
    argc_ = kMax;
    void* data = nullptr;
    if (napi_get_cb_info(env, info, &argc_, argv_, nullptr, &data) != napi_ok || !data) {
      fail("bad call");
      return;
    }
    ctx_ = static_cast<const BackendCtx*>(data);
  }
  bool ok() const { return ok_; }
  napi_env env() const { return env_; }
  const BackendCtx* ctx() const { return ctx_; }

  bool present(size_t i) {
    if (!ok_ || i >= argc_) return false;
    napi_valuetype t;
    if (napi_typeof(env_, argv_[i], &t) != napi_ok) return false;
    return t != napi_undefined && t != napi_null;
  }

  double num(size_t i, const char* what, const char* sub = "") {
    return i < argc_ ? to_num(argv_[i], what, sub) : (fail(std::string(what) + sub + " must be a number"), 0.0);
  }
  long integer(size_t i, const char* what, long min, const char* sub = "") { return to_integer(num(i, what, sub), what, min, sub); }

  bool flag(size_t i) {
    if (!ok_ || !present(i)) return false;
    bool b = false;
    napi_value v;
    if (napi_coerce_to_bool(env_, argv_[i], &v) != napi_ok || napi_get_value_bool(env_, v, &b) != napi_ok) return false;
    return b;
  }

  // A typed array of the given element type with at least `need` elements.
  void* array(size_t i, const char* what, napi_typedarray_type want, double need) {
    if (!ok_) return nullptr;
    return typed(i, what, want, want, need, nullptr);
  }
  float* f32(size_t i, const char* what, double need) { return static_cast<float*>(array(i, what, napi_float32_array, need)); }
  int32_t* i32(size_t i, const char* what, double need) { return static_cast<int32_t*>(array(i, what, napi_int32_array, need)); }
  uint16_t* u16(size_t i, const char* what, double need) { return static_cast<uint16_t*>(array(i, what, napi_uint16_array, need)); }
  float* f32_opt(size_t i, const char* what, double need) { return present(i) ? f32(i, what, need) : nullptr; }
  int32_t* i32_opt(size_t i, const char* what, double need) { return present(i) ? i32(i, what, need) : nullptr; }

  // Matrix at i (data, rows, cols, dtype): data a Float32Array (f32) or Uint16Array (bf16, f16) of >= rows *
  // cols elements, or for a quantized dtype ('q8_0', 'q4_k', ...) a Uint8Array of its blocks (>= rows * row bytes).
  la::Mat mat(size_t i, const char* what) {
    la::Mat m{nullptr, false, 0, 0};
    m.rows = integer(i + 1, what, 0, ".rows");
    m.cols = integer(i + 2, what, 0, ".cols");
    if (!ok_) return m;
    // dtype: its name or its ggml type id (kDtypes)
    char dt[8] = {0};
    size_t len = 0;
    napi_valuetype vt = napi_undefined;
    if (i + 3 < argc_) napi_typeof(env_, argv_[i + 3], &vt);
    if (vt == napi_number) {
      int32_t id = -1;
      napi_get_value_int32(env_, argv_[i + 3], &id);
      for (const auto& d : kDtypes)
        if (d.id == id) std::strcpy(dt, d.name);
      if (!dt[0]) {
        fail(std::string(what) + ".dtype id " + std::to_string(id) + " is not a known matrix dtype");
        return m;
      }
    } else if (i + 3 >= argc_ || napi_get_value_string_utf8(env_, argv_[i + 3], dt, sizeof dt, &len) != napi_ok) {
      fail(std::string(what) + ".dtype must be a string");
      return m;
    }
    for (const auto& q : kDtypes)
      if (la::quant_type_known(q.id) && std::strcmp(dt, q.name) == 0) m.qtype = q.id;
    if (m.qtype) {
      if (m.cols % la::quant_block(m.qtype) != 0) {
        fail(std::string(what) + ".cols " + std::to_string(m.cols) + " is not a multiple of the " + dt + " block size", true);
        return m;
      }
      m.data = typed(i, what, napi_uint8_array, napi_uint8_array, 1.0 * m.rows * la::quant_row_bytes(m.qtype, m.cols), nullptr, ".data");
      return m;
    }
    if (std::strcmp(dt, "f16") == 0) {
      m.f16 = true;
      m.data = typed(i, what, napi_uint16_array, napi_uint16_array, 1.0 * m.rows * m.cols, nullptr, ".data");
      return m;
    }
    if (std::strcmp(dt, "f32") != 0 && std::strcmp(dt, "bf16") != 0) {
      fail(std::string(what) + ".dtype \"" + dt + "\" is not a known matrix dtype");
      return m;
    }
    napi_typedarray_type type = napi_float32_array;
    m.data = typed(i, what, napi_float32_array, napi_uint16_array, 1.0 * m.rows * m.cols, &type, ".data");
    m.bf16 = type == napi_uint16_array;
    return m;
  }

  // Shapes and AdamwStep at i: their fields, one argument each, in LA_*_FIELDS order.
#define LA_INT_FIELD_(f, min) s.f = integer(k++, what, min, "." #f);
  la::AttnShape attn(size_t k, const char* what) {
    la::AttnShape s{0, 0, 0, 0, 0, 0};
    LA_ATTN_FIELDS(LA_INT_FIELD_)
    heads_divide(s.H, s.Hkv, what);
    return s;
  }
  la::PromptShape prompt(size_t k, const char* what) {
    la::PromptShape s{0, 0, 0, 0, 0, 0};
    LA_PROMPT_FIELDS(LA_INT_FIELD_)
    heads_divide(s.H, s.Hkv, what);
    return s;
  }
#undef LA_INT_FIELD_
  la::AdamwStep adamw(size_t k, const char* what) {
    la::AdamwStep s{0, 0, 0, 0, 0, 0};
#define LA_NUM_FIELD_(f) s.f = num(k++, what, "." #f);
    LA_ADAMW_FIELDS(LA_NUM_FIELD_)
#undef LA_NUM_FIELD_
    return s;
  }

  void fail(const std::string& msg, bool range = false) {
    if (!ok_) return;
    ok_ = false;
    std::string m = std::string("native ") + name_ + ": " + msg;
    if (range) napi_throw_range_error(env_, nullptr, m.c_str());
    else napi_throw_type_error(env_, nullptr, m.c_str());
  }

  // The kernel's result for JavaScript: undefined for void kernels, a number otherwise.
  template <class F>
  napi_value result(F&& f) {
    napi_value r;
    if constexpr (std::is_void_v<std::invoke_result_t<F>>) {
      f();
      napi_get_undefined(env_, &r);
    } else {
      napi_create_double(env_, static_cast<double>(f()), &r);
    }
    return r;
  }

 private:
  static const char* type_name(napi_typedarray_type t) {
    switch (t) {
      case napi_float32_array: return "Float32Array";
      case napi_int32_array: return "Int32Array";
      case napi_uint16_array: return "Uint16Array";
      case napi_uint8_array: return "Uint8Array";
      default: return "typed array";
    }
  }

  double to_num(napi_value v, const char* what, const char* sub = "") {
    double d = 0;
    if (ok_ && napi_get_value_double(env_, v, &d) != napi_ok) fail(std::string(what) + sub + " must be a number");
    return ok_ ? d : 0;
  }

  long to_integer(double v, const char* what, long min, const char* sub = "") {
    if (!ok_) return 0;
    if (!(v == std::floor(v)) || v < static_cast<double>(min) || v > 9.0e15) {
      fail(std::string(what) + sub + " must be an integer >= " + std::to_string(min) + " (got " + std::to_string(v) + ")", true);
      return 0;
    }
    return static_cast<long>(v);
  }

  void heads_divide(long H, long Hkv, const char* what) {
    if (ok_ && H % Hkv != 0) fail(std::string(what) + ".H must be a multiple of " + what + ".Hkv", true);
  }

  // Argument i must be a typed array of type a or b with at least `need` elements; its type goes to *type.
  void* typed(size_t i, const char* what, napi_typedarray_type a, napi_typedarray_type b, double need, napi_typedarray_type* type,
              const char* sub = "") {
    napi_typedarray_type t;
    size_t len = 0;
    void* data = nullptr;
    if (!ok_) return nullptr;
    // napi_get_typedarray_info fails on anything but a typed array (napi_invalid_arg); asking for
    // neither the ArrayBuffer nor the offset keeps it to the few V8 calls that give the pointer.
    if (i >= argc_ || napi_get_typedarray_info(env_, argv_[i], &t, &len, &data, nullptr, nullptr) != napi_ok || (t != a && t != b)) {
      fail(std::string(what) + sub + " must be a " + type_name(a) + (a != b ? std::string(" or ") + type_name(b) : std::string()));
      return nullptr;
    }
    if (static_cast<double>(len) < need) {
      fail(std::string(what) + sub + " is too small: " + std::to_string(len) + " elements, need " + std::to_string(static_cast<long long>(need)), true);
      return nullptr;
    }
    if (type) *type = t;
    return data;
  }

  static constexpr size_t kMax = 64;  // block() takes 52
  napi_env env_;
  const char* name_;
  const BackendCtx* ctx_ = nullptr;
  size_t argc_ = 0;
  napi_value argv_[kMax];
  bool ok_ = true;
};

// ------------------------------------------------------------------ helpers of the length expressions and checks

/** Elements of a row-major (rows, cols) matrix with leading dimension ld. */
double strided(long rows, long cols, long ld) { return rows == 0 || cols == 0 ? 0.0 : (rows - 1.0) * ld + cols; }

/** 1 + the largest of the first n values (0 when n == 0 or v is null: the checks then fail elsewhere). */
double max_plus_one(const int32_t* v, long n) {
  if (!v) return 0;
  double m = 0;
  for (long i = 0; i < n; i++) m = v[i] + 1.0 > m ? v[i] + 1.0 : m;
  return m;
}

/** Cache rows an attention call reads: max(cacheRows) + 1, or B without cacheRows. */
double cache_rows(const int32_t* cacheRows, long B) { return cacheRows ? max_plus_one(cacheRows, B) : static_cast<double>(B); }

/** Elements of a RoPE table (maxPos, hs/2) that positions pos[b] + t, t < T, read. */
double rope_table(const int32_t* pos, long B, long T, long hs) { return B > 0 && T > 0 ? (max_plus_one(pos, B) - 1 + T) * (hs / 2) : 0; }

/** Empty when every one of v[0..n) lies in [lo, hi), else the message about the first that does not. */
std::string all_in(const char* what, const int32_t* v, long n, long lo, long hi) {
  for (long i = 0; i < n; i++)
    if (v[i] < lo || v[i] >= hi)
      return std::string(what) + " " + std::to_string(v[i]) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + ")";
  return std::string();
}

/** Empty when pos[b] >= 0 and pos[b] + T <= S for every row, else the message. */
std::string positions_fit(const int32_t* pos, long B, long T, long S) {
  for (long b = 0; b < B; b++)
    if (pos[b] < 0 || static_cast<long>(pos[b]) + T > S)
      return "pos[" + std::to_string(b) + "] = " + std::to_string(pos[b]) + " with T = " + std::to_string(T) + " does not fit S = " + std::to_string(S);
  return std::string();
}

/** Empty when block()'s weights fit each other and the shape (and hs is even), else the message (as backend/block.ts words it). */
std::string block_shapes(const la::Mat& wq, const la::Mat& wk, const la::Mat& wv, const la::Mat& wo, const la::Mat& w1, const la::Mat& w3,
                         const la::Mat& w2, const la::AttnShape& s) {
  if (s.hs % 2 != 0) return "s.hs must be even";
  const long dim = wq.cols, qDim = s.H * s.hs, kvDim = s.Hkv * s.hs, hidden = w1.rows;
  const struct {
    const char* name;
    const la::Mat& m;
    long rows, cols;
  } want[] = {{"wq", wq, qDim, dim}, {"wk", wk, kvDim, dim}, {"wv", wv, kvDim, dim}, {"wo", wo, dim, qDim},
              {"w1", w1, hidden, dim}, {"w3", w3, hidden, dim}, {"w2", w2, dim, hidden}};
  for (const auto& w : want)
    if (w.m.rows != w.rows || w.m.cols != w.cols)
      return std::string(w.name) + " is " + std::to_string(w.m.rows) + " x " + std::to_string(w.m.cols) + ", expected " + std::to_string(w.rows) +
             " x " + std::to_string(w.cols);
  return std::string();
}

// ------------------------------------------------------------------ the argument-list machinery
// A kernel's arguments are (KIND, name, param) triples; param is the required element count of a
// buffer, the minimum of an integer, unused (0) otherwise. (CHECK, message, 0) items come last:
// message is a std::string expression, empty when the arguments are acceptable. Reading runs in
// passes so that any length expression can use the scalars and shapes, and f32 lengths can use
// the contents of the int32 buffers (positions, cache rows).

#define LA_STR_(x) #x
#define LA_STR(x) LA_STR_(x)  // expands x first (an item's name arrives as LA_NAME (...))
#define LA_CAT_(a, b) a##b
#define LA_CAT(a, b) LA_CAT_(a, b)
#define LA_KIND(k, n, p) k
#define LA_NAME(k, n, p) n
#define LA_PARAM(k, n, p) p

// LA_FE(m, a0, a1, ...) = m(0, a0) m(1, a1) ... (up to 40 items)
#define LA_FE_N(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, \
                _28, _29, _30, _31, _32, _33, _34, _35, _36, _37, _38, _39, _40, N, ...)                                          \
  N
#define LA_FE(m, ...) \
  LA_CAT(LA_FE_, LA_FE_N(__VA_ARGS__, 40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, \
                         14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1))(m, 0, __VA_ARGS__)
#define LA_FE_1(m, i, a) m(i, a)
#define LA_FE_2(m, i, a, ...) m(i, a) LA_FE_1(m, (i + 1), __VA_ARGS__)
#define LA_FE_3(m, i, a, ...) m(i, a) LA_FE_2(m, (i + 1), __VA_ARGS__)
#define LA_FE_4(m, i, a, ...) m(i, a) LA_FE_3(m, (i + 1), __VA_ARGS__)
#define LA_FE_5(m, i, a, ...) m(i, a) LA_FE_4(m, (i + 1), __VA_ARGS__)
#define LA_FE_6(m, i, a, ...) m(i, a) LA_FE_5(m, (i + 1), __VA_ARGS__)
#define LA_FE_7(m, i, a, ...) m(i, a) LA_FE_6(m, (i + 1), __VA_ARGS__)
#define LA_FE_8(m, i, a, ...) m(i, a) LA_FE_7(m, (i + 1), __VA_ARGS__)
#define LA_FE_9(m, i, a, ...) m(i, a) LA_FE_8(m, (i + 1), __VA_ARGS__)
#define LA_FE_10(m, i, a, ...) m(i, a) LA_FE_9(m, (i + 1), __VA_ARGS__)
#define LA_FE_11(m, i, a, ...) m(i, a) LA_FE_10(m, (i + 1), __VA_ARGS__)
#define LA_FE_12(m, i, a, ...) m(i, a) LA_FE_11(m, (i + 1), __VA_ARGS__)
#define LA_FE_13(m, i, a, ...) m(i, a) LA_FE_12(m, (i + 1), __VA_ARGS__)
#define LA_FE_14(m, i, a, ...) m(i, a) LA_FE_13(m, (i + 1), __VA_ARGS__)
#define LA_FE_15(m, i, a, ...) m(i, a) LA_FE_14(m, (i + 1), __VA_ARGS__)
#define LA_FE_16(m, i, a, ...) m(i, a) LA_FE_15(m, (i + 1), __VA_ARGS__)
#define LA_FE_17(m, i, a, ...) m(i, a) LA_FE_16(m, (i + 1), __VA_ARGS__)
#define LA_FE_18(m, i, a, ...) m(i, a) LA_FE_17(m, (i + 1), __VA_ARGS__)
#define LA_FE_19(m, i, a, ...) m(i, a) LA_FE_18(m, (i + 1), __VA_ARGS__)
#define LA_FE_20(m, i, a, ...) m(i, a) LA_FE_19(m, (i + 1), __VA_ARGS__)
#define LA_FE_21(m, i, a, ...) m(i, a) LA_FE_20(m, (i + 1), __VA_ARGS__)
#define LA_FE_22(m, i, a, ...) m(i, a) LA_FE_21(m, (i + 1), __VA_ARGS__)
#define LA_FE_23(m, i, a, ...) m(i, a) LA_FE_22(m, (i + 1), __VA_ARGS__)
#define LA_FE_24(m, i, a, ...) m(i, a) LA_FE_23(m, (i + 1), __VA_ARGS__)
#define LA_FE_25(m, i, a, ...) m(i, a) LA_FE_24(m, (i + 1), __VA_ARGS__)
#define LA_FE_26(m, i, a, ...) m(i, a) LA_FE_25(m, (i + 1), __VA_ARGS__)
#define LA_FE_27(m, i, a, ...) m(i, a) LA_FE_26(m, (i + 1), __VA_ARGS__)
#define LA_FE_28(m, i, a, ...) m(i, a) LA_FE_27(m, (i + 1), __VA_ARGS__)
#define LA_FE_29(m, i, a, ...) m(i, a) LA_FE_28(m, (i + 1), __VA_ARGS__)
#define LA_FE_30(m, i, a, ...) m(i, a) LA_FE_29(m, (i + 1), __VA_ARGS__)
#define LA_FE_31(m, i, a, ...) m(i, a) LA_FE_30(m, (i + 1), __VA_ARGS__)
#define LA_FE_32(m, i, a, ...) m(i, a) LA_FE_31(m, (i + 1), __VA_ARGS__)
#define LA_FE_33(m, i, a, ...) m(i, a) LA_FE_32(m, (i + 1), __VA_ARGS__)
#define LA_FE_34(m, i, a, ...) m(i, a) LA_FE_33(m, (i + 1), __VA_ARGS__)
#define LA_FE_35(m, i, a, ...) m(i, a) LA_FE_34(m, (i + 1), __VA_ARGS__)
#define LA_FE_36(m, i, a, ...) m(i, a) LA_FE_35(m, (i + 1), __VA_ARGS__)
#define LA_FE_37(m, i, a, ...) m(i, a) LA_FE_36(m, (i + 1), __VA_ARGS__)
#define LA_FE_38(m, i, a, ...) m(i, a) LA_FE_37(m, (i + 1), __VA_ARGS__)
#define LA_FE_39(m, i, a, ...) m(i, a) LA_FE_38(m, (i + 1), __VA_ARGS__)
#define LA_FE_40(m, i, a, ...) m(i, a) LA_FE_39(m, (i + 1), __VA_ARGS__)

// Per kind: the variable, the pass that reads it (1 scalars/objects, 2 int32 buffers, 3 other
// buffers, 4 checks) and whether it is passed to the kernel.
#define LA_DECL_F32(n) float* n = nullptr;
#define LA_DECL_F32_OPT(n) float* n = nullptr;
#define LA_DECL_I32(n) int32_t* n = nullptr;
#define LA_DECL_I32_OPT(n) int32_t* n = nullptr;
#define LA_DECL_U16(n) uint16_t* n = nullptr;
#define LA_DECL_MAT(n) la::Mat n{nullptr, false, 0, 0};
#define LA_DECL_NUM(n) double n = 0;
#define LA_DECL_INT(n) long n = 0;
#define LA_DECL_FLAG(n) bool n = false;
#define LA_DECL_ATTN(n) la::AttnShape n{0, 0, 0, 0, 0, 0};
#define LA_DECL_PROMPT(n) la::PromptShape n{0, 0, 0, 0, 0, 0};
#define LA_DECL_ADAMW(n) la::AdamwStep n{0, 0, 0, 0, 0, 0};
#define LA_DECL_CHECK(n)

#define LA_READ1_MAT(i, n, p) n = c.mat(LA_AT(i), LA_STR(n));
#define LA_READ1_NUM(i, n, p) n = c.num(LA_AT(i), LA_STR(n));
#define LA_READ1_INT(i, n, p) n = c.integer(LA_AT(i), LA_STR(n), p);
#define LA_READ1_FLAG(i, n, p) n = c.flag(LA_AT(i));
#define LA_READ1_ATTN(i, n, p) n = c.attn(LA_AT(i), LA_STR(n));
#define LA_READ1_PROMPT(i, n, p) n = c.prompt(LA_AT(i), LA_STR(n));
#define LA_READ1_ADAMW(i, n, p) n = c.adamw(LA_AT(i), LA_STR(n));
#define LA_READ2_I32(i, n, p) n = c.i32(LA_AT(i), LA_STR(n), (p));
#define LA_READ2_I32_OPT(i, n, p) n = c.i32_opt(LA_AT(i), LA_STR(n), (p));
#define LA_READ3_F32(i, n, p) n = c.f32(LA_AT(i), LA_STR(n), (p));
#define LA_READ3_F32_OPT(i, n, p) n = c.f32_opt(LA_AT(i), LA_STR(n), (p));
#define LA_READ3_U16(i, n, p) n = c.u16(LA_AT(i), LA_STR(n), (p));
#define LA_READ4_CHECK(i, n, p) \
  if (c.ok()) {                 \
    const std::string msg = n;  \
    if (!msg.empty()) c.fail(msg, true); \
  }
#define LA_NOP(i, n, p)

#define LA_PASS_OF(pass, kind) LA_CAT(LA_PASS_OF_, LA_CAT(pass, LA_CAT(_, kind)))
// pass 1
#define LA_PASS_OF_1_MAT LA_READ1_MAT
#define LA_PASS_OF_1_NUM LA_READ1_NUM
#define LA_PASS_OF_1_INT LA_READ1_INT
#define LA_PASS_OF_1_FLAG LA_READ1_FLAG
#define LA_PASS_OF_1_ATTN LA_READ1_ATTN
#define LA_PASS_OF_1_PROMPT LA_READ1_PROMPT
#define LA_PASS_OF_1_ADAMW LA_READ1_ADAMW
#define LA_PASS_OF_1_F32 LA_NOP
#define LA_PASS_OF_1_F32_OPT LA_NOP
#define LA_PASS_OF_1_I32 LA_NOP
#define LA_PASS_OF_1_I32_OPT LA_NOP
#define LA_PASS_OF_1_U16 LA_NOP
#define LA_PASS_OF_1_CHECK LA_NOP
// pass 2
#define LA_PASS_OF_2_I32 LA_READ2_I32
#define LA_PASS_OF_2_I32_OPT LA_READ2_I32_OPT
#define LA_PASS_OF_2_MAT LA_NOP
#define LA_PASS_OF_2_NUM LA_NOP
#define LA_PASS_OF_2_INT LA_NOP
#define LA_PASS_OF_2_FLAG LA_NOP
#define LA_PASS_OF_2_ATTN LA_NOP
#define LA_PASS_OF_2_PROMPT LA_NOP
#define LA_PASS_OF_2_ADAMW LA_NOP
#define LA_PASS_OF_2_F32 LA_NOP
#define LA_PASS_OF_2_F32_OPT LA_NOP
#define LA_PASS_OF_2_U16 LA_NOP
#define LA_PASS_OF_2_CHECK LA_NOP
// pass 3
#define LA_PASS_OF_3_F32 LA_READ3_F32
#define LA_PASS_OF_3_F32_OPT LA_READ3_F32_OPT
#define LA_PASS_OF_3_U16 LA_READ3_U16
#define LA_PASS_OF_3_MAT LA_NOP
#define LA_PASS_OF_3_NUM LA_NOP
#define LA_PASS_OF_3_INT LA_NOP
#define LA_PASS_OF_3_FLAG LA_NOP
#define LA_PASS_OF_3_ATTN LA_NOP
#define LA_PASS_OF_3_PROMPT LA_NOP
#define LA_PASS_OF_3_ADAMW LA_NOP
#define LA_PASS_OF_3_I32 LA_NOP
#define LA_PASS_OF_3_I32_OPT LA_NOP
#define LA_PASS_OF_3_CHECK LA_NOP
// pass 4
#define LA_PASS_OF_4_CHECK LA_READ4_CHECK
#define LA_PASS_OF_4_F32 LA_NOP
#define LA_PASS_OF_4_F32_OPT LA_NOP
#define LA_PASS_OF_4_I32 LA_NOP
#define LA_PASS_OF_4_I32_OPT LA_NOP
#define LA_PASS_OF_4_U16 LA_NOP
#define LA_PASS_OF_4_MAT LA_NOP
#define LA_PASS_OF_4_NUM LA_NOP
#define LA_PASS_OF_4_INT LA_NOP
#define LA_PASS_OF_4_FLAG LA_NOP
#define LA_PASS_OF_4_ATTN LA_NOP
#define LA_PASS_OF_4_PROMPT LA_NOP
#define LA_PASS_OF_4_ADAMW LA_NOP

#define LA_DECL(i, a) LA_CAT(LA_DECL_, LA_KIND a)(LA_NAME a)
#define LA_PASS1(i, a) LA_PASS_OF(1, LA_KIND a)(i, LA_NAME a, LA_PARAM a)
#define LA_PASS2(i, a) LA_PASS_OF(2, LA_KIND a)(i, LA_NAME a, LA_PARAM a)
#define LA_PASS3(i, a) LA_PASS_OF(3, LA_KIND a)(i, LA_NAME a, LA_PARAM a)
#define LA_PASS4(i, a) LA_PASS_OF(4, LA_KIND a)(i, LA_NAME a, LA_PARAM a)

// Positions: an object argument arrives as its fields (LA_*_FIELDS), one JS argument each, so
// list item i starts at the sum of the widths before it (kW, defined in each wrapper).
#define LA_WIDTH(i, a) LA_CAT(LA_WIDTH_, LA_KIND a),
#define LA_WIDTH_F32 1
#define LA_WIDTH_F32_OPT 1
#define LA_WIDTH_I32 1
#define LA_WIDTH_I32_OPT 1
#define LA_WIDTH_U16 1
#define LA_WIDTH_NUM 1
#define LA_WIDTH_INT 1
#define LA_WIDTH_FLAG 1
#define LA_WIDTH_MAT 4
#define LA_WIDTH_ATTN 6
#define LA_WIDTH_PROMPT 6
#define LA_WIDTH_ADAMW 6
#define LA_WIDTH_CHECK 0
constexpr size_t position(const int* widths, int i) {
  size_t p = 0;
  for (int k = 0; k < i; k++) p += static_cast<size_t>(widths[k]);
  return p;
}
#define LA_AT(i) position(kW, (i))

// The argument layout JS sees: {name, fields} per argument (fields null for a plain value).
struct ArgDesc {
  const char* name;
  const char* const* fields;
};
#define LA_DESC(i, a) LA_CAT(LA_DESC_, LA_KIND a)(LA_NAME a)
#define LA_DESC_F32(n) {LA_STR(n), nullptr},
#define LA_DESC_F32_OPT(n) {LA_STR(n), nullptr},
#define LA_DESC_I32(n) {LA_STR(n), nullptr},
#define LA_DESC_I32_OPT(n) {LA_STR(n), nullptr},
#define LA_DESC_U16(n) {LA_STR(n), nullptr},
#define LA_DESC_NUM(n) {LA_STR(n), nullptr},
#define LA_DESC_INT(n) {LA_STR(n), nullptr},
#define LA_DESC_FLAG(n) {LA_STR(n), nullptr},
#define LA_DESC_MAT(n) {LA_STR(n), kMatFields},
#define LA_DESC_ATTN(n) {LA_STR(n), kAttnFields},
#define LA_DESC_PROMPT(n) {LA_STR(n), kPromptFields},
#define LA_DESC_ADAMW(n) {LA_STR(n), kAdamwFields},
#define LA_DESC_CHECK(n)

// The kernel's argument list: ", name" for every argument but the checks, leading comma dropped.
#define LA_COMMA_NAME(i, a) LA_CAT(LA_COMMA_, LA_KIND a)(LA_NAME a)
#define LA_COMMA_CHECK(n)
#define LA_COMMA_F32(n) , n
#define LA_COMMA_F32_OPT(n) , n
#define LA_COMMA_I32(n) , n
#define LA_COMMA_I32_OPT(n) , n
#define LA_COMMA_U16(n) , n
#define LA_COMMA_MAT(n) , n
#define LA_COMMA_NUM(n) , n
#define LA_COMMA_INT(n) , n
#define LA_COMMA_FLAG(n) , n
#define LA_COMMA_ATTN(n) , n
#define LA_COMMA_PROMPT(n) , n
#define LA_COMMA_ADAMW(n) , n
#define LA_TAIL(x, ...) __VA_ARGS__
#define LA_TAIL_OF(t) LA_TAIL t
#define LA_CALL_ARGS(...) LA_TAIL_OF((0 LA_FE(LA_COMMA_NAME, __VA_ARGS__)))

// ------------------------------------------------------------------ the kernel list
// X_(js name, la:: function, arguments...). Shapes of buffers: see src/backend/backend.ts.
#define LA_KERNELS(X_)                                                                                                                  \
  X_(matmul, la::matmul, (F32, out, 1.0 * M * w.rows), (F32, x, 1.0 * M * w.cols), (MAT, w, 0), (INT, M, 0), (FLAG, accumulate, 0))     \
  X_(matmul2, la::matmul2, (F32, outA, 1.0 * M * wA.rows), (F32, outB, 1.0 * M * wB.rows), (F32, x, 1.0 * M * wA.cols), (MAT, wA, 0),  \
    (MAT, wB, 0), (INT, M, 0), (CHECK, wB.cols == wA.cols ? "" : "wB.cols must equal wA.cols", 0))                                    \
  X_(matmul3, la::matmul3, (F32, outA, 1.0 * M * wA.rows), (F32, outB, 1.0 * M * wB.rows), (F32, outC, 1.0 * M * wC.rows),              \
    (F32, x, 1.0 * M * wA.cols), (MAT, wA, 0), (MAT, wB, 0), (MAT, wC, 0), (INT, M, 0),                                               \
    (CHECK, wB.cols == wA.cols && wC.cols == wA.cols ? "" : "wB.cols and wC.cols must equal wA.cols", 0))                             \
  X_(matmulBack, la::matmul_back, (F32, out, 1.0 * M * w.cols), (F32, dy, 1.0 * M * w.rows), (MAT, w, 0), (INT, M, 0),                   \
    (FLAG, accumulate, 0))                                                                                                             \
  X_(gemm, la::gemm, (FLAG, transA, 0), (FLAG, transB, 0), (INT, M, 0), (INT, N, 0), (INT, K, 0), (NUM, alpha, 0),                        \
    (F32, A, strided(transA ? K : M, transA ? M : K, lda)), (INT, lda, 1), (F32, B, strided(transB ? N : K, transB ? K : N, ldb)),       \
    (INT, ldb, 1), (NUM, beta, 0), (F32, C, strided(M, N, ldc)), (INT, ldc, 1),                                                        \
    (CHECK, lda >= (transA ? M : K) ? "" : "lda must be >= " + std::to_string(transA ? M : K), 0),                                      \
    (CHECK, ldb >= (transB ? K : N) ? "" : "ldb must be >= " + std::to_string(transB ? K : N), 0),                                      \
    (CHECK, ldc >= N ? "" : "ldc must be >= " + std::to_string(N), 0),                                                                 \
    (CHECK, M < 2147483647L && N < 2147483647L && K < 2147483647L ? "" : "dimensions exceed 32-bit BLAS", 0))                          \
  X_(rmsnorm, la::rmsnorm, (F32, out, 1.0 * rows * dim), (F32, x, 1.0 * rows * dim), (F32, w, dim), (INT, rows, 0), (INT, dim, 0),        \
    (NUM, eps, 0), (F32_OPT, rstd, rows))                                                                                              \
  X_(rmsnormBack, la::rmsnorm_back, (F32, dx, 1.0 * rows * dim), (F32, dy, 1.0 * rows * dim), (F32, x, 1.0 * rows * dim),                 \
    (F32, w, dim), (F32, rstd, rows), (INT, rows, 0), (INT, dim, 0), (FLAG, accumulate, 0))                                            \
  X_(rope, la::rope, (F32, x, 1.0 * B * T * H * hs), (INT, B, 0), (INT, T, 0), (INT, H, 0), (INT, hs, 0), (I32, pos, B),                \
    (F32, cos, rope_table(pos, B, T, hs)), (F32, sin, rope_table(pos, B, T, hs)), (FLAG, inverse, 0),                                \
    (CHECK, hs % 2 == 0 ? "" : "hs must be even", 0), (CHECK, all_in("pos", pos, B, 0, 2147483647L), 0))                              \
  X_(siluGate, la::silu_gate, (F32, out, n), (F32, a, n), (F32, b, n), (INT, n, 0))                                                       \
  X_(siluGateBack, la::silu_gate_back, (F32, da, n), (F32, db, n), (F32, dy, n), (F32, a, n), (F32, b, n), (INT, n, 0))                   \
  X_(add, la::add, (F32, x, n), (F32, y, n), (INT, n, 0))                                                                                \
  X_(argmax, la::argmax, (F32, x, n), (INT, n, 1))                                                                                       \
  X_(toBf16, la::to_bf16_array, (U16, out, n), (F32, x, n), (INT, n, 0))                                                                 \
  X_(fromBf16, la::from_bf16_array, (F32, out, n), (U16, x, n), (INT, n, 0))                                                             \
  X_(embed, la::embed, (F32, out, 1.0 * n * table.cols), (MAT, table, 0), (I32, ids, n), (INT, n, 0),                                    \
    (CHECK, all_in("token id", ids, n, 0, table.rows), 0))                                                   \
  X_(attention, la::attention, (F32, out, 1.0 * s.B * s.T * s.H * s.hs), (F32, q, 1.0 * s.B * s.T * s.H * s.hs),                         \
    (F32, kCache, cache_rows(cacheRows, s.B) * s.S * s.Hkv * s.hs), (F32, vCache, cache_rows(cacheRows, s.B) * s.S * s.Hkv * s.hs),     \
    (I32, pos, s.B), (ATTN, s, 0), (I32_OPT, cacheRows, s.B), (CHECK, positions_fit(pos, s.B, s.T, s.S), 0),                          \
    (CHECK, cacheRows ? all_in("cacheRows entry", cacheRows, s.B, 0, 2147483647L) : "", 0))                              \
  X_(block, la::block, (F32, x, 1.0 * s.B * s.T * wq.cols), (F32, attnNorm, wq.cols), (MAT, wq, 0), (MAT, wk, 0), (MAT, wv, 0),          \
    (MAT, wo, 0), (F32, ffnNorm, wq.cols), (MAT, w1, 0), (MAT, w3, 0), (MAT, w2, 0), (F32, h, 1.0 * s.B * s.T * wq.cols),               \
    (F32, q, 1.0 * s.B * s.T * s.H * s.hs), (F32, k, 1.0 * s.B * s.T * s.Hkv * s.hs), (F32, v, 1.0 * s.B * s.T * s.Hkv * s.hs),        \
    (F32, att, 1.0 * s.B * s.T * s.H * s.hs), (F32, a, 1.0 * s.B * s.T * w1.rows), (F32, b, 1.0 * s.B * s.T * w1.rows),                \
    (F32, g, 1.0 * s.B * s.T * w1.rows), (F32, kCache, cache_rows(cacheRows, s.B) * s.S * s.Hkv * s.hs),                              \
    (F32, vCache, cache_rows(cacheRows, s.B) * s.S * s.Hkv * s.hs), (I32, cacheRows, s.B), (I32, pos, s.B), (ATTN, s, 0),             \
    (F32, cos, rope_table(pos, s.B, s.T, s.hs)), (F32, sin, rope_table(pos, s.B, s.T, s.hs)), (NUM, eps, 0),                           \
    (CHECK, block_shapes(wq, wk, wv, wo, w1, w3, w2, s), 0), (CHECK, positions_fit(pos, s.B, s.T, s.S), 0),                             \
    (CHECK, all_in("cacheRows entry", cacheRows, s.B, 0, 2147483647L), 0))                                                             \
  X_(attentionBack, la::attention_back, (F32, dq, 1.0 * s.B * s.T * s.H * s.hs), (F32, dk, 1.0 * s.B * s.T * s.Hkv * s.hs),               \
    (F32, dv, 1.0 * s.B * s.T * s.Hkv * s.hs), (F32, dout, 1.0 * s.B * s.T * s.H * s.hs), (F32, q, 1.0 * s.B * s.T * s.H * s.hs),       \
    (F32, k, 1.0 * s.B * s.T * s.Hkv * s.hs), (F32, v, 1.0 * s.B * s.T * s.Hkv * s.hs), (ATTN, s, 0))                                   \
  X_(promptAttention, la::prompt_attention, (F32, out, 1.0 * s.B * s.T * s.H * s.hs), (F32, q, 1.0 * s.B * s.T * s.H * s.hs),            \
    (F32, pk, 1.0 * s.K * s.Hkv * s.hs), (F32, pv, 1.0 * s.K * s.Hkv * s.hs), (F32, gate, s.H), (PROMPT, s, 0),                        \
    (F32_OPT, probs, 1.0 * s.B * s.H * s.T * s.K), (CHECK, s.K >= 1 ? "" : "s.K must be >= 1", 0))                                        \
  X_(promptAttentionBack, la::prompt_attention_back, (F32_OPT, dq, 1.0 * s.B * s.T * s.H * s.hs), (F32, dpk, 1.0 * s.K * s.Hkv * s.hs),  \
    (F32, dpv, 1.0 * s.K * s.Hkv * s.hs), (F32, dgate, s.H), (F32, dout, 1.0 * s.B * s.T * s.H * s.hs),                               \
    (F32, q, 1.0 * s.B * s.T * s.H * s.hs), (F32, pk, 1.0 * s.K * s.Hkv * s.hs), (F32, pv, 1.0 * s.K * s.Hkv * s.hs),                  \
    (F32, gate, s.H), (F32, probs, 1.0 * s.B * s.H * s.T * s.K), (PROMPT, s, 0), (CHECK, s.K >= 1 ? "" : "s.K must be >= 1", 0))          \
  X_(crossEntropy, la::cross_entropy, (F32, logits, 1.0 * rows * V), (I32, targets, rows), (INT, rows, 0), (INT, V, 1),                 \
    (F32_OPT, dlogits, 1.0 * rows * V), (NUM, scale, 0), (F32_OPT, losses, rows),                                                        \
    (CHECK, all_in("target", targets, rows, -2147483647L - 1, V), 0))                                                                   \
  X_(adamw, la::adamw, (F32, p, n), (F32, g, n), (F32, m, n), (F32, v, n), (INT, n, 0), (ADAMW, o, 0))                                 \
  X_(layerNorm, la::layer_norm, (F32, out, 1.0 * rows * dim), (F32, x, 1.0 * rows * dim), (F32, w, dim), (F32, b, dim), (INT, rows, 0),  \
    (INT, dim, 0), (NUM, eps, 0), (F32_OPT, mean, rows), (F32_OPT, rstd, rows))                                                        \
  X_(gelu, la::gelu, (F32, out, n), (F32, x, n), (INT, n, 0), (INT, kind, 0), (CHECK, kind <= 2 ? "" : "kind must be 0, 1 or 2", 0))     \
  X_(layerNormBack, la::layer_norm_back, (F32, dx, 1.0 * rows * dim), (F32, dy, 1.0 * rows * dim), (F32, x, 1.0 * rows * dim),            \
    (F32, w, dim), (F32, mean, rows), (F32, rstd, rows), (INT, rows, 0), (INT, dim, 0), (FLAG, accumulate, 0))                            \
  X_(geluBack, la::gelu_back, (F32, dx, n), (F32, dy, n), (F32, x, n), (INT, n, 0), (INT, kind, 0),                                       \
    (CHECK, kind <= 2 ? "" : "kind must be 0, 1 or 2", 0))                                                                                \
  X_(biasAdd, la::bias_add, (F32, x, 1.0 * rows * dim), (F32, bias, dim), (INT, rows, 0), (INT, dim, 0))                                  \
  X_(encoderAttention, la::encoder_attention, (F32, out, 1.0 * s.B * s.T * s.H * s.hs), (F32, q, 1.0 * s.B * s.T * s.H * s.hs),         \
    (F32, k, 1.0 * s.B * s.T * s.Hkv * s.hs), (F32, v, 1.0 * s.B * s.T * s.Hkv * s.hs), (ATTN, s, 0))                                   \
  X_(prefixAttention, la::prefix_attention, (F32, out, 1.0 * s.B * s.T * s.H * s.hs), (F32, q, 1.0 * s.B * s.T * s.H * s.hs),             \
    (F32, k, 1.0 * s.B * s.T * s.Hkv * s.hs), (F32, v, 1.0 * s.B * s.T * s.Hkv * s.hs), (F32, pk, 1.0 * s.K * s.Hkv * s.hs), (F32, pv, 1.0 * s.K * s.Hkv * s.hs), (PROMPT, s, 0),\
    (I32_OPT, mask, 1.0 * s.B * s.T), (FLAG, causal, 0))                                                                                  \
  X_(prefixAttentionBack, la::prefix_attention_back, (F32, dq, 1.0 * s.B * s.T * s.H * s.hs), (F32, dk, 1.0 * s.B * s.T * s.Hkv * s.hs),  \
    (F32, dv, 1.0 * s.B * s.T * s.Hkv * s.hs), (F32, dpk, 1.0 * s.K * s.Hkv * s.hs), (F32, dpv, 1.0 * s.K * s.Hkv * s.hs), (F32, dout, 1.0 * s.B * s.T * s.H * s.hs),\
    (F32, q, 1.0 * s.B * s.T * s.H * s.hs), (F32, k, 1.0 * s.B * s.T * s.Hkv * s.hs), (F32, v, 1.0 * s.B * s.T * s.Hkv * s.hs), (F32, pk, 1.0 * s.K * s.Hkv * s.hs),\
    (F32, pv, 1.0 * s.K * s.Hkv * s.hs), (PROMPT, s, 0), (I32_OPT, mask, 1.0 * s.B * s.T), (FLAG, causal, 0))                             \
  X_(patches, la::patches, (F32, out, 1.0 * B * C * size * size), (F32, pixels, 1.0 * B * C * size * size), (INT, B, 0), (INT, C, 1),     \
    (INT, size, 1), (INT, p, 1), (CHECK, size % p == 0 ? "" : "size must be a multiple of p", 0))

// One wrapper per list line: read and check every argument, then run the kernel on the backend's
// thread count under la::NoDenormals (FTZ/DAZ; the JS thread's MXCSR is restored on return).
#define LA_WRAPPER(js, fn, ...)                                                     \
  const ArgDesc js##_args[] = {LA_FE(LA_DESC, __VA_ARGS__)};                        \
  napi_value js##_napi(napi_env env, napi_callback_info info) {                     \
    static constexpr int kW[] = {LA_FE(LA_WIDTH, __VA_ARGS__) 0};                   \
    Call c(env, info, #js);                                                         \
    LA_FE(LA_DECL, __VA_ARGS__)                                                     \
    LA_FE(LA_PASS1, __VA_ARGS__)                                                    \
    LA_FE(LA_PASS2, __VA_ARGS__)                                                    \
    LA_FE(LA_PASS3, __VA_ARGS__)                                                    \
    LA_FE(LA_PASS4, __VA_ARGS__)                                                    \
    if (!c.ok()) return nullptr;                                                    \
    if (la::pool_threads() != c.ctx()->threads) la::pool_set_threads(c.ctx()->threads); \
    la::NoDenormals nd;                                                             \
    return c.result([&] { return fn(LA_CALL_ARGS(__VA_ARGS__)); });                 \
  }
LA_KERNELS(LA_WRAPPER)

struct KernelEntry {
  const char* name;
  napi_callback fn;
  const ArgDesc* args;
  size_t nArgs;
};
#define LA_ENTRY(js, fn, ...) {#js, js##_napi, js##_args, sizeof(js##_args) / sizeof(ArgDesc)},
const KernelEntry kKernels[] = {LA_KERNELS(LA_ENTRY)};

// ------------------------------------------------------------------ setup

// signatures -> { kernel: [[name, fields | null], ...] }: each kernel's JS parameters, and for an
// object parameter the fields it passes (in order) in its place.
napi_value Signatures(napi_env env) {
  napi_value all;
  napi_create_object(env, &all);
  for (const KernelEntry& k : kKernels) {
    napi_value list;
    napi_create_array_with_length(env, k.nArgs, &list);
    for (size_t i = 0; i < k.nArgs; i++) {
      napi_value pair, name, fields;
      napi_create_array_with_length(env, 2, &pair);
      napi_create_string_utf8(env, k.args[i].name, NAPI_AUTO_LENGTH, &name);
      if (k.args[i].fields) {
        napi_create_array(env, &fields);
        for (uint32_t f = 0; k.args[i].fields[f]; f++) {
          napi_value fs;
          napi_create_string_utf8(env, k.args[i].fields[f], NAPI_AUTO_LENGTH, &fs);
          napi_set_element(env, fields, f, fs);
        }
      } else {
        napi_get_null(env, &fields);
      }
      napi_set_element(env, pair, 0, name);
      napi_set_element(env, pair, 1, fields);
      napi_set_element(env, list, static_cast<uint32_t>(i), pair);
    }
    napi_set_named_property(env, all, k.name, list);
  }
  return all;
}

// dtypeIds -> { name: ggml type id } of kDtypes.
napi_value DtypeIds(napi_env env) {
  napi_value all;
  napi_create_object(env, &all);
  for (const auto& d : kDtypes) {
    napi_value id;
    napi_create_int32(env, d.id, &id);
    napi_set_named_property(env, all, d.name, id);
  }
  return all;
}

// backend(threads) -> an object with every kernel of LA_KERNELS, run on `threads` threads; each
// takes its arguments flattened as `signatures` says (src/backend/native.ts binds them).
napi_value Backend(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  size_t argc = 1;
  double t = 0;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 1 || napi_get_value_double(env, argv[0], &t) != napi_ok ||
      !(t >= 1 && t <= 256 && t == std::floor(t))) {
    napi_throw_range_error(env, nullptr, "native backend: threads must be an integer in [1, 256]");
    return nullptr;
  }
  auto* ctx = new BackendCtx{static_cast<int>(t), 0};
  napi_value o, f;
  napi_create_object(env, &o);
  for (const KernelEntry& k : kKernels) {
    napi_create_function(env, k.name, NAPI_AUTO_LENGTH, k.fn, ctx, &f);
    ctx->refs++;
    napi_add_finalizer(env, f, ctx, [](napi_env, void* d, void*) {
      auto* c = static_cast<BackendCtx*>(d);
      if (--c->refs == 0) delete c;
    }, nullptr, nullptr);
    napi_set_named_property(env, o, k.name, f);
  }
  return o;
}

// info() -> { simd, simdTargets, avx512bf16, cpuAvx512bf16, amx, batchInvariant, int8Dot, cpuInt8Dot, threads }
napi_value Info(napi_env env, napi_callback_info) {
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_string_utf8(env, la::simd_target(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "simd", v);
  const char* names[16];
  const int n = la::simd_targets(names, 16);
  napi_create_array_with_length(env, n, &v);
  for (int i = 0; i < n; i++) {
    napi_value s;
    napi_create_string_utf8(env, names[i], NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, v, static_cast<uint32_t>(i), s);
  }
  napi_set_named_property(env, o, "simdTargets", v);
  napi_get_boolean(env, la::g_features.avx512bf16, &v);
  napi_set_named_property(env, o, "avx512bf16", v);
  napi_get_boolean(env, la::g_features.cpuAvx512bf16, &v);
  napi_set_named_property(env, o, "cpuAvx512bf16", v);
  napi_get_boolean(env, la::g_features.amx, &v);
  napi_set_named_property(env, o, "amx", v);
  napi_get_boolean(env, la::g_features.batchInvariant, &v);
  napi_set_named_property(env, o, "batchInvariant", v);
  napi_get_boolean(env, la::g_features.int8Dot, &v);
  napi_set_named_property(env, o, "int8Dot", v);
  napi_get_boolean(env, la::g_features.cpuInt8Dot, &v);
  napi_set_named_property(env, o, "cpuInt8Dot", v);
  napi_create_int32(env, la::pool_threads(), &v);
  napi_set_named_property(env, o, "threads", v);
  return o;
}

// setSimd(name) -> boolean: dispatch the kernels to SIMD target `name` (one of info().simdTargets,
// or "" / "best"); false (nothing changed) when it is not runnable here. Process-wide.
napi_value SetSimd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  size_t argc = 1;
  char name[32] = {0};
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, nullptr, "native setSimd: expected (name: string)");
    return nullptr;
  }
  napi_value r;
  napi_get_boolean(env, la::simd_force(name), &r);
  return r;
}

// setFeature(name, enabled) -> boolean now in effect. 'amx' / 'avx512bf16': turn the AMX or the
// AVX512_BF16 GEMM off (or back on, when the CPU has it), for tests and benchmarks of the fallbacks;
// 'batchInvariant': matmul results of a row independent of the rest of its batch; 'bf16Split';
// 'int8Dot': the CPU's 8-bit dot products (AVX512_VNNI, ARM dotprod) for quantized weights;
// 'decodeStealing': decode rows streamed from DRAM shared out by work stealing (on by default);
// 'attnPositionBlocks': decode attention over blocks of positions, merged (on by default).
napi_value SetFeature(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  char name[32] = {0};
  size_t len = 0;
  bool on = false;
  napi_value b;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok || napi_coerce_to_bool(env, argv[1], &b) != napi_ok ||
      napi_get_value_bool(env, b, &on) != napi_ok) {
    napi_throw_type_error(env, nullptr, "native setFeature: expected (name: string, enabled: boolean)");
    return nullptr;
  }
  bool now = false;
  if (std::string(name) == "amx") now = la::g_features.amx = on && la::amx_available() && la::simd_avx512_in_force();
  else if (std::string(name) == "batchInvariant") now = la::g_features.batchInvariant = on;
  else if (std::string(name) == "bf16Split") now = la::g_features.bf16Split = on;
  else if (std::string(name) == "decodeStealing") now = la::g_features.decodeStealing = on;
  else if (std::string(name) == "attnPositionBlocks") now = la::g_features.attnPositionBlocks = on;
  else if (std::string(name) == "avx512bf16") now = la::g_features.avx512bf16 = on && la::g_features.cpuAvx512bf16;
  else if (std::string(name) == "int8Dot") now = la::g_features.int8Dot = on && la::g_features.cpuInt8Dot;
  else {
    napi_throw_type_error(env, nullptr, "native setFeature: unknown feature (amx, attnPositionBlocks, avx512bf16, batchInvariant, bf16Split, decodeStealing, int8Dot)");
    return nullptr;
  }
  napi_value r;
  napi_get_boolean(env, now, &r);
  return r;
}

// rest(): no kernels for a while (e.g. the server writes to its sockets between engine steps):
// the pool's idle workers sleep now instead of spinning on a core the caller's other work needs.
napi_value Rest(napi_env, napi_callback_info) {
  la::pool_rest();
  return nullptr;
}

// hugeBuffer(bytes): zeroed memory for a model's weights, as an ArrayBuffer (the caller falls back
// to a plain one when this returns undefined). Decode streams every weight byte once per token, and
// on 4 KB pages the stream takes a TLB miss every 4 KB and the hardware prefetchers stop at each page
// edge. This maps the buffer 2 MB-aligned with MADV_HUGEPAGE before anything touches it, so its
// first writes (the file read, the conversion) fault in 2 MB pages wherever transparent huge pages
// are "always" or "madvise" (most distributions' default); medium decode 1.03-1.10x in one process
// (bench/README.md). The mapping is exactly the bytes asked for, rounded up to 4 KB: the tail that
// does not fill a 2 MB page stays on 4 KB pages, so nothing is resident beyond the request. Linux
// only; elsewhere undefined.
napi_value HugeBuffer(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  size_t argc = 1;
  napi_value undef;
  napi_get_undefined(env, &undef);
  double want = 0;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 1 || napi_get_value_double(env, argv[0], &want) != napi_ok ||
      !(want > 0) || want > 9.0e15)
    return undef;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t size = (static_cast<size_t>(want) + 4095) / 4096 * 4096;
  // Over-map by 2 MB, then unmap the head and tail around the 2 MB-aligned piece.
  void* raw = mmap(nullptr, size + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return undef;
  const uintptr_t r = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t a = (r + kHuge - 1) / kHuge * kHuge;
  if (a > r) munmap(raw, a - r);
  if (r + size + kHuge > a + size) munmap(reinterpret_cast<void*>(a + size), r + size + kHuge - (a + size));
  void* p = reinterpret_cast<void*>(a);
  madvise(p, size, MADV_HUGEPAGE);  // advice only: where THP is off this is plain memory
  napi_value ab;
  // Node tells V8 about the external bytes itself (process.memoryUsage().external grows by them),
  // so the GC weighs this memory like its own buffers and unmaps it when the buffer dies.
  if (napi_create_external_arraybuffer(
          env, p, static_cast<size_t>(want), [](napi_env, void* data, void* hint) { munmap(data, reinterpret_cast<size_t>(hint)); },
          reinterpret_cast<void*>(size), &ab) != napi_ok) {
    munmap(p, size);
    return undef;
  }
  return ab;
#else
  return undef;
#endif
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
      {"backend", nullptr, Backend, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setFeature", nullptr, SetFeature, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setSimd", nullptr, SetSimd, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"rest", nullptr, Rest, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"hugeBuffer", nullptr, HugeBuffer, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"signatures", nullptr, nullptr, nullptr, nullptr, Signatures(env), napi_enumerable, nullptr},
      {"dtypeIds", nullptr, nullptr, nullptr, nullptr, DtypeIds(env), napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}
