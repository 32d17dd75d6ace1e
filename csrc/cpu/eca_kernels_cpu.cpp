// CPU kernels for eca_forward / eca_backward. No (N, C, L) temporary is made; per-channel
// math comes from eca_math.h. Every sum is computed by one thread in a fixed order that does
// not depend on the thread count, so results are bitwise identical for any thread count.
//
// Contiguous (N, C, L): each thread walks its own range of (n, c) rows, computing row sums a
// few rows ahead of the rows it finishes (gate, rescale), so a row is re-read from the core's
// L2 rather than from memory. Channels last (N, L, C): samples in groups small enough to stay
// in cache between the channel sums and the rescale.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "../eca_host.h"

namespace eca_cuda {
namespace {

// Elements per parallel work item: large enough to amortise scheduling.
constexpr int64_t kGrainElements = 32768;
// Channels per work item in channels_last reductions (accumulators stay in registers/L1).
constexpr int64_t kChannelBlock = 64;

int64_t grain_rows(int64_t row_length) {
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, row_length));
}

// Element loads and stores in the accumulation type. bfloat16 <-> float by bit operations
// (a shift, and round-to-nearest-even with NaN kept), which the compiler vectorizes; the
// c10 conversions it replaces stay scalar.
template <typename scalar_t>
inline at::opmath_type<scalar_t> load(const scalar_t* p) {
  return at::opmath_type<scalar_t>(*p);
}
template <>
inline float load(const c10::BFloat16* p) {
  const uint32_t bits = uint32_t(p->x) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}
template <typename scalar_t>
inline void store(scalar_t* p, at::opmath_type<scalar_t> value) {
  *p = scalar_t(value);
}
template <>
inline void store(c10::BFloat16* p, float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  p->x = uint16_t(value != value ? 0x7FC0u : rounded);  // value != value: NaN
}

// Sum of a[0..L) (times b[0..L) when given) in kLanes independent accumulators combined by
// a fixed pairwise tree: breaks the serial add chain so the compiler vectorizes it, and
// the order never depends on threads.
template <typename scalar_t, typename acc_t>
acc_t row_sum(const scalar_t* a, const scalar_t* b, int64_t L) {
  constexpr int64_t kLanes = 16;
  acc_t lanes[kLanes] = {};
  const int64_t body = L - L % kLanes;
  if (b) {
    for (int64_t l = 0; l < body; l += kLanes) {
      for (int64_t i = 0; i < kLanes; ++i) lanes[i] += load(a + l + i) * load(b + l + i);
    }
  } else {
    for (int64_t l = 0; l < body; l += kLanes) {
      for (int64_t i = 0; i < kLanes; ++i) lanes[i] += load(a + l + i);
    }
  }
  for (int64_t width = kLanes / 2; width > 0; width /= 2) {
    for (int64_t i = 0; i < width; ++i) lanes[i] += lanes[i + width];
  }
  acc_t sum = lanes[0];
  for (int64_t l = body; l < L; ++l) sum += b ? load(a + l) * load(b + l) : load(a + l);
  return sum;
}

// One row: out[l] = in[l] * s (forward), and out[l] = in[l] * s + shift (backward).
template <typename scalar_t, typename acc_t>
void scale_row(const scalar_t* __restrict__ in, acc_t s, int64_t L, scalar_t* __restrict__ out) {
  for (int64_t l = 0; l < L; ++l) store(out + l, load(in + l) * s);
}
template <typename scalar_t, typename acc_t>
void scale_shift_row(const scalar_t* __restrict__ in, acc_t s, acc_t shift, int64_t L,
                     scalar_t* __restrict__ out) {
  for (int64_t l = 0; l < L; ++l) store(out + l, load(in + l) * s + shift);
}

// out[n, c] = scale * sum_l a[n, l, c] (* b[n, l, c] when b is given) for (N, L, C) tensors:
// a work item sums one block of channels of one sample, in acc_t.
template <typename scalar_t, typename acc_t>
void reduce_channels_last(const scalar_t* a, const scalar_t* b, int64_t N, int64_t C, int64_t L,
                          acc_t scale, acc_t* out) {
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
  at::parallel_for(0, N * blocks, grain_rows(L * kChannelBlock), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / blocks;
      const int64_t c0 = (item % blocks) * kChannelBlock;
      const int64_t width = std::min(kChannelBlock, C - c0);
      std::array<acc_t, kChannelBlock> sum{};
      for (int64_t l = 0; l < L; ++l) {
        const int64_t offset = (n * L + l) * C + c0;
        if (b) {
          for (int64_t i = 0; i < width; ++i) sum[i] += load(a + offset + i) * load(b + offset + i);
        } else {
          for (int64_t i = 0; i < width; ++i) sum[i] += load(a + offset + i);
        }
      }
      for (int64_t i = 0; i < width; ++i) out[n * C + c0 + i] = sum[i] * scale;
    }
  });
}

