// CPU kernels for eca_forward / eca_backward, written once with at::vec::Vectorized and
// compiled once per instruction set: eca_kernels_cpu_{default,avx2,avx512}.cpp define
// CPU_CAPABILITY and include this file, as ATen builds its own
// kernels per capability; eca_kernels_cpu.cpp picks one at run time.
//
// No (N, C, L) temporary is made; per-channel math comes from eca_math.h. Every sum is
// computed by one thread in a fixed order that depends only on the shape, so results are
// bitwise identical for any thread count (they may differ between instruction sets).
//
// Contiguous (N, C, L): each thread walks its own range of (n, c) rows, computing row sums a
// few rows ahead of the rows it finishes (gate, rescale), so a row is re-read from the core's
// L2 rather than from memory. Channels last (N, L, C): each sample's rows of C are cut into
// fixed chunks; a thread sums its chunks, and after the gates are known rescales the same
// chunks, still in its cache.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <type_traits>

#include "../eca_host.h"
#include "eca_kernels_cpu.h"

// The order matters: the target pragma after every header above, at::vec's after it.
// clang-format off
#include "eca_cpu_target.h"
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
// clang-format on

namespace eca_cuda::cpu::CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// Elements per parallel work item: large enough to amortise scheduling.
constexpr int64_t kGrainElements = 32768;

int64_t grain_rows(int64_t row_length) {
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, row_length));
}

// Loads and stores of up to kStep elements as two vectors of the accumulation type; a
// partial step (n < kStep) reads zeros past n and writes only n elements.
template <typename scalar_t>
struct VecIO {
  using acc_t = scalar_t;
  using Vec = Vectorized<acc_t>;
  static constexpr int64_t kStep = 2 * Vec::size();

  static void load(const scalar_t* p, int64_t n, Vec& a, Vec& b) {
    if (n >= kStep) {
      a = Vec::loadu(p);
      b = Vec::loadu(p + Vec::size());
    } else if (n > Vec::size()) {
      a = Vec::loadu(p);
      b = Vec::loadu(p + Vec::size(), n - Vec::size());
    } else {
      a = Vec::loadu(p, n);
      b = Vec(acc_t(0));
    }
  }
  static void store(scalar_t* p, int64_t n, const Vec& a, const Vec& b) {
    if (n >= kStep) {
      a.store(p);
      b.store(p + Vec::size());
    } else if (n > Vec::size()) {
      a.store(p);
      b.store(p + Vec::size(), n - Vec::size());
    } else {
      a.store(p, n);
    }
  }
};

// bfloat16 / float16: one vector of scalar_t holds two float vectors (float accumulation).
template <typename scalar_t>
struct ReducedVecIO {
  using acc_t = float;
  using Vec = Vectorized<float>;
  using ScalarVec = Vectorized<scalar_t>;
  static constexpr int64_t kStep = ScalarVec::size();
  static_assert(kStep == 2 * Vec::size());

  static void load(const scalar_t* p, int64_t n, Vec& a, Vec& b) {
    const ScalarVec v = n >= kStep ? ScalarVec::loadu(p) : ScalarVec::loadu(p, n);
    std::tie(a, b) = at::vec::convert_to_float<scalar_t>(v);
  }
  static void store(scalar_t* p, int64_t n, const Vec& a, const Vec& b) {
    const ScalarVec v = at::vec::convert_from_float<scalar_t>(a, b);
    if (n >= kStep) {
      v.store(p);
    } else {
      v.store(p, n);
    }
  }
};
template <>
struct VecIO<c10::BFloat16> : ReducedVecIO<c10::BFloat16> {};
template <>
struct VecIO<c10::Half> : ReducedVecIO<c10::Half> {};

// Lanes of v summed by at::vec's fixed shuffle tree (the same order on every call).
template <typename acc_t>
acc_t horizontal_sum(const Vectorized<acc_t>& v) {
  return at::vec::vec_reduce_all<acc_t>(
      [](const Vectorized<acc_t>& p, const Vectorized<acc_t>& q) { return p + q; }, v);
}

