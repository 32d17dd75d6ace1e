// The contiguous (N, C, L) engine of the CPU kernels: each thread walks its own range of
// (n, c) rows, computing row sums a few rows ahead of the rows it finishes (gate, rescale),
// so a row is re-read from the core's L2 rather than from memory.
#pragma once

#ifndef CPU_CAPABILITY  // compiled once per instruction set, after the target pragma
#error "a part of the CPU kernels: included by eca_kernels_cpu_impl.h only"
#endif

namespace eca_cuda::cpu::CPU_CAPABILITY {
namespace {

// Rows finished per step of pipeline_rows, by bytes: with the look-ahead they stay in L2.
constexpr int64_t kChunkBytes = int64_t(256) << 10;

// Out of line, so that the common path of RowStats (a load) inlines into the tap loops.
template <typename RowStat>
[[gnu::noinline]] auto recompute_row_stat(const RowStat& row_stat, int64_t q) {
  return row_stat(q);
}

// The row stats one thread of pipeline_rows sees: stats[q] for the rows it has computed,
// else row_stat(q) recomputed (halo rows of a neighbouring range, or far ahead when the
// channel window wraps): the same computation, so the same bits.
template <typename acc_t, typename RowStat>
struct RowStats {
  const acc_t* stats;
  int64_t begin, computed;
  const RowStat& row_stat;

  acc_t operator()(int64_t q) const {
    return (q >= begin && q < computed) ? stats[q] : recompute_row_stat(row_stat, q);
  }
  // The end of the computed rows from q0 on: q0 itself when q0 is not computed.
  int64_t computed_end(int64_t q0) const { return (q0 >= begin && q0 < computed) ? computed : q0; }
  const acc_t* data() const { return stats; }
};

// Runs `finish(r0, r1, row_stats)` for consecutive row ranges of an (R, L) contiguous tensor,
// after storing stats[q] = row_stat(q) for rows up to `lookahead` rows past r1. Each thread
// takes one contiguous range of rows.
template <typename acc_t, typename RowStat, typename Finish>
void pipeline_rows(int64_t R, int64_t L, int64_t element_size, int64_t lookahead, acc_t* stats,
                   const RowStat& row_stat, const Finish& finish) {
  const int64_t chunk = std::max<int64_t>(1, kChunkBytes / std::max<int64_t>(1, L * element_size));
  at::parallel_for(0, R, grain_rows(L), [&](int64_t begin, int64_t end) {
    RowStats<acc_t, RowStat> row_stats{stats, begin, begin, row_stat};
    for (int64_t r0 = begin; r0 < end; r0 += chunk) {
      const int64_t r1 = std::min(end, r0 + chunk);
      const int64_t target = std::min(end, r1 + lookahead);
      if (row_stats.computed < target) {
        row_stat.fill(row_stats.computed, target, stats);
        row_stats.computed = target;
      }
      finish(r0, r1, row_stats);
    }
  });
}

}  // namespace
}  // namespace eca_cuda::cpu::CPU_CAPABILITY