// out[n, l, c] = in[n, l, c] * scale[n, c] (+ shift[n, c] when given) for (N, L, C) tensors.
template <typename scalar_t, typename acc_t>
void scale_shift_channels_last(const scalar_t* in, const acc_t* scale, const acc_t* shift,
                               int64_t N, int64_t C, int64_t L, scalar_t* out) {
  at::parallel_for(0, N * L, grain_rows(C), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / L;
      const acc_t* s = scale + n * C;
      const acc_t* b = shift ? shift + n * C : nullptr;
      for (int64_t c = 0; c < C; ++c) {
        const acc_t v = load(in + row * C + c) * s[c];
        store(out + row * C + c, b ? v + b[c] : v);
      }
    }
  });
}

// Rows finished per step of pipeline_rows, by bytes: with the look-ahead they stay in L2.
constexpr int64_t kChunkBytes = int64_t(256) << 10;

// Runs `finish(r, stat_at)` for every row r of an (R, L) contiguous tensor, after storing
// stats[q] = row_stat(q) for rows up to `lookahead` rows ahead of r. Each thread takes one
// contiguous range of rows; `stat_at(q)` returns stats[q] when this thread has computed it,
// else recomputes row_stat(q) (halo rows of a neighbouring range, or far ahead when the
// channel window wraps): the same computation, so the same bits.
template <typename acc_t, typename RowStat, typename Finish>
void pipeline_rows(int64_t R, int64_t L, int64_t element_size, int64_t lookahead, acc_t* stats,
                   const RowStat& row_stat, const Finish& finish) {
  const int64_t chunk = std::max<int64_t>(1, kChunkBytes / std::max<int64_t>(1, L * element_size));
  at::parallel_for(0, R, grain_rows(L), [&](int64_t begin, int64_t end) {
    int64_t computed = begin;
    const auto stat_at = [&](int64_t q) {
      return (q >= begin && q < computed) ? stats[q] : row_stat(q);
    };
    for (int64_t r0 = begin; r0 < end; r0 += chunk) {
      const int64_t r1 = std::min(end, r0 + chunk);
      for (const int64_t target = std::min(end, r1 + lookahead); computed < target; ++computed) {
        stats[computed] = row_stat(computed);
      }
      for (int64_t r = r0; r < r1; ++r) finish(r, stat_at);
    }
  });
}

// Channels last: samples in groups of at most kGroupBytes of x (grad_y backward), so that a
// group is still in cache when its second phase reads it again. This pays where the
// last-level cache is faster than DRAM; on a machine where it is not, only the core's own
// L2 helps (see the contiguous pipeline).
constexpr int64_t kGroupBytes = int64_t(4) << 20;

