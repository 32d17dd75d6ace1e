// Loop helpers of the CPU kernels: the parallel grain, run-time flags compiled out, and
// full vector steps with one partial step at the end.
#pragma once

#ifndef CPU_CAPABILITY  // compiled once per instruction set, after the target pragma
#error "a part of the CPU kernels: included by eca_kernels_cpu_impl.h only"
#endif

namespace eca_cuda::cpu::CPU_CAPABILITY {
namespace {

// Elements per parallel work item: large enough to amortise scheduling.
constexpr int64_t kGrainElements = 32768;

int64_t grain_rows(int64_t row_length) {
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, row_length));
}

// f(std::true_type{}) when flag, else f(std::false_type{}): a choice made once, so that the
// loops inside f are compiled without it ("times b", "with a shift").
template <typename F>
void with_flag(bool flag, const F& f) {
  if (flag) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

// f(i, kStep) for the full steps of [i0, i1), then f(i, i1 - i) for a partial last step: the
// full steps compile without the partial loads' branches (short rows and narrow channel blocks
// spend a large part of their time there).
template <int64_t kStep, typename F>
void for_each_step(int64_t i0, int64_t i1, const F& f) {
  int64_t i = i0;
  for (; i + kStep <= i1; i += kStep) f(i, kStep);
  if (i < i1) f(i, i1 - i);
}

}  // namespace
}  // namespace eca_cuda::cpu::CPU_CAPABILITY
