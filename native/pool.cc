// The persistent worker pool behind every multi-threaded kernel.
// OpenBLAS itself runs single-threaded (openblas_set_num_threads(1)); large GEMMs are split over
// this pool by output columns instead, so one set of threads serves every kernel and nothing
// oversubscribes the cores (as fast as OpenBLAS's own threading: bench/README.md).

#include "common.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
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
// a worker that sleeps costs the caller a futex wake (several us in a VM) on every such job.
// 50 us covers the gaps of a decode loop once its small matmuls also run on two threads (see
// linear.cc), and hands the core back quickly when the JavaScript side is busy.
constexpr int kSpinUs = 50;

struct Pool {
  struct alignas(64) Slot {
    std::atomic<uint64_t> gen{0};  // bumped to call this worker to the current job
  };
  std::vector<std::thread> workers;  // worker i has slot i + 1
  Slot slots[257];
  std::atomic<int> join{-1};         // -1: no job open; n >= 0: job open, n workers inside fn
  std::atomic<int> sleepers{0};
  std::atomic<bool> busy{false};     // held by the thread driving a job
  std::atomic<bool> resting{false};  // pool_rest(): idle workers sleep now instead of spinning
  std::mutex mu;
  std::condition_variable cv;
  TaskFn fn = nullptr;               // valid while join >= 0
  void* ctx = nullptr;
  int threads = 1;                   // thread count kernels use

  void worker_loop(int slot) {
    uint64_t seen = 0;
    std::atomic<uint64_t>& gen = slots[slot].gen;
    for (;;) {
      // Spin kSpinUs for the next call, then sleep.
      auto t0 = std::chrono::steady_clock::now();
      int spins = 0;
      while (gen.load(std::memory_order_seq_cst) == seen) {
        cpu_relax();
        if (++spins < 256) continue;
        spins = 0;
        if (!resting.load(std::memory_order_relaxed) && std::chrono::steady_clock::now() - t0 < std::chrono::microseconds(kSpinUs)) continue;
        std::unique_lock<std::mutex> lk(mu);
        sleepers.fetch_add(1, std::memory_order_seq_cst);
        cv.wait(lk, [&] { return gen.load(std::memory_order_seq_cst) != seen; });
        sleepers.fetch_sub(1, std::memory_order_seq_cst);
      }
      seen = gen.load(std::memory_order_seq_cst);
      // Join the open job, if it is still open (a late worker finds it closed and goes back).
      int s = join.load(std::memory_order_seq_cst);
      while (s >= 0 && !join.compare_exchange_weak(s, s + 1, std::memory_order_seq_cst)) {
      }
      if (s >= 0) {
        fn(ctx);
        join.fetch_sub(1, std::memory_order_seq_cst);
      }
    }
  }
};

Pool* g_pool = new Pool();  // never destroyed: workers are detached and live until exit
thread_local bool t_inPool = false;
thread_local int t_slot = 0;  // 0: a calling thread; i: worker i

}  // namespace

int pool_threads() { return g_pool->threads; }
void pool_rest() { g_pool->resting.store(true, std::memory_order_relaxed); }
int pool_slot() { return t_slot; }

void pool_set_threads(int n) {
  if (n < 1) n = 1;
  if (n > 256) n = 256;
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
      t_slot = slot;
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

void pool_run(int nthreads, TaskFn fn, void* ctx) {
  Pool& p = *g_pool;
  if (nthreads > static_cast<int>(p.workers.size()) + 1) nthreads = static_cast<int>(p.workers.size()) + 1;
  bool expected = false;
  if (nthreads <= 1 || t_inPool || !p.busy.compare_exchange_strong(expected, true)) {
    fn(ctx);  // fn claims all the work itself
    return;
  }
  p.fn = fn;
  p.ctx = ctx;
  p.resting.store(false, std::memory_order_relaxed);
  p.join.store(0, std::memory_order_seq_cst);  // open
  for (int t = 1; t < nthreads; t++) p.slots[t].gen.fetch_add(1, std::memory_order_seq_cst);
  if (p.sleepers.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lk(p.mu);
    p.cv.notify_all();
  }
  t_inPool = true;
  fn(ctx);
  t_inPool = false;
  // All work is claimed; wait for workers still inside fn, then close the job.
  for (int spins = 0;; spins++) {
    int zero = 0;
    if (p.join.compare_exchange_weak(zero, -1, std::memory_order_seq_cst)) break;
    if ((spins & 1023) == 1023) std::this_thread::yield();
    else cpu_relax();
  }
  p.busy.store(false, std::memory_order_release);
}

}  // namespace la
