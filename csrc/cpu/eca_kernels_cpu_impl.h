// The CPU kernels of eca_forward / eca_backward, written once with at::vec::Vectorized and
// compiled once per instruction set: eca_kernels_cpu_{default,avx2,avx512,avx512_bf16}.cpp
// define CPU_CAPABILITY and include this file, as ATen builds its own kernels per capability;
// eca_kernels_cpu.cpp picks one at run time.
//
// No (N, C, L) temporary is made; per-channel math comes from eca_math.h. Every spatial sum
// follows one canonical order (canonical_sum.h) that depends only on L and the instruction set,
// so results are bitwise identical for any thread count and for contiguous and channels_last
// inputs (they may differ between instruction sets). This file holds the op; its parts:
//   loops.h           the parallel grain, run-time flags compiled out, full and partial steps
//   vec_io.h          loads and stores of every dtype as vectors of its accumulation type
//   canonical_sum.h   the order of every spatial sum, for rows and for columns of channels
//   rescale.h         out = in * scale + shift per channel, both layouts
//   channel_steps.h   the (N, C) steps: channel conv, sigmoid, gate and weight gradients
//   channels_first.h  the contiguous engine: a row pipeline per thread
//   channels_last.h   the channels-last engine: sum, then rescale, per sample or group
// docs/cpu-kernels.md describes them, with what each variant measured.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../eca_host.h"
#include "eca_kernels_cpu.h"

// The order matters: the target pragma after every header above, at::vec's after it.
// clang-format off
#include "eca_cpu_target.h"
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

// The parts, each after those it uses.
#include "loops.h"
#include "vec_io.h"
#include "canonical_sum.h"
#include "rescale.h"
#include "channel_steps.h"
#include "channels_first.h"
#include "channels_last.h"
// clang-format on

