// Host stand-ins for the CUDA built-ins that csrc/cuda/'s device code uses, so that the very
// kernel source runs on a CPU: include this, then the device headers, and launch with
// eca_emu::launch. Ours because the projects that run CUDA on CPUs (HIP-CPU, chipStar) are
// not packaged where our machines install from; kept to what the kernels use.
//
// What it models:
// - a grid of blocks run one block at a time, in index order or shuffled (a seed); a block's
//   threads as fibers (ucontext) on one OS thread, switched at every __syncthreads and warp
//   intrinsic, so they interleave as concurrent threads may;
// - threadIdx, blockIdx, blockDim, gridDim; __syncthreads as a barrier of the whole block that
//   fails loudly (synccheck) when part of the block has exited or waits at another one;
// - __shfl_sync, __shfl_up_sync, __shfl_down_sync, __shfl_xor_sync, __ballot_sync and
//   __syncwarp through a per-warp exchange, with the mask checked: every named lane must take
//   part, from the same call, and be a thread of the block; a lane outside it may not be read;
// - static shared memory (declared with ECA_SHARED) and the launch's dynamic shared memory
//   (ECA_DYNAMIC_SHARED, an exact-size buffer of Options::dynamic_shared_bytes, at most what
//   an sm_90 block may opt in to) per block, filled with 0xff bytes (NaN in every float type)
//   before each block, so that a read of a word nobody wrote shows in the results (initcheck);
// - float16 and bfloat16 as c10::Half and c10::BFloat16, whose host conversions round to
//   nearest even, as the device's do;
// - under ThreadSanitizer, each thread is a fiber of its own and only barriers and shuffles
//   order them, so two threads of a block touching one word without a barrier between them
//   are reported (racecheck); under AddressSanitizer, exact-size buffers catch out-of-bounds
//   accesses (memcheck).
// What it does not model: the code nvcc makes (registers, instructions; both sides build with
// FMA contraction off, so a * b + c rounds alike), CUDA's exp (the CPU's libm runs instead),
// memory ordering between blocks or blocks running at once (blocks run in turn, so a race
// between blocks goes unseen; the shuffled order shows a result that depends on block order),
// timing, atomics, __any_sync / __all_sync, cooperative groups, and
// cluster or grid barriers (no kernel uses them).
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <source_location>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(ECA_EMU_COUNT_ACCESSES)
#include "access_counter.h"
#endif

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using cudaStream_t = struct CUstream_st*;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Shared arrays are static arrays that the scheduler refills with 0xff bytes before each block;
// the device code declares them with ECA_SHARED (csrc/cuda/eca_device.cuh), which registers
// each array on its first run (a thread-safe static: its guard orders the fill before the
// other threads' accesses). A bare __shared__ fails to compile here.
#define ECA_SHARED(type, name, dims) \
  static type name dims;             \
  static const ::eca_emu::SharedArray name##_filled_before_each_block(&name, sizeof(name))
#define __shared__ declare_shared_memory_with_ECA_SHARED
#define ECA_DYNAMIC_SHARED(name) unsigned char* const name = ::eca_emu::dynamic_shared()

using std::fma;
using std::min;

namespace eca_emu {

// A launch that broke a rule of CUDA's execution model (synccheck's findings and the like).
struct KernelFault : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class State { Runnable, AtBarrier, AtWarpSync, Done };

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  dim3 thread_idx;
  unsigned linear = 0;
  bool started = false;
  // Read by the scheduler while the fiber is suspended: atomics, so that ThreadSanitizer sees
  // no race in the harness's own bookkeeping (relaxed: they order nothing in the kernel).
  std::atomic<State> state{State::Runnable};
  std::atomic<const char*> wait_file{nullptr};
  std::atomic<unsigned> wait_line{0};
  std::atomic<unsigned> wait_mask{0};
#if defined(__SANITIZE_THREAD__)
  void* tsan_fiber = nullptr;
#endif
};

struct Block {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  // The synchronisation the kernels' barriers and shuffles imply, in a form ThreadSanitizer
  // reads: each thread adds to the word on arrival and after release (acquire and release).
  std::atomic<unsigned> barrier_word{0};
  std::vector<std::atomic<unsigned>> warp_words;
  std::vector<std::uint64_t> exchange;  // one word per thread, for the shuffles
  const void* kernel_body = nullptr;    // the std::function the fibers run
  std::string fault;
#if defined(__SANITIZE_THREAD__)
  void* tsan_scheduler = nullptr;
#endif
#if defined(__SANITIZE_ADDRESS__)
  const void* main_stack_bottom = nullptr;
  std::size_t main_stack_size = 0;
#endif
};