// Sum of a[0..L) (times b[0..L) when given), in four vector accumulators.
template <typename scalar_t, typename acc_t = typename VecIO<scalar_t>::acc_t>
acc_t row_sum(const scalar_t* a, const scalar_t* b, int64_t L) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t kStep = IO::kStep;
  Vec s0(0), s1(0), s2(0), s3(0);
  Vec a0, a1, a2, a3, b0, b1, b2, b3;
  int64_t l = 0;
  if (b) {
    for (; l + 2 * kStep <= L; l += 2 * kStep) {
      IO::load(a + l, kStep, a0, a1);
      IO::load(a + l + kStep, kStep, a2, a3);
      IO::load(b + l, kStep, b0, b1);
      IO::load(b + l + kStep, kStep, b2, b3);
      s0 = at::vec::fmadd(a0, b0, s0);
      s1 = at::vec::fmadd(a1, b1, s1);
      s2 = at::vec::fmadd(a2, b2, s2);
      s3 = at::vec::fmadd(a3, b3, s3);
    }
    for (; l < L; l += kStep) {
      IO::load(a + l, L - l, a0, a1);
      IO::load(b + l, L - l, b0, b1);
      s0 = at::vec::fmadd(a0, b0, s0);
      s1 = at::vec::fmadd(a1, b1, s1);
    }
  } else {
    for (; l + 2 * kStep <= L; l += 2 * kStep) {
      IO::load(a + l, kStep, a0, a1);
      IO::load(a + l + kStep, kStep, a2, a3);
      s0 += a0;
      s1 += a1;
      s2 += a2;
      s3 += a3;
    }
    for (; l < L; l += kStep) {
      IO::load(a + l, L - l, a0, a1);
      s0 += a0;
      s1 += a1;
    }
  }
  return horizontal_sum<acc_t>((s0 + s2) + (s1 + s3));
}

// One row: out[l] = in[l] * s + shift (shift = 0 in the forward).
template <typename scalar_t, typename acc_t>
void scale_shift_row(const scalar_t* __restrict__ in, acc_t s, acc_t shift, int64_t L,
                     scalar_t* __restrict__ out) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  const Vec scale(s), offset(shift);
  Vec a, b;
  for (int64_t l = 0; l < L; l += IO::kStep) {
    IO::load(in + l, L - l, a, b);
    IO::store(out + l, L - l, at::vec::fmadd(a, scale, offset), at::vec::fmadd(b, scale, offset));
  }
}

// Channels last: out[c] = sum_r a[r, c] (* b[r, c] when given) over `rows` rows of C.
// Blocks of 2 * kStep channels keep their sums in registers over all rows (an accumulator
// row in memory would stall on store-to-load forwarding); the order over r is fixed.
template <typename scalar_t, typename acc_t>
void sum_rows_channels_last(const scalar_t* a, const scalar_t* b, int64_t rows, int64_t C,
                            acc_t* out) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t kStep = IO::kStep;
  for (int64_t c0 = 0; c0 < C; c0 += 2 * kStep) {
    const int64_t n0 = std::min(kStep, C - c0);
    const int64_t n1 = std::clamp<int64_t>(C - c0 - kStep, 0, kStep);
    Vec s0(0), s1(0), s2(0), s3(0), a0, a1, a2, a3, b0, b1, b2, b3;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t offset = r * C + c0;
      IO::load(a + offset, n0, a0, a1);
      if (n1 > 0) IO::load(a + offset + kStep, n1, a2, a3);
      if (b) {
        IO::load(b + offset, n0, b0, b1);
        s0 = at::vec::fmadd(a0, b0, s0);
        s1 = at::vec::fmadd(a1, b1, s1);
        if (n1 > 0) {
          IO::load(b + offset + kStep, n1, b2, b3);
          s2 = at::vec::fmadd(a2, b2, s2);
          s3 = at::vec::fmadd(a3, b3, s3);
        }
      } else {
        s0 += a0;
        s1 += a1;
        if (n1 > 0) {
          s2 += a2;
          s3 += a3;
        }
      }
    }
    VecIO<acc_t>::store(out + c0, n0, s0, s1);
    if (n1 > 0) VecIO<acc_t>::store(out + c0 + kStep, n1, s2, s3);
  }
}

