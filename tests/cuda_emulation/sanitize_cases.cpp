// The CUDA kernels' forward and backward (the multi-launch plans, or the single-pass tiles)
// over a set of cases through the emulation, as one program, for the sanitizer builds of
// tests/test_cuda_sanitized.py. Every buffer is an exact-size allocation starting as NaN. Exits 1
// when a launch breaks a rule of the execution model, an output is not finite (a word never
// written, or computed from poisoned shared memory), or the two layouts give different bits;
// AddressSanitizer and ThreadSanitizer stop it with their own reports.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <vector>

extern "C" {
int eca_emu_tail_forward(int dtype, const void* x, const void* weight, const void* residual,
                         const void* gain, void* y, void* pooled, void* gate, void* multiplier,
                         int64_t N, int64_t C, int64_t L, int64_t k, int circular,
                         int channels_last, int64_t max_blocks, int shuffle_seed, double scale,
                         int relu, int64_t tile_budget, int64_t sms);
int eca_emu_backward(int dtype, const void* grad_y, const void* x, const void* weight,
                     const void* pooled, const void* gate, const void* relu_out, void* grad_x,
                     void* grad_weight, void* grad_pre, int64_t N, int64_t C, int64_t L, int64_t k,
                     int circular, int channels_last, int64_t max_blocks, int shuffle_seed,
                     int64_t tile_budget, int64_t sms);
const char* eca_emu_error();
}

namespace {

template <typename T>
struct Buffer {  // n elements exactly, NaN until written
  std::unique_ptr<T[]> data;
  int64_t n;
  explicit Buffer(int64_t n_) : data(new T[n_]), n(n_) {
    for (int64_t i = 0; i < n; ++i) data[i] = T(std::numeric_limits<float>::quiet_NaN());
  }
};

// (N, C, L) values in the kernels' layout: as they are, or transposed to (N, L, C).
template <typename T>
Buffer<T> laid_out(const Buffer<T>& a, int64_t N, int64_t C, int64_t L, bool channels_last) {
  Buffer<T> b(a.n);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t l = 0; l < L; ++l) {
        const int64_t to = channels_last ? (n * L + l) * C + c : (n * C + c) * L + l;
        b.data[to] = a.data[(n * C + c) * L + l];
      }
  return b;
}

int failures = 0;

void fail(const char* what, const char* case_name) {
  std::fprintf(stderr, "FAIL %s: %s\n", case_name, what);
  ++failures;
}

template <typename T>
bool all_finite(const Buffer<T>& b) {
  for (int64_t i = 0; i < b.n; ++i)
    if (!std::isfinite(float(b.data[i]))) return false;
  return true;
}

template <typename T>
bool same_bits(const Buffer<T>& a, const Buffer<T>& b) {
  return std::memcmp(a.data.get(), b.data.get(), sizeof(T) * a.n) == 0;
}