inline Block* block = nullptr;
inline std::vector<std::pair<void*, std::size_t>> shared_arrays;  // every ECA_SHARED array

struct SharedArray {
  SharedArray(void* p, std::size_t n) {
    shared_arrays.emplace_back(p, n);
#if defined(ECA_EMU_COUNT_ACCESSES)
    eca_emu_count_shared(p, n);
#endif
    std::memset(p, 0xff, n);  // NaN in every float type; later blocks' fill is the scheduler's
  }
};
// The launch's dynamic shared memory: exactly its size, so AddressSanitizer sees a step past
// the end; refilled with 0xff before each block.
inline std::unique_ptr<unsigned char[]> dynamic_buffer;
inline std::size_t dynamic_bytes = 0;
inline unsigned char* dynamic_shared() {
  return dynamic_buffer.get();
}
// The most dynamic shared memory a block may opt in to on sm_90 (227 KiB).
constexpr std::size_t kMaxDynamicShared = 227 * 1024;

inline std::atomic<Fiber*> current{nullptr};
inline dim3 block_idx, block_dim, grid_dim;
constexpr std::size_t kStackBytes = 256 * 1024;

inline Fiber& self() {
  return *current.load(std::memory_order_relaxed);
}

}  // namespace eca_emu

#define threadIdx (::eca_emu::self().thread_idx)
#define blockIdx (::eca_emu::block_idx)
#define blockDim (::eca_emu::block_dim)
#define gridDim (::eca_emu::grid_dim)

namespace eca_emu {

// Swaps to `to`. `sync`: whether ThreadSanitizer should see this switch as ordering the two
// sides; only a thread's start and its end are, so that threads stay unordered between
// barriers. `to_stack` null: the scheduler's own stack.
inline void switch_to(ucontext_t* from, ucontext_t* to, [[maybe_unused]] void* to_tsan,
                      [[maybe_unused]] bool sync, [[maybe_unused]] const char* to_stack,
                      [[maybe_unused]] bool leaving_for_good = false) {
#if defined(__SANITIZE_THREAD__)
  __tsan_switch_to_fiber(to_tsan, sync ? 0 : __tsan_switch_to_fiber_no_sync);
#endif
#if defined(__SANITIZE_ADDRESS__)
  void* fake_stack = nullptr;
  if (to_stack) {
    __sanitizer_start_switch_fiber(leaving_for_good ? nullptr : &fake_stack, to_stack, kStackBytes);
  } else {
    __sanitizer_start_switch_fiber(leaving_for_good ? nullptr : &fake_stack,
                                   block->main_stack_bottom, block->main_stack_size);
  }
#endif
  swapcontext(from, to);
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

// From a fiber: back to the scheduler until it resumes this fiber; for good when the fiber has
// ended or faulted (then ThreadSanitizer sees the scheduler's later reads ordered after it).
inline void suspend(bool for_good = false) {
  Fiber& f = self();
#if defined(__SANITIZE_THREAD__)
  void* to_tsan = block->tsan_scheduler;
#else
  void* to_tsan = nullptr;
#endif
  switch_to(&f.context, &block->scheduler, to_tsan, for_good, nullptr, for_good);
}

inline std::string site(const char* file, unsigned line) {
  return std::string(file ? file : "?") + ":" + std::to_string(line);
}

}  // namespace eca_emu

inline void __syncthreads(std::source_location where = std::source_location::current()) {
  using namespace eca_emu;
  Fiber& f = self();
  f.wait_file.store(where.file_name(), std::memory_order_relaxed);
  f.wait_line.store(where.line(), std::memory_order_relaxed);
  block->barrier_word.fetch_add(1, std::memory_order_acq_rel);
  f.state.store(State::AtBarrier, std::memory_order_relaxed);
  suspend();
  block->barrier_word.fetch_add(1, std::memory_order_acq_rel);
}

namespace eca_emu {

// The calling lane waits until every lane of `mask` in its warp has called warp_sync from the
// same place; the scheduler checks the rule.
inline void warp_sync(unsigned mask, const std::source_location& where) {
  Fiber& f = self();
  std::atomic<unsigned>& word = block->warp_words[f.linear / 32];
  f.wait_file.store(where.file_name(), std::memory_order_relaxed);
  f.wait_line.store(where.line(), std::memory_order_relaxed);
  f.wait_mask.store(mask, std::memory_order_relaxed);
  word.fetch_add(1, std::memory_order_acq_rel);
  f.state.store(State::AtWarpSync, std::memory_order_relaxed);
  suspend();
  word.fetch_add(1, std::memory_order_acq_rel);
}

// Fails the launch unless lane `lane` is in `mask`; `role`: which lane that is.
inline void require_in_mask(unsigned mask, unsigned lane, const char* role,
                            const std::source_location& where) {
  if (mask >> lane & 1u) return;
  block->fault = std::string(role) + " lane " + std::to_string(lane) +
                 " is not in the warp intrinsic's mask " + std::to_string(mask) + ", at " +
                 site(where.file_name(), where.line());
  suspend(/*for_good=*/true);
}

// v of lane `src` of the caller's warp (src in [0, 32)), through the warp's exchange words.
template <typename T>
T warp_exchange(unsigned mask, T v, unsigned src, const std::source_location& where) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t));
  Fiber& f = self();
  const unsigned lane = f.linear % 32, warp_base = f.linear - lane;
  require_in_mask(mask, lane, "calling", where);
  require_in_mask(mask, src, "source", where);
  std::memcpy(&block->exchange[f.linear], &v, sizeof(T));
  warp_sync(mask, where);
  T got;
  std::memcpy(&got, &block->exchange[warp_base + src], sizeof(T));
  warp_sync(mask, where);  // nobody overwrites a word before every lane has read it
  return got;
}

}  // namespace eca_emu