// Channels last: out[r, c] = in[r, c] * scale[c] + shift[c] (shift = 0 when null).
template <typename scalar_t, typename acc_t>
void scale_shift_rows_channels_last(const scalar_t* in, const acc_t* scale, const acc_t* shift,
                                    int64_t rows, int64_t C, scalar_t* out) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t kStep = IO::kStep;
  Vec a0, a1, s0, s1, t0(0), t1(0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < C; c += kStep) {
      const int64_t n = std::min(kStep, C - c);
      IO::load(in + r * C + c, n, a0, a1);
      VecIO<acc_t>::load(scale + c, n, s0, s1);
      if (shift) VecIO<acc_t>::load(shift + c, n, t0, t1);
      IO::store(out + r * C + c, n, at::vec::fmadd(a0, s0, t0), at::vec::fmadd(a1, s1, t1));
    }
  }
}

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
  // Rows [q0, q1) as a pointer into stats when all are computed, else nullptr.
  const acc_t* span(int64_t q0, int64_t q1) const {
    return (q0 >= begin && q1 <= computed) ? stats + q0 : nullptr;
  }
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
      for (const int64_t target = std::min(end, r1 + lookahead); row_stats.computed < target;
           ++row_stats.computed) {
        stats[row_stats.computed] = row_stat(row_stats.computed);
      }
      finish(r0, r1, row_stats);
    }
  });
}

// Channels c with the whole window [c - pad, c + pad] inside [0, C): no padding, no wrap.
inline bool window_inside(int64_t c, int64_t pad, int64_t C) {
  return c >= pad && c + pad < C;
}

// z[i] = sigmoid(z[i]) for i < n: vectorized (at::vec's exp_u20) for float, NaN kept.
template <typename acc_t>
void sigmoid_inplace(acc_t* z, int64_t n) {
  if constexpr (std::is_same_v<acc_t, float>) {
    using Vec = Vectorized<float>;
    const Vec one(1.0f), zero(0.0f);
    for (int64_t i = 0; i < n; i += Vec::size()) {
      const int64_t m = std::min<int64_t>(Vec::size(), n - i);
      const Vec v = Vec::loadu(z + i, m);
      const Vec s = one / (one + (zero - v).exp_u20());
      Vec::blendv(s, v, v != v).store(z + i, m);  // exp_u20 loses NaN: put it back
    }
  } else {
    for (int64_t i = 0; i < n; ++i) z[i] = sigmoid(z[i]);
  }
}

// Channels last work items: each sample's L rows cut into chunks of about kGrainElements
// elements. The cut depends only on (L, C), so the per-chunk partial sums, added in chunk
// order, give the same bits for any thread count.
struct RowChunks {
  int64_t rows;    // rows of C per chunk (the last one may be shorter)
  int64_t chunks;  // chunks per sample

  RowChunks(int64_t L, int64_t C) : rows(grain_rows(C)), chunks((L + rows - 1) / rows) {}
  int64_t first_row(int64_t chunk) const { return chunk * rows; }
  int64_t rows_in(int64_t chunk, int64_t L) const { return std::min(rows, L - chunk * rows); }
};

// Samples per group in channels last: the group's input (x, or grad_y and x) is about one
// MiB per thread, so a thread's chunks are still in its L2 when the second phase reads them.
int64_t samples_per_group(int64_t sample_bytes) {
  const int64_t bytes = int64_t(at::get_num_threads()) << 20;
  return std::max<int64_t>(1, bytes / std::max<int64_t>(1, sample_bytes));
}

// Both channels-last kernels, per group of samples: phase 1 sums a (times b) over each chunk
// into `partial`; sums[n, c] = scale * (the chunk sums added in chunk order); `between(begin,
// end)` then works on the (n, c) range [begin, end) of the group (gates, shifts); phase 2 runs
// `finish_chunk(n, row0, rows)` over the same chunks with the same thread partition.
template <typename scalar_t, typename acc_t, typename Between, typename FinishChunk>
void channels_last_two_phase(const scalar_t* a, const scalar_t* b, int64_t N, int64_t C, int64_t L,
                             acc_t scale, acc_t* sums, const at::TensorOptions& acc_options,
                             const Between& between, const FinishChunk& finish_chunk) {
  const RowChunks cut(L, C);
  const int64_t input_bytes = C * L * int64_t(sizeof(scalar_t)) * (b ? 2 : 1);
  const int64_t group = std::min(N, samples_per_group(input_bytes));
  at::Tensor partial_t = at::empty({group * cut.chunks, C}, acc_options);
  acc_t* partial = partial_t.mutable_data_ptr<acc_t>();
  for (int64_t n0 = 0; n0 < N; n0 += group) {
    const int64_t samples = std::min(group, N - n0);
    const int64_t items = samples * cut.chunks;
    at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t n = n0 + item / cut.chunks, chunk = item % cut.chunks;
        const int64_t offset = (n * L + cut.first_row(chunk)) * C;
        sum_rows_channels_last<scalar_t, acc_t>(a + offset, b ? b + offset : nullptr,
                                                cut.rows_in(chunk, L), C, partial + item * C);
      }
    });
    at::parallel_for(0, samples * C, grain_rows(cut.chunks), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const acc_t* column = partial + (i / C) * cut.chunks * C + i % C;
        acc_t sum = column[0];
        for (int64_t chunk = 1; chunk < cut.chunks; ++chunk) sum += column[chunk * C];
        sums[n0 * C + i] = sum * scale;
      }
    });
    between(n0 * C, (n0 + samples) * C);
    at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t chunk = item % cut.chunks;
        finish_chunk(n0 + item / cut.chunks, cut.first_row(chunk), cut.rows_in(chunk, L));
      }
    });
  }
}