int64_t samples_per_group(int64_t sample_elements, int64_t element_size) {
  return std::max<int64_t>(1, kGroupBytes / std::max<int64_t>(1, sample_elements * element_size));
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

  if (p.layout == Layout::ChannelsFirst) {
    const auto mean_of_row = [&](int64_t q) {
      return row_sum<scalar_t, acc_t>(x + q * L, nullptr, L) * inv_L;
    };
    pipeline_rows<acc_t>(N * C, L, sizeof(scalar_t), (k - 1) / 2, pooled, mean_of_row,
                         [&](int64_t r, const auto& pooled_at) {
                           const int64_t n = r / C;
                           const auto sample_at = [&](int64_t c) { return pooled_at(n * C + c); };
                           const acc_t s =
                               sigmoid(channel_conv_at(sample_at, w, k, r % C, C, p.mode));
                           gate[r] = s;
                           scale_row(x + r * L, s, L, y + r * L);
                         });
    return;
  }
  const int64_t group = samples_per_group(C * L, sizeof(scalar_t));
  for (int64_t n0 = 0; n0 < N; n0 += group) {
    const int64_t samples = std::min(group, N - n0);
    const int64_t offset = n0 * C * L;  // first element of the group
    reduce_channels_last<scalar_t, acc_t>(x + offset, nullptr, samples, C, L, inv_L,
                                          pooled + n0 * C);
    at::parallel_for(n0 * C, (n0 + samples) * C, grain_rows(k), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        gate[r] = sigmoid(channel_conv(pooled + (r / C) * C, w, k, r % C, C, p.mode));
      }
    });
    scale_shift_channels_last<scalar_t, acc_t>(x + offset, gate + n0 * C, nullptr, samples, C, L,
                                               y + offset);
  }
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

  // (N, C) scratch: t = sum_l g x, dz, and (channels last) the shift dp / L.
  const auto stats = p.pooled.options();
  at::Tensor t_t = at::empty({N, C}, stats), dz_t = at::empty({N, C}, stats);
  at::Tensor partial_t = at::empty({N, k}, stats);  // per-sample dw
  acc_t* t = t_t.mutable_data_ptr<acc_t>();
  acc_t* dz = dz_t.mutable_data_ptr<acc_t>();

  if (p.layout == Layout::ChannelsFirst) {
    const auto t_of_row = [&](int64_t q) {
      return row_sum<scalar_t, acc_t>(g + q * L, x + q * L, L);
    };
    pipeline_rows<acc_t>(
        N * C, L, sizeof(scalar_t), (k - 1) / 2, t, t_of_row, [&](int64_t r, const auto& t_at) {
          const int64_t n = r / C;
          const auto dz_at = [&](int64_t c) {
            return gate_input_grad(t_at(n * C + c), gate[n * C + c]);
          };
          dz[r] = gate_input_grad(t_at(r), gate[r]);
          const acc_t shift = channel_conv_transposed_at(dz_at, w, k, r % C, C, p.mode) * inv_L;
          const acc_t s = gate[r];
          scale_shift_row(g + r * L, s, shift, L, grad_x + r * L);
        });
  } else {
    at::Tensor shift_t = at::empty({N, C}, stats);
    acc_t* shift = shift_t.mutable_data_ptr<acc_t>();
    const int64_t group = samples_per_group(C * L, sizeof(scalar_t));
    for (int64_t n0 = 0; n0 < N; n0 += group) {
      const int64_t samples = std::min(group, N - n0);
      const int64_t offset = n0 * C * L;
      reduce_channels_last<scalar_t, acc_t>(g + offset, x + offset, samples, C, L, acc_t(1),
                                            t + n0 * C);
      at::parallel_for(n0 * C, (n0 + samples) * C, grain_rows(k), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) dz[r] = gate_input_grad(t[r], gate[r]);
      });
      at::parallel_for(n0 * C, (n0 + samples) * C, grain_rows(k), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          shift[r] = channel_conv_transposed(dz + (r / C) * C, w, k, r % C, C, p.mode) * inv_L;
        }
      });
      scale_shift_channels_last<scalar_t, acc_t>(g + offset, gate + n0 * C, shift + n0 * C, samples,
                                                 C, L, grad_x + offset);
    }
  }
  weight_grad(dz, pooled, N, C, k, p.mode, partial_t.mutable_data_ptr<acc_t>(),
              p.grad_weight.mutable_data_ptr<acc_t>());
}

void forward_kernel_cpu(const ForwardProblem& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "eca_forward_cpu",
                                  [&] { forward_typed<scalar_t>(p); });
}

void backward_kernel_cpu(const BackwardProblem& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "eca_backward_cpu",
                                  [&] { backward_typed<scalar_t>(p); });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> eca_forward_cpu(const at::Tensor& x,
                                                               const at::Tensor& weight,
                                                               c10::string_view padding_mode) {
  return run_forward(x, weight, padding_mode, &forward_kernel_cpu);
}

std::tuple<at::Tensor, at::Tensor> eca_backward_cpu(const at::Tensor& grad_y, const at::Tensor& x,
                                                    const at::Tensor& weight,
                                                    const at::Tensor& pooled,
                                                    const at::Tensor& gate,
                                                    c10::string_view padding_mode) {
  return run_backward(grad_y, x, weight, pooled, gate, padding_mode, &backward_kernel_cpu);
}

}  // namespace

TORCH_LIBRARY_IMPL(eca_cuda, CPU, m) {
  m.impl("eca_forward", &eca_forward_cpu);
  m.impl("eca_backward", &eca_backward_cpu);
}

}  // namespace eca_cuda
