// CPU kernels for eca_forward / eca_backward. Each (N, C, L) tensor is read or written by
// one parallel loop at a time and no (N, C, L) temporary is made; per-channel math comes
// from eca_math.h. Every output element is produced by one thread in a fixed order, so
// results do not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <array>

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

// Sum of a[0..L) (* b[0..L)) in kLanes independent accumulators, combined in a fixed order:
// breaks the serial add chain so the compiler vectorizes it, and stays deterministic.
template <typename scalar_t, typename acc_t>
acc_t row_sum(const scalar_t* a, const scalar_t* b, int64_t L) {
  constexpr int64_t kLanes = 16;
  std::array<acc_t, kLanes> lanes{};
  const int64_t body = L - L % kLanes;
  for (int64_t l = 0; l < body; l += kLanes) {
    for (int64_t i = 0; i < kLanes; ++i) {
      lanes[i] += b ? acc_t(a[l + i]) * acc_t(b[l + i]) : acc_t(a[l + i]);
    }
  }
  acc_t sum = acc_t(0);
  for (int64_t l = body; l < L; ++l) sum += b ? acc_t(a[l]) * acc_t(b[l]) : acc_t(a[l]);
  for (int64_t i = 0; i < kLanes; ++i) sum += lanes[i];
  return sum;
}

// out[n, c] = scale * sum_l a[n, c, l] (* b[n, c, l] when b is given), accumulated in acc_t.
template <typename scalar_t, typename acc_t>
void reduce_channels(const scalar_t* a, const scalar_t* b, int64_t N, int64_t C, int64_t L,
                     Layout layout, acc_t scale, acc_t* out) {
  if (layout == Layout::ChannelsFirst) {
    at::parallel_for(0, N * C, grain_rows(L), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        out[r] = (b ? row_sum<scalar_t, acc_t>(a + r * L, b + r * L, L)
                    : row_sum<scalar_t, acc_t>(a + r * L, nullptr, L)) *
                 scale;
      }
    });
    return;
  }
  // Channels last: rows of C contiguous; a work item sums one block of channels of one sample.
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
          for (int64_t i = 0; i < width; ++i) sum[i] += acc_t(a[offset + i]) * acc_t(b[offset + i]);
        } else {
          for (int64_t i = 0; i < width; ++i) sum[i] += acc_t(a[offset + i]);
        }
      }
      for (int64_t i = 0; i < width; ++i) out[n * C + c0 + i] = sum[i] * scale;
    }
  });
}

// out[n, c, l] = in[n, c, l] * scale[n, c] (+ shift[n, c] when given).
template <typename scalar_t, typename acc_t>
void scale_shift(const scalar_t* in, const acc_t* scale, const acc_t* shift, int64_t N, int64_t C,
                 int64_t L, Layout layout, scalar_t* out) {
  if (layout == Layout::ChannelsFirst) {
    at::parallel_for(0, N * C, grain_rows(L), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const acc_t s = scale[r];
        const acc_t b = shift ? shift[r] : acc_t(0);
        for (int64_t l = 0; l < L; ++l) out[r * L + l] = scalar_t(acc_t(in[r * L + l]) * s + b);
      }
    });
    return;
  }
  at::parallel_for(0, N * L, grain_rows(C), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / L;
      const acc_t* s = scale + n * C;
      const acc_t* b = shift ? shift + n * C : nullptr;
      for (int64_t c = 0; c < C; ++c) {
        const acc_t v = acc_t(in[row * C + c]) * s[c];
        out[row * C + c] = scalar_t(b ? v + b[c] : v);
      }
    }
  });
}

template <typename scalar_t>
void forward_typed(const ForwardProblem& p) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = p.N, C = p.C, L = p.L;
  const scalar_t* x = p.x.const_data_ptr<scalar_t>();
  const acc_t* w = p.weight.const_data_ptr<acc_t>();
  acc_t* pooled = p.pooled.mutable_data_ptr<acc_t>();
  acc_t* gate = p.gate.mutable_data_ptr<acc_t>();

  reduce_channels<scalar_t, acc_t>(x, nullptr, N, C, L, p.layout, acc_t(1) / acc_t(L), pooled);
  at::parallel_for(0, N * C, grain_rows(p.k), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / C, c = r % C;
      gate[r] = sigmoid(channel_conv(pooled + n * C, w, p.k, c, C, p.mode));
    }
  });
  if (L > 0) {
    scale_shift<scalar_t, acc_t>(x, gate, nullptr, N, C, L, p.layout,
                                 p.y.mutable_data_ptr<scalar_t>());
  }
}

template <typename scalar_t>
void backward_typed(const BackwardProblem& p) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = p.N, C = p.C, L = p.L, k = p.k;
  const scalar_t* g = p.grad_y.const_data_ptr<scalar_t>();
  const scalar_t* x = p.x.const_data_ptr<scalar_t>();
  const acc_t* w = p.weight.const_data_ptr<acc_t>();
  const acc_t* pooled = p.pooled.const_data_ptr<acc_t>();
  const acc_t* gate = p.gate.const_data_ptr<acc_t>();

  // (N, C) scratch: t then dz in place, and the per-channel shift dp / L added to g * s.
  at::Tensor dz_t = at::empty({N, C}, p.pooled.options());
  at::Tensor shift_t = at::empty({N, C}, p.pooled.options());
  at::Tensor partial_t = at::empty({N, k}, p.pooled.options());  // per-sample dw
  acc_t* dz = dz_t.mutable_data_ptr<acc_t>();
  acc_t* shift = shift_t.mutable_data_ptr<acc_t>();
  acc_t* partial = partial_t.mutable_data_ptr<acc_t>();

  reduce_channels<scalar_t, acc_t>(g, x, N, C, L, p.layout, acc_t(1), dz);  // dz holds t
  // Samples are independent: each gets its dz, shift and share of dw on one thread.
  at::parallel_for(0, N, grain_rows(C * k), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      acc_t* dz_n = dz + n * C;
      for (int64_t c = 0; c < C; ++c) dz_n[c] = gate_input_grad(dz_n[c], gate[n * C + c]);
      for (int64_t c = 0; c < C; ++c) {
        shift[n * C + c] = channel_conv_transposed(dz_n, w, k, c, C, p.mode) / acc_t(L);
      }
      for (int64_t j = 0; j < k; ++j) {
        acc_t sum = acc_t(0);
        for (int64_t c = 0; c < C; ++c) {
          sum += weight_grad_term(dz_n, pooled + n * C, j, k, c, C, p.mode);
        }
        partial[n * k + j] = sum;
      }
    }
  });
  if (L > 0) {
    scale_shift<scalar_t, acc_t>(g, gate, shift, N, C, L, p.layout,
                                 p.grad_x.mutable_data_ptr<scalar_t>());
  }
  // Per-sample partials summed in sample order: bitwise reproducible for any thread count.
  acc_t* grad_w = p.grad_weight.mutable_data_ptr<acc_t>();
  for (int64_t j = 0; j < k; ++j) {
    acc_t sum = acc_t(0);
    for (int64_t n = 0; n < N; ++n) sum += partial[n * k + j];
    grad_w[j] = sum;
  }
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