namespace eca_cuda::cpu::CPU_CAPABILITY {
namespace {

// f(tail) with the Tail type of the problem's residual and activation: chosen once per call
// of f, so that each rescale loop is compiled for its tail.
template <typename scalar_t, typename F>
void with_tail(const ForwardProblem& p, const F& f) {
  const scalar_t* residual = p.residual.defined() ? p.residual.const_data_ptr<scalar_t>() : nullptr;
  with_flag(residual != nullptr, [&](auto has_residual) {
    with_flag(p.activation == Activation::ReLU, [&](auto relu) {
      f(Tail<scalar_t, decltype(has_residual)::value, decltype(relu)::value>{residual});
    });
  });
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
  // The tail's factors: the rescale multiplies by m = gate * scale * gain when given.
  acc_t* multiplier = p.multiplier.defined() ? p.multiplier.mutable_data_ptr<acc_t>() : nullptr;
  const acc_t factor =
      acc_t(p.scale) * (p.gain.defined() ? *p.gain.const_data_ptr<acc_t>() : acc_t(1));
  const acc_t* rescale_by = multiplier ? multiplier : gate;
  const auto gates = [&](int64_t r0, int64_t r1, const auto& pooled_at) {
    channel_conv_rows(pooled_at, w, k, /*transposed=*/false, C, p.mode, r0, r1, gate);
    sigmoid_inplace(gate + r0, r1 - r0);
    for (int64_t r = r0; multiplier && r < r1; ++r) multiplier[r] = gate[r] * factor;
  };

  if (p.layout == Layout::ChannelsFirst) {
    const RowSum<scalar_t, acc_t> mean_of_row{x, nullptr, L, inv_L};
    pipeline_rows<acc_t>(N * C, L, sizeof(scalar_t), pad, pooled, mean_of_row,
                         [&](int64_t r0, int64_t r1, const auto& pooled_at) {
                           gates(r0, r1, pooled_at);
                           with_tail<scalar_t>(p, [&](const auto& tail) {
                             scale_shift_rows<scalar_t, acc_t>(x + r0 * L, rescale_by + r0, nullptr,
                                                               r1 - r0, L, y + r0 * L,
                                                               tail.at(r0 * L));
                           });
                         });
    return;
  }
  channels_last_two_phase<scalar_t, acc_t>(
      x, nullptr, N, C, L, inv_L, pooled, p.pooled.options(),
      [&](int64_t begin, int64_t end) {
        at::parallel_for(begin, end, grain_rows(k),
                         [&](int64_t r0, int64_t r1) { gates(r0, r1, KnownStats<acc_t>{pooled}); });
      },
      [&](int64_t n, int64_t row0, int64_t rows) {
        const int64_t offset = (n * L + row0) * C;
        with_tail<scalar_t>(p, [&](const auto& tail) {
          scale_shift_rows_channels_last<scalar_t, acc_t>(x + offset, rescale_by + n * C, nullptr,
                                                          rows, C, y + offset, tail.at(offset));
        });
      });
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

  // Scratch, one allocation (each costs about a microsecond): (N, C) t = sum_l g x, dz, and
  // (channels last) the shift dp / L; (N, k) per-sample dw.
  const auto stats = p.pooled.options();
  const int64_t NC = N * C;
  at::Tensor scratch_t = at::empty({3 * NC + N * k}, stats);
  acc_t* t = scratch_t.mutable_data_ptr<acc_t>();
  acc_t* dz = t + NC;
  acc_t* shift = dz + NC;
  acc_t* partial = shift + NC;

  if (p.layout == Layout::ChannelsFirst) {
    const RowSum<scalar_t, acc_t> t_of_row{g, x, L, acc_t(1)};
    pipeline_rows<acc_t>(
        N * C, L, sizeof(scalar_t), pad, t, t_of_row,
        [&](int64_t r0, int64_t r1, const auto& t_at) {
          // Runs of interior channels go by blocks: dz of the block and its halo, then dp.
          const int64_t block = std::min<int64_t>(r1 - r0, 256);
          std::vector<acc_t> dz_halo(block + 2 * pad), dp(block);
          RowIndex at(r0, C);
          for (int64_t r = r0; r < r1;) {
            const int64_t run = ready_run(t_at, r, at.c, pad, C, std::min(r1 - r, block));
            if (run) {  // dp[c] = sum_j w[j] dz[c + pad - j]: the taps are consecutive rows
              gate_input_grads(t_at.data() + r - pad, gate + r - pad, run + 2 * pad,
                               dz_halo.data());
              conv_taps(dz_halo.data(), w, k, /*transposed=*/true, run, dp.data());
              std::copy_n(dz_halo.data() + pad, run, dz + r);
              for (int64_t i = 0; i < run; ++i) dp[i] *= inv_L;
              scale_shift_rows(g + r * L, gate + r, dp.data(), run, L, grad_x + r * L);
              r += run;
              at.advance(run);
              continue;
            }
            const int64_t n = at.n;
            dz[r] = gate_input_grad(t_at(r), gate[r]);
            const auto dz_at = [&](int64_t i) {
              return gate_input_grad(t_at(n * C + i), gate[n * C + i]);
            };
            const acc_t dp_r = channel_conv_transposed_at(dz_at, w, k, at.c, C, p.mode);
            scale_shift_row(g + r * L, gate[r], dp_r * inv_L, L, grad_x + r * L);
            ++r;
            at.next();
          }
        });
  } else {
    channels_last_two_phase<scalar_t, acc_t>(
        g, x, N, C, L, acc_t(1), t, stats,
        [&](int64_t begin, int64_t end) {
          at::parallel_for(begin, end, grain_rows(k), [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) dz[r] = gate_input_grad(t[r], gate[r]);
          });
          at::parallel_for(begin, end, grain_rows(k), [&](int64_t r0, int64_t r1) {
            channel_conv_rows(KnownStats<acc_t>{dz}, w, k, /*transposed=*/true, C, p.mode, r0, r1,
                              shift);
            for (int64_t r = r0; r < r1; ++r) shift[r] *= inv_L;
          });
        },
        [&](int64_t n, int64_t row0, int64_t rows) {
          const int64_t offset = (n * L + row0) * C;
          scale_shift_rows_channels_last<scalar_t, acc_t>(g + offset, gate + n * C, shift + n * C,
                                                          rows, C, grad_x + offset);
        });
  }
  weight_grad(dz, pooled, N, C, k, p.mode, partial, p.grad_weight.mutable_data_ptr<acc_t>());
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