// The warp intrinsics, as CUDA's programming guide defines them for a `width` (a power of two
// up to 32) that splits the warp into segments: a source lane past the caller's segment gives
// the caller its own value.
namespace eca_emu {
inline unsigned lane_id() {
  return self().linear % 32;
}
inline unsigned segment(unsigned lane, int width) {
  return lane / unsigned(width);
}
}  // namespace eca_emu

template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32,
              std::source_location where = std::source_location::current()) {
  const unsigned lane = eca_emu::lane_id();
  const unsigned src = eca_emu::segment(lane, width) * width + unsigned(src_lane) % width;
  return eca_emu::warp_exchange(mask, v, src, where);
}

template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32,
                 std::source_location where = std::source_location::current()) {
  const unsigned lane = eca_emu::lane_id();
  const unsigned src = lane % width >= delta ? lane - delta : lane;
  return eca_emu::warp_exchange(mask, v, src, where);
}

template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32,
                   std::source_location where = std::source_location::current()) {
  const unsigned lane = eca_emu::lane_id();
  const unsigned src = lane % width + delta < unsigned(width) ? lane + delta : lane;
  return eca_emu::warp_exchange(mask, v, src, where);
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, unsigned lane_mask, int width = 32,
                  std::source_location where = std::source_location::current()) {
  const unsigned lane = eca_emu::lane_id(), other = (lane ^ lane_mask) % 32;
  // A later segment is out of reach; an earlier one is not (the guide's rule).
  const bool reach = eca_emu::segment(other, width) <= eca_emu::segment(lane, width);
  return eca_emu::warp_exchange(mask, v, reach ? other : lane, where);
}

// Bit i set when lane i of `mask` passes a nonzero predicate.
inline unsigned __ballot_sync(unsigned mask, int predicate,
                              std::source_location where = std::source_location::current()) {
  using namespace eca_emu;
  const unsigned lane = lane_id(), base = self().linear - lane;
  require_in_mask(mask, lane, "calling", where);
  block->exchange[self().linear] = predicate != 0;
  warp_sync(mask, where);
  unsigned votes = 0;
  for (unsigned i = 0; i < 32; ++i) {
    if (mask >> i & 1u) votes |= unsigned(block->exchange[base + i] != 0) << i;
  }
  warp_sync(mask, where);  // nobody overwrites a vote before every lane has counted
  return votes;
}

