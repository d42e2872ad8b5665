// The persistent worker pool behind every multi-threaded kernel.
// OpenBLAS itself runs single-threaded (openblas_set_num_threads(1)); large GEMMs are split over
// this pool by output columns instead, so one set of threads serves every kernel and nothing
// oversubscribes the cores (as fast as OpenBLAS's own threading: bench/README.md).

#include "common.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#elif defined(__aarch64__)
static inline void cpu_relax() { asm volatile("yield"); }
#else
static inline void cpu_relax() {}
#endif

namespace la {

namespace {

// How long an idle worker spins for the next job before it sleeps. A decode step issues dozens of
// kernels, some too small for two threads, so the gap between two parallel jobs can be ~100 us;
// a worker that sleeps costs the caller a futex wake (several us in a VM, ~4% of a stories260K
// token when the worker slept between tokens at 50 us) on every such job. Callers that will not
// issue kernels for a while (the server between engine steps) call pool_rest().
constexpr int kSpinUs = 200;

// A worker's mailbox, two cache lines: the caller writes the job (fn, ctx, payload, then gen),
// the worker claims its part with one compare-exchange on `state` and marks it done there.
struct alignas(128) Slot {
  std::atomic<uint64_t> gen{0};    // the last job published to this worker
  std::atomic<uint64_t> state{0};  // job << 2 | phase (below)
  PartFn fn = nullptr;
  const void* ctx = nullptr;       // the caller's ctx, or payload when the job was copied
  alignas(16) unsigned char payload[kPoolPayload];
};
static_assert(sizeof(Slot) == 128, "a Slot is two cache lines");
// The phase of a job's part in Slot::state: published, claimed by the worker, done by the worker,
// claimed by the caller (the worker was late).
enum : uint64_t { kOpen = 0, kWorker = 1, kDone = 2, kCaller = 3 };

struct Pool {
  std::vector<std::thread> workers;  // worker i has slot i
  Slot slots[kMaxPoolThreads + 1];
  uint64_t job = 0;                  // the last job number (written by the thread holding busy)
  std::atomic<int> sleepers{0};
  std::atomic<bool> busy{false};     // held by the thread driving a job
  std::atomic<bool> resting{false};  // pool_rest(): idle workers sleep now instead of spinning
  std::mutex mu;
  std::condition_variable cv;
  int threads = 1;                   // thread count kernels use

  void worker_loop(int slot) {
    uint64_t seen = 0;
    Slot& s = slots[slot];
    for (;;) {
      // Spin kSpinUs for the next job, then sleep.
      auto t0 = std::chrono::steady_clock::now();
      int spins = 0;
      while (s.gen.load(std::memory_order_seq_cst) == seen) {
        cpu_relax();
        if (++spins < 256) continue;
        spins = 0;
        if (!resting.load(std::memory_order_relaxed) && std::chrono::steady_clock::now() - t0 < std::chrono::microseconds(kSpinUs)) continue;
        std::unique_lock<std::mutex> lk(mu);
        sleepers.fetch_add(1, std::memory_order_seq_cst);
        cv.wait(lk, [&] { return s.gen.load(std::memory_order_seq_cst) != seen; });
        sleepers.fetch_sub(1, std::memory_order_seq_cst);
      }
      seen = s.gen.load(std::memory_order_acquire);
      // Claim this job's part unless the caller already took it (then the job may be over and
      // the slot rewritten for the next one: the claim fails and the loop sees the new gen).
      uint64_t open = seen << 2 | kOpen;
      if (s.state.compare_exchange_strong(open, seen << 2 | kWorker, std::memory_order_acq_rel)) {
        s.fn(s.ctx, slot);
        s.state.store(seen << 2 | kDone, std::memory_order_release);
      }
    }
  }
};

Pool* g_pool = new Pool();  // never destroyed: workers are detached and live until exit
thread_local bool t_inPool = false;

}  // namespace

int pool_threads() { return g_pool->threads; }
void pool_rest() { g_pool->resting.store(true, std::memory_order_relaxed); }

void pool_set_threads(int n) {
  if (n < 1) n = 1;
  if (n > kMaxPoolThreads) n = kMaxPoolThreads;
  Pool& p = *g_pool;
  bool expected = false;
  while (!p.busy.compare_exchange_weak(expected, true)) {
    expected = false;
    std::this_thread::yield();
  }
  while (static_cast<int>(p.workers.size()) < n - 1) {
    int slot = static_cast<int>(p.workers.size()) + 1;
    p.workers.emplace_back([slot] {
      t_inPool = true;
#if defined(__x86_64__) || defined(__i386__)
      _mm_setcsr(_mm_getcsr() | 0x8040u);  // FTZ | DAZ: workers run kernels only (see NoDenormals)
#endif
      g_pool->worker_loop(slot);
    });
    p.workers.back().detach();
  }
  p.threads = n;
  p.busy.store(false);
}

void pool_run(int nparts, PartFn fn, const void* ctx, size_t bytes) {
  Pool& p = *g_pool;
  bool expected = false;
  if (nparts <= 1 || t_inPool || !p.busy.compare_exchange_strong(expected, true)) {
    for (int i = 0; i < nparts; i++) fn(ctx, i);  // nested, or another thread holds the pool
    return;
  }
  const int nw = nparts - 1 < static_cast<int>(p.workers.size()) ? nparts - 1 : static_cast<int>(p.workers.size());
  const uint64_t job = ++p.job;
  for (int w = 1; w <= nw; w++) {
    Slot& s = p.slots[w];
    s.fn = fn;
    if (bytes && bytes <= kPoolPayload) {
      std::memcpy(s.payload, ctx, bytes);
      s.ctx = s.payload;
    } else {
      s.ctx = ctx;
    }
    s.state.store(job << 2 | kOpen, std::memory_order_relaxed);
    s.gen.store(job, std::memory_order_seq_cst);  // publishes the slot (seq_cst: see sleepers)
  }
  p.resting.store(false, std::memory_order_relaxed);
  if (p.sleepers.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lk(p.mu);
    p.cv.notify_all();
  }
  t_inPool = true;
  fn(ctx, 0);
  for (int i = nw + 1; i < nparts; i++) fn(ctx, i);  // parts beyond the workers
  // Each worker's part: take it if the worker has not, else wait until the worker is done.
  for (int w = 1; w <= nw; w++) {
    Slot& s = p.slots[w];
    uint64_t open = job << 2 | kOpen;
    if (s.state.compare_exchange_strong(open, job << 2 | kCaller, std::memory_order_acq_rel)) {
      fn(ctx, w);
      continue;
    }
    for (int spins = 0; s.state.load(std::memory_order_acquire) != (job << 2 | kDone); spins++) {
      if ((spins & 1023) == 1023) std::this_thread::yield();
      else cpu_relax();
    }
  }
  t_inPool = false;
  p.busy.store(false, std::memory_order_release);
}

}  // namespace la
