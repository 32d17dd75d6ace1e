// Per-channel ECA math shared by the CPU and CUDA kernels, so that the CPU tests
// exercise the exact code the GPU runs. Notation follows docs/design.md:
//   p[c] pooled mean, z[c] = sum_j w[j] p[c + j - pad], s[c] = sigmoid(z[c]),
//   t[c] = sum_l g x, dz[c] = t s (1 - s), dp[c] = sum_j w[j] dz[c - j + pad].
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define ECA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define ECA_HOST_DEVICE inline
#endif

namespace eca_cuda {

// "zeros" is the paper's and the authors' padding; "circular" is timm's CecaModule.
enum class PaddingMode : int { Zeros = 0, Circular = 1 };

// The two dense layouts the kernels read natively. Any other strides cost one copy.
enum class Layout {
  ChannelsFirst,  // (N, C, L), L contiguous: torch.contiguous_format
  ChannelsLast,   // (N, L, C), C contiguous: channels_last / channels_last_3d
};

// The activation after the residual add of a fused block tail (eca_tail_forward):
// out = act(x * s * scale + residual). ReLU is the one a converted model's tail uses (timm's
// ResNet blocks, the authors' blocks); NormFreeBlock and inverted residuals have none.
enum class Activation : int { None = 0, ReLU = 1 };

template <typename acc_t>
ECA_HOST_DEVICE acc_t activate(acc_t v, Activation act) {
  return (act == Activation::ReLU && v < acc_t(0)) ? acc_t(0) : v;  // NaN stays NaN, as relu
}

// Channel read by tap offset `offset` (in [-pad, pad]) around channel `c`, or -1 when it
// falls in the zero padding. Circular wraps modulo C, also when k > C (several wraps).
ECA_HOST_DEVICE int64_t halo_channel(int64_t c, int64_t offset, int64_t C, PaddingMode mode) {
  int64_t src = c + offset;
  if (mode == PaddingMode::Circular) {
    src %= C;
    return src < 0 ? src + C : src;
  }
  return (src < 0 || src >= C) ? -1 : src;
}

// Reads element i of one (n, :) row of an (N, C) tensor.
template <typename acc_t>
struct RowReader {
  const acc_t* row;
  ECA_HOST_DEVICE acc_t operator()(int64_t i) const { return row[i]; }
};

// z[c]: PyTorch conv1d (cross-correlation, no flip) of one pooled row with k taps;
// `pooled_at(i)` gives the pooled value of channel i of the same sample.
template <typename acc_t, typename PooledAt>
ECA_HOST_DEVICE acc_t channel_conv_at(const PooledAt& pooled_at, const acc_t* weight, int64_t k,
                                      int64_t c, int64_t C, PaddingMode mode) {
  const int64_t pad = (k - 1) / 2;
  acc_t z = acc_t(0);
  for (int64_t j = 0; j < k; ++j) {
    const int64_t src = halo_channel(c, j - pad, C, mode);
    if (src >= 0) z += weight[j] * pooled_at(src);
  }
  return z;
}

template <typename acc_t>
ECA_HOST_DEVICE acc_t channel_conv(const acc_t* pooled_row, const acc_t* weight, int64_t k,
                                   int64_t c, int64_t C, PaddingMode mode) {
  return channel_conv_at(RowReader<acc_t>{pooled_row}, weight, k, c, C, mode);
}

template <typename acc_t>
ECA_HOST_DEVICE acc_t sigmoid(acc_t z) {
#if defined(__CUDA_ARCH__)
  return acc_t(1) / (acc_t(1) + exp(-z));  // CUDA's float/double overloads
#else
  return acc_t(1) / (acc_t(1) + std::exp(-z));
#endif
}

// ds/dz of the gate, written in terms of s so the backward needs only the saved gate.
template <typename acc_t>
ECA_HOST_DEVICE acc_t sigmoid_grad_from_output(acc_t s) {
  return s * (acc_t(1) - s);
}

// dz[c] = t[c] * s[c] * (1 - s[c]); t = sum_l g * x is dLoss/ds.
template <typename acc_t>
ECA_HOST_DEVICE acc_t gate_input_grad(acc_t t, acc_t s) {
  return t * sigmoid_grad_from_output(s);
}

// dp[c]: the transposed channel conv, dp[c] = sum_j w[j] dz[c - j + pad], with the
// same padding rule as the forward (each tap of each output channel read once);
// `dz_at(i)` gives dz of channel i of the same sample.
template <typename acc_t, typename DzAt>
ECA_HOST_DEVICE acc_t channel_conv_transposed_at(const DzAt& dz_at, const acc_t* weight, int64_t k,
                                                 int64_t c, int64_t C, PaddingMode mode) {
  const int64_t pad = (k - 1) / 2;
  acc_t dp = acc_t(0);
  for (int64_t j = 0; j < k; ++j) {
    const int64_t dst = halo_channel(c, pad - j, C, mode);
    if (dst >= 0) dp += weight[j] * dz_at(dst);
  }
  return dp;
}

template <typename acc_t>
ECA_HOST_DEVICE acc_t channel_conv_transposed(const acc_t* dz_row, const acc_t* weight, int64_t k,
                                              int64_t c, int64_t C, PaddingMode mode) {
  return channel_conv_transposed_at(RowReader<acc_t>{dz_row}, weight, k, c, C, mode);
}

// One (n, c) term of dw[j] = sum_n sum_c dz[n, c] * p[n, c + j - pad].
template <typename acc_t>
ECA_HOST_DEVICE acc_t weight_grad_term(const acc_t* dz_row, const acc_t* pooled_row, int64_t j,
                                       int64_t k, int64_t c, int64_t C, PaddingMode mode) {
  const int64_t src = halo_channel(c, j - (k - 1) / 2, C, mode);
  return src >= 0 ? dz_row[c] * pooled_row[src] : acc_t(0);
}

}  // namespace eca_cuda