template <typename scalar_t>
void forward_typed(const ForwardProblem& p) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = p.N, C = p.C, L = p.L, k = p.k;
  const scalar_t* x = p.x.const_data_ptr<scalar_t>();
  scalar_t* y = p.y.mutable_data_ptr<scalar_t>();
  const acc_t* w = p.weight.const_data_ptr<acc_t>();
  acc_t* pooled = p.pooled.mutable_data_ptr<acc_t>();
  acc_t* gate = p.gate.mutable_data_ptr<acc_t>();
  const acc_t inv_L = acc_t(1) / acc_t(L);
  const int64_t pad = (k - 1) / 2;

  if (p.layout == Layout::ChannelsFirst) {
    const auto mean_of_row = [&](int64_t q) {
      return row_sum<scalar_t>(x + q * L, nullptr, L) * inv_L;
    };
    pipeline_rows<acc_t>(
        N * C, L, sizeof(scalar_t), pad, pooled, mean_of_row,
        [&](int64_t r0, int64_t r1, const auto& pooled_at) {
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t n = r / C, c = r % C;
            const acc_t* window =
                window_inside(c, pad, C) ? pooled_at.span(r - pad, r + pad + 1) : nullptr;
            if (window) {  // the common case: k taps from consecutive rows
              acc_t z = acc_t(0);
              for (int64_t j = 0; j < k; ++j) z += w[j] * window[j];
              gate[r] = z;
            } else {
              const auto sample_at = [&](int64_t i) { return pooled_at(n * C + i); };
              gate[r] = channel_conv_at(sample_at, w, k, c, C, p.mode);
            }
          }
          sigmoid_inplace(gate + r0, r1 - r0);
          for (int64_t r = r0; r < r1; ++r) {
            scale_shift_row(x + r * L, gate[r], acc_t(0), L, y + r * L);
          }
        });
    return;
  }
  channels_last_two_phase<scalar_t, acc_t>(
      x, nullptr, N, C, L, inv_L, pooled, p.pooled.options(),
      [&](int64_t begin, int64_t end) {
        at::parallel_for(begin, end, grain_rows(k), [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            gate[r] = channel_conv(pooled + (r / C) * C, w, k, r % C, C, p.mode);
          }
          sigmoid_inplace(gate + r0, r1 - r0);
        });
      },
      [&](int64_t n, int64_t row0, int64_t rows) {
        const int64_t offset = (n * L + row0) * C;
        scale_shift_rows_channels_last<scalar_t, acc_t>(x + offset, gate + n * C, nullptr, rows, C,
                                                        y + offset);
      });
}

// Per-sample shares of dw[j] = sum_c dz[n, c] p[n, c + j - pad], one sample per thread;
// then summed over samples in order, so the result does not depend on the thread count.
template <typename acc_t>
void weight_grad(const acc_t* dz, const acc_t* pooled, int64_t N, int64_t C, int64_t k,
                 PaddingMode mode, acc_t* partial, acc_t* grad_w) {
  at::parallel_for(0, N, grain_rows(C * k), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t j = 0; j < k; ++j) {
        acc_t sum = acc_t(0);
        for (int64_t c = 0; c < C; ++c) {
          sum += weight_grad_term(dz + n * C, pooled + n * C, j, k, c, C, mode);
        }
        partial[n * k + j] = sum;
      }
    }
  });
  for (int64_t j = 0; j < k; ++j) {
    acc_t sum = acc_t(0);
    for (int64_t n = 0; n < N; ++n) sum += partial[n * k + j];
    grad_w[j] = sum;
  }
}