template <typename scalar_t, typename acc_t>
void run_case(int dtype, int64_t N, int64_t C, int64_t L, int64_t k, int circular,
              int64_t max_blocks, int64_t tile_budget, int seed) {
  char name[200];
  std::snprintf(name, sizeof(name),
                "dtype %d, N=%lld C=%lld L=%lld k=%lld, %s, max_blocks %lld, tile budget %lld",
                dtype, (long long)N, (long long)C, (long long)L, (long long)k,
                circular ? "circular" : "zeros", (long long)max_blocks, (long long)tile_budget);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 2.0f);
  const int64_t numel = N * C * L;
  Buffer<scalar_t> x(numel), grad_y(numel), residual(numel);
  Buffer<acc_t> w(k), gain(1), multiplier(N * C);
  for (int64_t i = 0; i < numel; ++i) x.data[i] = scalar_t(uniform(gen));
  for (int64_t i = 0; i < numel; ++i) grad_y.data[i] = scalar_t(uniform(gen));
  for (int64_t i = 0; i < numel; ++i) residual.data[i] = scalar_t(uniform(gen));
  gain.data[0] = acc_t(0.75f);
  for (int64_t i = 0; i < k; ++i) w.data[i] = acc_t(uniform(gen) - 0.5f);

  std::vector<Buffer<acc_t>> pooled, gate, grad_w;
  std::vector<Buffer<scalar_t>> y, grad_x, grad_pre;
  for (const bool last : {false, true}) {
    const Buffer<scalar_t> xs = laid_out(x, N, C, L, last), gs = laid_out(grad_y, N, C, L, last);
    const Buffer<scalar_t> rs = laid_out(residual, N, C, L, last);
    pooled.emplace_back(N * C);
    gate.emplace_back(N * C);
    y.emplace_back(numel);
    grad_x.emplace_back(numel);
    grad_pre.emplace_back(numel);
    grad_w.emplace_back(k);
    // Circular cases run the forward with the full block tail (residual, gain, ReLU), zeros
    // cases the plain layer; a tile budget runs the single-pass kernels where a tile fits.
    const int forward_failed = eca_emu_tail_forward(
        dtype, xs.data.get(), w.data.get(), circular ? rs.data.get() : nullptr,
        circular ? gain.data.get() : nullptr, y.back().data.get(), pooled.back().data.get(),
        gate.back().data.get(), circular ? multiplier.data.get() : nullptr, N, C, L, k, circular,
        last, max_blocks, last ? seed : -1, circular ? 0.5 : 1.0, circular, tile_budget, 1);
    if (forward_failed != 0 ||
        // and the backward through the ReLU tail's mask (out = y) for the circular cases
        eca_emu_backward(dtype, gs.data.get(), xs.data.get(), w.data.get(),
                         pooled.back().data.get(), gate.back().data.get(),
                         circular ? y.back().data.get() : nullptr, grad_x.back().data.get(),
                         grad_w.back().data.get(), grad_pre.back().data.get(), N, C, L, k, circular,
                         last, max_blocks, last ? seed : -1, tile_budget, 1) != 0) {
      fail(eca_emu_error(), name);
      return;
    }
    if (last) {  // (N, L, C) read as (N, C', L') = (N, L, C) and transposed: (N, C, L)
      y.back() = laid_out(y.back(), N, L, C, true);
      grad_x.back() = laid_out(grad_x.back(), N, L, C, true);
      grad_pre.back() = laid_out(grad_pre.back(), N, L, C, true);
    }
  }
  for (int i = 0; i < 2; ++i) {
    if (!all_finite(pooled[i]) || !all_finite(gate[i]) || !all_finite(y[i]) ||
        !all_finite(grad_x[i]) || !all_finite(grad_w[i]) ||
        (circular && !all_finite(grad_pre[i]))) {
      fail(i ? "an output is not finite (channels last)" : "an output is not finite", name);
    }
  }
  if (!same_bits(pooled[0], pooled[1]) || !same_bits(gate[0], gate[1]) || !same_bits(y[0], y[1]) ||
      !same_bits(grad_x[0], grad_x[1]) || !same_bits(grad_w[0], grad_w[1]) ||
      !same_bits(grad_pre[0], grad_pre[1])) {
    fail("the layouts give different bits", name);
  }
}

template <typename scalar_t, typename acc_t>
void run_dtype(int dtype) {
  // (N, C, L, k): C off every tile, k > C, several row groups and channel tiles, two chunks of
  // a spatial sum.
  const int64_t cases[][4] = {{2, 37, 35, 3}, {3, 100, 9, 5}, {1, 3, 16, 9}, {1, 4, 4500, 3}};
  // Tile budgets: none (the three launches), narrow tiles with halos, whole samples.
  const int64_t budgets[] = {0, 3000, int64_t(1) << 17};
  for (const auto& s : cases) {
    for (const int circular : {0, 1}) {
      for (const int64_t max_blocks : {int64_t(1) << 20, int64_t(1)}) {
        for (const int64_t budget : budgets) {
          run_case<scalar_t, acc_t>(dtype, s[0], s[1], s[2], s[3], circular, max_blocks, budget, 7);
        }
      }
    }
  }
  // Two chunks of the weight gradient (N * C = 4500), float32 only (it sums in acc_t), on
  // whole-sample tiles: a few blocks, where the multi-launch plan's thousand row groups would
  // take minutes under the sanitizers.
  if (dtype == 0) {
    for (const int circular : {0, 1}) {
      run_case<scalar_t, acc_t>(dtype, 3, 1500, 1, 3, circular, int64_t(1) << 20, int64_t(1) << 17,
                                7);
    }
  }
}

}  // namespace

int main() {
  run_dtype<float, float>(0);
#ifndef ECA_EMU_FLOAT32_ONLY
  run_dtype<double, double>(1);
  run_dtype<c10::Half, float>(2);
  run_dtype<c10::BFloat16, float>(3);
#endif
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
