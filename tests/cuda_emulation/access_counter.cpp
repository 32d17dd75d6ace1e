// Exact memory access counts of the emulated kernels, as Nsight Compute names them: global
// 32-byte sectors per request against the ideal (coalescing), shared-memory wavefronts per
// request against the ideal (bank conflicts).
//
// How: the launcher is compiled with GCC's AddressSanitizer instrumentation set to call a
// function before every load and store (-fsanitize=address with
// asan-instrumentation-with-call-threshold=0, no stack or global redzones), and this file,
// compiled without it and linked instead of the sanitizer's runtime, provides those functions
// (__asan_load4 and the like): they see each access's address, size and call site. No library
// we can install does this (GPU simulators and ncu need the GPU code; valgrind's tools know
// no warps), so this is the smallest thing that does.
//
// The model, after the CUDA programming guide (compute capability 5.0 and later) and ncu:
// - device memory is what the launcher and the tests register (cudaMalloc's buffers); shared
//   memory is every ECA_SHARED array and the launch's dynamic buffer; anything else (a thread's
//   own variables, the harness's bookkeeping) is a register or not the kernel's, and ignored;
// - a request is one execution of one access site (its call site in the compiled kernel) by
//   the lanes of a warp: the k-th time lane i reaches the site joins the k-th time lane j does,
//   which is the warp's k-th execution of that instruction when the warp does not diverge
//   around it;
// - global: the request's sectors are the distinct 32-byte segments its bytes touch; the
//   ideal is its distinct bytes over 32, rounded up (what contiguous, aligned lanes would
//   touch);
// - shared: 32 banks of 4-byte words; a request is served in phases of 32 lanes for accesses
//   of up to 4 bytes, 16 lanes for 8-byte and 8 lanes for 16-byte ones, each phase taking as
//   many wavefronts as the most distinct words any one bank holds (lanes reading one word
//   share it); the ideal is the distinct bytes over 128, rounded up. Banks are counted from
//   the start of each shared array (the device aligns them; an array's placement among the
//   others is the compiler's).
// What it does not model: the code nvcc makes (this counts the accesses the kernel source
// makes as GCC compiles it at -O1 without splitting aggregates, -fno-tree-sra, so a 16-byte
// Pack stays one 16-byte access), caches (a sector read twice counts twice), and divergence
// inside a request.
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace {

enum Space : int { kGlobal = 0, kShared = 1 };

struct Range {
  std::uintptr_t begin, end;
};

struct Access {
  unsigned lane;
  std::uintptr_t offset;  // from the start of its shared array; the address for global memory
  unsigned size;
};

// A site that reads shared memory for some warps and device memory for others (a pointer
// that may point to either) counts as two sites, one per space.
struct RequestKey {
  unsigned warp;
  std::uintptr_t pc;
  unsigned k;
  int space;
  bool operator==(const RequestKey& o) const {
    return warp == o.warp && pc == o.pc && k == o.k && space == o.space;
  }
};
struct RequestHash {
  std::size_t operator()(const RequestKey& r) const {
    return std::hash<std::uintptr_t>()(r.pc) * 31 + r.warp * 1000003u + r.k * 7 + r.space;
  }
};

struct Site {
  int space = kGlobal;
  bool store = false;
  unsigned size = 0;
  std::uint64_t requests = 0, accesses = 0, units = 0, ideal_units = 0;  // sectors or wavefronts
};

struct Request {
  int space = kGlobal;
  bool store = false;
  std::vector<Access> accesses;
};

std::vector<Range> global_ranges, shared_ranges;
Range dynamic_range{0, 0};
long current_lane = -1;  // the emulated thread running, -1 in the scheduler
std::string kernel = "?";
std::unordered_map<RequestKey, Request, RequestHash> pending;
std::map<std::pair<unsigned, std::uintptr_t>, unsigned> occurrences;  // (thread, pc) -> times
std::map<std::tuple<std::string, std::uintptr_t, int>, Site> sites;
std::string report_text;

bool in(const std::vector<Range>& ranges, std::uintptr_t a, Range* found) {
  for (const Range& r : ranges) {
    if (a >= r.begin && a < r.end) {
      *found = r;
      return true;
    }
  }
  return false;
}

void record(std::uintptr_t address, unsigned size, bool store, void* pc) {
  if (current_lane < 0) return;
  Range range;
  int space;
  if (address >= dynamic_range.begin && address < dynamic_range.end) {
    range = dynamic_range;
    space = kShared;
  } else if (in(shared_ranges, address, &range)) {
    space = kShared;
  } else if (in(global_ranges, address, &range)) {
    space = kGlobal;
  } else {
    return;  // a register, or the harness's own state
  }
  const unsigned lane = unsigned(current_lane);
  const std::uintptr_t site = reinterpret_cast<std::uintptr_t>(pc);
  const unsigned k = occurrences[{lane, site}]++;
  Request& request = pending[RequestKey{lane / 32, site, k, space}];
  request.space = space;
  request.store = store;
  request.accesses.push_back({lane % 32, space == kShared ? address - range.begin : address, size});
}

// Sectors (global) or wavefronts (shared) of one request, and the ideal.
std::pair<std::uint64_t, std::uint64_t> cost(const Request& r) {
  std::set<std::uintptr_t> bytes;
  for (const Access& a : r.accesses) {
    for (unsigned b = 0; b < a.size; ++b) bytes.insert(a.offset + b);
  }
  if (r.space == kGlobal) {
    std::set<std::uintptr_t> sectors;
    for (std::uintptr_t b : bytes) sectors.insert(b / 32);
    return {sectors.size(), (bytes.size() + 31) / 32};
  }
  unsigned size = 0;
  for (const Access& a : r.accesses) size = std::max(size, a.size);
  const unsigned lanes_per_phase = size <= 4 ? 32 : 128 / size;
  std::uint64_t wavefronts = 0;
  for (unsigned phase = 0; phase < 32 / lanes_per_phase; ++phase) {
    std::map<unsigned, std::set<std::uintptr_t>> words_of_bank;
    for (const Access& a : r.accesses) {
      if (a.lane / lanes_per_phase != phase) continue;
      for (std::uintptr_t w = a.offset / 4; w <= (a.offset + a.size - 1) / 4; ++w) {
        words_of_bank[unsigned(w % 32)].insert(w);
      }
    }
    std::size_t most = 0;
    for (const auto& [bank, words] : words_of_bank) most = std::max(most, words.size());
    wavefronts += most;
  }
  return {wavefronts, (bytes.size() + 127) / 128};
}

void finish_block() {
  Dl_info info{};
  for (const auto& [key, request] : pending) {
    std::uintptr_t offset = key.pc;
    if (dladdr(reinterpret_cast<void*>(key.pc), &info) && info.dli_fbase) {
      offset -= reinterpret_cast<std::uintptr_t>(info.dli_fbase);
    }
    Site& site = sites[{kernel, offset, request.space}];
    site.space = request.space;
    site.store = request.store;
    for (const Access& a : request.accesses) site.size = std::max(site.size, a.size);
    const auto [units, ideal] = cost(request);
    site.requests += 1;
    site.accesses += request.accesses.size();
    site.units += units;
    site.ideal_units += ideal;
  }
  pending.clear();
  occurrences.clear();
}

}  // namespace