inline void __syncwarp(unsigned mask = 0xffffffffu,
                       std::source_location where = std::source_location::current()) {
  eca_emu::warp_sync(mask, where);
}

namespace eca_emu {

inline void fiber_entry() {
  Fiber& f = self();
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(nullptr, &block->main_stack_bottom, &block->main_stack_size);
#endif
  (*static_cast<const std::function<void()>*>(block->kernel_body))();
  f.state.store(State::Done, std::memory_order_relaxed);
  suspend(/*for_good=*/true);
}

// Releases the threads waiting at a barrier or a warp sync when the rules allow; false when
// nothing could be released (a deadlock), with the reason in block->fault.
inline bool release_waiting(unsigned threads) {
  std::vector<Fiber>& fibers = block->fibers;
  // Warp syncs first: a warp whose named lanes all wait at one call goes on.
  bool released = false;
  for (unsigned base = 0; base < threads; base += 32) {
    const unsigned lanes = std::min(32u, threads - base);
    for (unsigned lane = 0; lane < lanes; ++lane) {
      Fiber& f = fibers[base + lane];
      if (f.state.load(std::memory_order_relaxed) != State::AtWarpSync) continue;
      const unsigned mask = f.wait_mask.load(std::memory_order_relaxed);
      bool all_there = true;
      for (unsigned other = 0; other < 32; ++other) {
        if (!(mask >> other & 1u)) continue;
        if (other >= lanes) {
          block->fault = "a shuffle's mask names lane " + std::to_string(other) +
                         ", past the block's last thread";
          return false;
        }
        const Fiber& g = fibers[base + other];
        const State s = g.state.load(std::memory_order_relaxed);
        if (s == State::Done || s == State::AtBarrier) {
          block->fault = "lane " + std::to_string(other) + " of a shuffle's mask " +
                         (s == State::Done ? "has exited" : "waits at a __syncthreads") +
                         " while lane " + std::to_string(lane) + " waits at " +
                         site(f.wait_file, f.wait_line);
          return false;
        }
        if (s != State::AtWarpSync) {
          all_there = false;
          continue;
        }
        if (g.wait_line.load() != f.wait_line.load() || g.wait_mask.load() != mask ||
            std::strcmp(g.wait_file.load(), f.wait_file.load()) != 0) {
          block->fault =
              "lanes of one warp wait at different shuffles: " + site(f.wait_file, f.wait_line) +
              " and " + site(g.wait_file, g.wait_line);
          return false;
        }
      }
      if (!all_there) continue;
      for (unsigned other = 0; other < 32; ++other) {
        if (mask >> other & 1u) fibers[base + other].state.store(State::Runnable);
      }
      released = true;
    }
  }
  if (released) return true;
  // The block barrier: every thread of the block, at the same __syncthreads.
  const Fiber* first = nullptr;
  unsigned waiting = 0, done = 0;
  for (unsigned t = 0; t < threads; ++t) {
    const Fiber& f = fibers[t];
    const State s = f.state.load(std::memory_order_relaxed);
    if (s == State::Done) ++done;
    if (s != State::AtBarrier) continue;
    ++waiting;
    if (!first) {
      first = &f;
    } else if (f.wait_line.load() != first->wait_line.load() ||
               std::strcmp(f.wait_file.load(), first->wait_file.load()) != 0) {
      block->fault = "threads of one block wait at different __syncthreads: " +
                     site(first->wait_file, first->wait_line) + " and " +
                     site(f.wait_file, f.wait_line);
      return false;
    }
  }
  if (waiting > 0 && waiting + done == threads) {
    if (done > 0) {
      block->fault = "__syncthreads at " + site(first->wait_file, first->wait_line) +
                     " reached by " + std::to_string(waiting) + " of " + std::to_string(threads) +
                     " threads; the others have exited";
      return false;
    }
    for (Fiber& f : fibers) f.state.store(State::Runnable, std::memory_order_relaxed);
    return true;
  }
  block->fault = "deadlock: " + std::to_string(waiting) + " threads at a __syncthreads, the " +
                 "others at warp syncs that cannot complete";
  return false;
}

// Runs block `b` of the launch to its end; throws KernelFault on a broken rule.
inline void run_block(dim3 b, unsigned threads) {
  block_idx = b;
  for (const auto& [p, n] : shared_arrays) std::memset(p, 0xff, n);
  if (dynamic_bytes) std::memset(dynamic_buffer.get(), 0xff, dynamic_bytes);
  std::vector<Fiber>& fibers = block->fibers;
  for (unsigned t = 0; t < threads; ++t) {
    Fiber& f = fibers[t];
    f.thread_idx =
        dim3(t % block_dim.x, t / block_dim.x % block_dim.y, t / (block_dim.x * block_dim.y));
    f.linear = t;
    f.started = false;
    f.state.store(State::Runnable, std::memory_order_relaxed);
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.get();
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = nullptr;  // fibers never return from fiber_entry
    makecontext(&f.context, fiber_entry, 0);
  }
  unsigned done = 0;
  while (done < threads) {
    bool ran = false;
    for (Fiber& f : fibers) {
      if (f.state.load(std::memory_order_relaxed) != State::Runnable) continue;
      ran = true;
      current.store(&f, std::memory_order_relaxed);
#if defined(__SANITIZE_THREAD__)
      void* to_tsan = f.tsan_fiber;
#else
      void* to_tsan = nullptr;
#endif
      const bool first = !f.started;
      f.started = true;
#if defined(ECA_EMU_COUNT_ACCESSES)
      eca_emu_count_lane(long(f.linear));
#endif
      switch_to(&block->scheduler, &f.context, to_tsan, first, f.stack.get());
#if defined(ECA_EMU_COUNT_ACCESSES)
      eca_emu_count_lane(-1);
#endif
      if (!block->fault.empty()) throw KernelFault(block->fault);
      if (f.state.load(std::memory_order_relaxed) == State::Done) ++done;
    }
    if (done == threads) break;
    if (!ran && !release_waiting(threads)) throw KernelFault(block->fault);
  }
#if defined(ECA_EMU_COUNT_ACCESSES)
  eca_emu_count_block_done();
#endif
}

struct Options {
  bool shuffle_blocks = false;  // run the blocks in a random order (seeded) rather than by index
  unsigned seed = 0;
  std::size_t dynamic_shared_bytes = 0;  // the launch's dynamic shared memory
};

// Runs `body` (a call of a kernel) on every thread of every block of a (grid, block) launch.
inline void launch(dim3 grid, dim3 block_shape, const std::function<void()>& body,
                   const Options& options = {}) {
  const unsigned threads = block_shape.x * block_shape.y * block_shape.z;
  if (threads == 0 || threads > 1024) throw KernelFault("a block of 1 to 1024 threads expected");
  if (options.dynamic_shared_bytes > kMaxDynamicShared) {
    throw KernelFault(std::to_string(options.dynamic_shared_bytes) +
                      " bytes of dynamic shared memory: more than a block may have");
  }
  dynamic_bytes = options.dynamic_shared_bytes;
  dynamic_buffer.reset(new unsigned char[dynamic_bytes]);
#if defined(ECA_EMU_COUNT_ACCESSES)
  eca_emu_count_dynamic_shared(dynamic_buffer.get(), dynamic_bytes);
#endif
  static Block state;  // stacks and fibers kept from launch to launch
  block = &state;
  if (state.fibers.size() < threads) {
    state.fibers = std::vector<Fiber>(threads);
    for (Fiber& f : state.fibers) f.stack.reset(new char[kStackBytes]);
    state.warp_words = std::vector<std::atomic<unsigned>>((threads + 31) / 32);
    state.exchange.assign(threads, 0);
  }
#if defined(__SANITIZE_THREAD__)
  state.tsan_scheduler = __tsan_get_current_fiber();
  for (Fiber& f : state.fibers) {
    if (!f.tsan_fiber) f.tsan_fiber = __tsan_create_fiber(0);
  }
#endif
  state.fault.clear();
  state.kernel_body = &body;
  block_dim = block_shape;
  grid_dim = grid;
  std::vector<unsigned> order(grid.x * grid.y * grid.z);
  std::iota(order.begin(), order.end(), 0u);
  if (options.shuffle_blocks) std::shuffle(order.begin(), order.end(), std::mt19937(options.seed));
  for (unsigned b : order) {
    run_block(dim3(b % grid.x, b / grid.x % grid.y, b / (grid.x * grid.y)), threads);
  }
  current.store(nullptr, std::memory_order_relaxed);
}

}  // namespace eca_emu