template <typename scalar_t>
void backward_typed(const BackwardProblem& p) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = p.N, C = p.C, L = p.L, k = p.k;
  const scalar_t* g = p.grad_y.const_data_ptr<scalar_t>();
  const scalar_t* x = p.x.const_data_ptr<scalar_t>();
  scalar_t* grad_x = p.grad_x.mutable_data_ptr<scalar_t>();
  const acc_t* w = p.weight.const_data_ptr<acc_t>();
  const acc_t* pooled = p.pooled.const_data_ptr<acc_t>();
  const acc_t* gate = p.gate.const_data_ptr<acc_t>();
  const acc_t inv_L = acc_t(1) / acc_t(L);
  const int64_t pad = (k - 1) / 2;

  // (N, C) scratch: t = sum_l g x, dz, and (channels last) the shift dp / L.
  const auto stats = p.pooled.options();
  at::Tensor t_t = at::empty({N, C}, stats), dz_t = at::empty({N, C}, stats);
  at::Tensor partial_t = at::empty({N, k}, stats);  // per-sample dw
  acc_t* t = t_t.mutable_data_ptr<acc_t>();
  acc_t* dz = dz_t.mutable_data_ptr<acc_t>();

  if (p.layout == Layout::ChannelsFirst) {
    const auto t_of_row = [&](int64_t q) { return row_sum<scalar_t>(g + q * L, x + q * L, L); };
    pipeline_rows<acc_t>(
        N * C, L, sizeof(scalar_t), pad, t, t_of_row,
        [&](int64_t r0, int64_t r1, const auto& t_at) {
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t n = r / C, c = r % C;
            dz[r] = gate_input_grad(t_at(r), gate[r]);
            const acc_t* window =
                window_inside(c, pad, C) ? t_at.span(r - pad, r + pad + 1) : nullptr;
            acc_t dp = acc_t(0);
            if (window) {  // the common case: dp = sum_j w[j] dz[c + pad - j] from consecutive rows
              for (int64_t j = 0; j < k; ++j) {
                const int64_t q = r + pad - j;
                dp += w[j] * gate_input_grad(window[pad - j + pad], gate[q]);
              }
            } else {
              const auto dz_at = [&](int64_t i) {
                return gate_input_grad(t_at(n * C + i), gate[n * C + i]);
              };
              dp = channel_conv_transposed_at(dz_at, w, k, c, C, p.mode);
            }
            scale_shift_row(g + r * L, gate[r], dp * inv_L, L, grad_x + r * L);
          }
        });
  } else {
    at::Tensor shift_t = at::empty({N, C}, stats);
    acc_t* shift = shift_t.mutable_data_ptr<acc_t>();
    channels_last_two_phase<scalar_t, acc_t>(
        g, x, N, C, L, acc_t(1), t, stats,
        [&](int64_t begin, int64_t end) {
          at::parallel_for(begin, end, grain_rows(k), [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) dz[r] = gate_input_grad(t[r], gate[r]);
          });
          at::parallel_for(begin, end, grain_rows(k), [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
              shift[r] = channel_conv_transposed(dz + (r / C) * C, w, k, r % C, C, p.mode) * inv_L;
            }
          });
        },
        [&](int64_t n, int64_t row0, int64_t rows) {
          const int64_t offset = (n * L + row0) * C;
          scale_shift_rows_channels_last<scalar_t, acc_t>(g + offset, gate + n * C, shift + n * C,
                                                          rows, C, grad_x + offset);
        });
  }
  weight_grad(dz, pooled, N, C, k, p.mode, partial_t.mutable_data_ptr<acc_t>(),
              p.grad_weight.mutable_data_ptr<acc_t>());
}

}  // namespace

void forward(const ForwardProblem& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "eca_forward_cpu",
                                  [&] { forward_typed<scalar_t>(p); });
}

void backward(const BackwardProblem& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "eca_backward_cpu",
                                  [&] { backward_typed<scalar_t>(p); });
}

}  // namespace eca_cuda::cpu::CPU_CAPABILITY