extern "C" {

// The instrumentation's entry points (GCC 12's AddressSanitizer ABI, callbacks only).
#define ECA_ACCESS(n)                                 \
  void __asan_load##n(std::uintptr_t a) {             \
    record(a, n, false, __builtin_return_address(0)); \
  }                                                   \
  void __asan_store##n(std::uintptr_t a) {            \
    record(a, n, true, __builtin_return_address(0));  \
  }                                                   \
  void __asan_load##n##_noabort(std::uintptr_t a) {   \
    record(a, n, false, __builtin_return_address(0)); \
  }                                                   \
  void __asan_store##n##_noabort(std::uintptr_t a) {  \
    record(a, n, true, __builtin_return_address(0));  \
  }
ECA_ACCESS(1)
ECA_ACCESS(2)
ECA_ACCESS(4)
ECA_ACCESS(8)
ECA_ACCESS(16)
#undef ECA_ACCESS
void __asan_loadN(std::uintptr_t a, std::uintptr_t n) {
  record(a, unsigned(n), false, __builtin_return_address(0));
}
void __asan_storeN(std::uintptr_t a, std::uintptr_t n) {
  record(a, unsigned(n), true, __builtin_return_address(0));
}
void __asan_loadN_noabort(std::uintptr_t a, std::uintptr_t n) {
  record(a, unsigned(n), false, __builtin_return_address(0));
}
void __asan_storeN_noabort(std::uintptr_t a, std::uintptr_t n) {
  record(a, unsigned(n), true, __builtin_return_address(0));
}
void __asan_init() {}
void __asan_version_mismatch_check_v8() {}
void __asan_handle_no_return() {}
void __asan_before_dynamic_init(const char*) {}
void __asan_after_dynamic_init() {}
// The fiber switches cuda_emulation.h announces to the sanitizer: nothing to do here.
void __sanitizer_start_switch_fiber(void**, const void*, std::size_t) {}
void __sanitizer_finish_switch_fiber(void*, const void**, std::size_t*) {}

// The harness's side (cuda_emulation.h and launcher.cpp, under ECA_EMU_COUNT_ACCESSES).
void eca_emu_count_lane(long lane) {
  current_lane = lane;
}
void eca_emu_count_block_done() {
  finish_block();
}
void eca_emu_count_kernel(const char* name) {
  kernel = name;
}
void eca_emu_count_shared(const void* p, std::size_t bytes) {
  const auto b = reinterpret_cast<std::uintptr_t>(p);
  shared_ranges.push_back({b, b + bytes});
}
void eca_emu_count_dynamic_shared(const void* p, std::size_t bytes) {
  const auto b = reinterpret_cast<std::uintptr_t>(p);
  dynamic_range = {b, b + bytes};
}

// The tests' side (tests/emulated_cuda.py): device buffers, a fresh count, the report.
void eca_emu_count_global(const void* p, std::size_t bytes) {
  const auto b = reinterpret_cast<std::uintptr_t>(p);
  global_ranges.push_back({b, b + bytes});
}
void eca_emu_count_forget_globals() {
  global_ranges.clear();
}
void eca_emu_count_reset() {
  sites.clear();
  pending.clear();
  occurrences.clear();
}
// One line per access site: kernel, site (offset in the library), space (global/shared),
// load/store, bytes per access, requests, accesses, sectors or wavefronts, and their ideal.
const char* eca_emu_count_report() {
  report_text.clear();
  char pc[32];
  for (const auto& [key, s] : sites) {
    std::snprintf(pc, sizeof(pc), "0x%lx", static_cast<unsigned long>(std::get<1>(key)));
    report_text += std::get<0>(key) + " " + pc + (s.space == kShared ? " shared " : " global ") +
                   (s.store ? "store " : "load ") + std::to_string(s.size) + " " +
                   std::to_string(s.requests) + " " + std::to_string(s.accesses) + " " +
                   std::to_string(s.units) + " " + std::to_string(s.ideal_units) + "\n";
  }
  return report_text.c_str();
}

}  // extern "C"
