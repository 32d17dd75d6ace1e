// The (N, C) steps of the CPU kernels between the spatial sums and the rescale: the
// channel conv and its transpose, the sigmoid, the gate gradient and the weight gradient,
// a vector of channels at a time, each with the bits of the per-channel functions of
// eca_math.h.
#pragma once

#ifndef CPU_CAPABILITY  // compiled once per instruction set, after the target pragma
#error "a part of the CPU kernels: included by eca_kernels_cpu_impl.h only"
#endif

namespace eca_cuda::cpu::CPU_CAPABILITY {
namespace {

// Channels c with the whole window [c - pad, c + pad] inside [0, C): no padding, no wrap.
inline bool window_inside(int64_t c, int64_t pad, int64_t C) {
  return c >= pad && c + pad < C;
}

// (n, c) of the rows r0, r0 + 1, ... of an (N, C) row range: one division per range, as a
// 64-bit division per row costs as much as the rest of a 7x7 row.
struct RowIndex {
  int64_t n, c;
  const int64_t C;
  RowIndex(int64_t r, int64_t C_) : n(r / C_), c(r % C_), C(C_) {}
  void next() { advance(1); }
  // m rows on, within the sample or to its end (c + m <= C).
  void advance(int64_t m) {
    c += m;
    if (c == C) {
      c = 0;
      ++n;
    }
  }
};

// Rows [r, r + run) of one sample (row r is channel c) whose windows are all inside [0, C)
// and computed in `stats` (run = 0 when row r's is not): they take the vector paths below.
// The run stops at the computed rows rather than being dropped, so the last rows of a
// thread's range, whose right halo is the next range's, do not all go one at a time.
template <typename Stats>
int64_t ready_run(const Stats& stats, int64_t r, int64_t c, int64_t pad, int64_t C,
                  int64_t rows_left) {
  if (!window_inside(c, pad, C)) return 0;
  const int64_t interior = std::min(rows_left, C - pad - c);
  return std::clamp<int64_t>(stats.computed_end(r - pad) - pad - r, 0, interior);
}

// z[i] = sum_j w[j] p[i + j] (channel_conv), or with `transposed` sum_j w[j] p[i + k - 1 - j]
// (channel_conv_transposed), for i < n: their taps in their order (a product, then an add), a
// vector of channels at a time, so each z[i] has the bits of the per-channel functions.
template <typename acc_t>
void conv_taps(const acc_t* p, const acc_t* w, int64_t k, bool transposed, int64_t n, acc_t* z) {
  using Vec = Vectorized<acc_t>;
  for (int64_t i = 0; i < n; i += Vec::size()) {
    const int64_t m = std::min<int64_t>(Vec::size(), n - i);
    Vec acc(acc_t(0));
    for (int64_t j = 0; j < k; ++j) {
      acc = acc + Vec(w[j]) * loadu_partial(p + i + (transposed ? k - 1 - j : j), m);
    }
    acc.store(z + i, m);
  }
}

// An (N, C) array every row of which is known: the stats interface of RowStats.
template <typename acc_t>
struct KnownStats {
  const acc_t* stats;
  acc_t operator()(int64_t q) const { return stats[q]; }
  int64_t computed_end(int64_t /*q0*/) const { return std::numeric_limits<int64_t>::max(); }
  const acc_t* data() const { return stats; }
};

// out[r] = channel_conv (or channel_conv_transposed) of row r's sample of the (N, C) `stats`
// (KnownStats or RowStats), for r in [r0, r1): runs of interior channels whose taps are all
// available by conv_taps, the others one at a time.
template <typename acc_t, typename Stats>
void channel_conv_rows(const Stats& stats, const acc_t* w, int64_t k, bool transposed, int64_t C,
                       PaddingMode mode, int64_t r0, int64_t r1, acc_t* out) {
  const int64_t pad = (k - 1) / 2;
  RowIndex at(r0, C);
  for (int64_t r = r0; r < r1;) {
    const int64_t run = ready_run(stats, r, at.c, pad, C, r1 - r);
    if (run) {
      conv_taps(stats.data() + r - pad, w, k, transposed, run, out + r);
      r += run;
      at.advance(run);
      continue;
    }
    const auto sample_at = [&](int64_t i) { return stats(at.n * C + i); };
    out[r] = transposed ? channel_conv_transposed_at(sample_at, w, k, at.c, C, mode)
                        : channel_conv_at(sample_at, w, k, at.c, C, mode);
    ++r;
    at.next();
  }
}

// dz[i] = gate_input_grad(t[i], s[i]) for i < n, a vector at a time (same operations).
template <typename acc_t>
void gate_input_grads(const acc_t* t, const acc_t* s, int64_t n, acc_t* dz) {
  using Vec = Vectorized<acc_t>;
  const Vec one(acc_t(1));
  for (int64_t i = 0; i < n; i += Vec::size()) {
    const int64_t m = std::min<int64_t>(Vec::size(), n - i);
    const Vec sv = loadu_partial(s + i, m);
    (loadu_partial(t + i, m) * (sv * (one - sv))).store(dz + i, m);
  }
}

// z[i] = sigmoid(z[i]) for i < n: vectorized (at::vec's exp_u20) for float, NaN kept.
template <typename acc_t>
void sigmoid_inplace(acc_t* z, int64_t n) {
  if constexpr (std::is_same_v<acc_t, float>) {
    using Vec = Vectorized<float>;
    const Vec one(1.0f), zero(0.0f);
    for (int64_t i = 0; i < n; i += Vec::size()) {
      const int64_t m = std::min<int64_t>(Vec::size(), n - i);
      const Vec v = loadu_partial(z + i, m);
      const Vec s = one / (one + (zero - v).exp_u20());
      Vec::blendv(s, v, v != v).store(z + i, m);  // exp_u20 loses NaN: put it back
    }
  } else {
    for (int64_t i = 0; i < n; ++i) z[i] = sigmoid(z[i]);
  }
}

// Per-sample shares of dw[j] = sum_c dz[n, c] p[n, c + j - pad], one sample per thread;
// then summed over samples in order, so the result does not depend on the thread count.
template <typename acc_t>
void weight_grad(const acc_t* dz, const acc_t* pooled, int64_t N, int64_t C, int64_t k,
                 PaddingMode mode, acc_t* partial, acc_t* grad_w) {
  using Vec = Vectorized<acc_t>;
  const int64_t pad = (k - 1) / 2;
  at::parallel_for(0, N, grain_rows(C * k), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const acc_t* dz_n = dz + n * C;
      const acc_t* p_n = pooled + n * C;
      for (int64_t j = 0; j < k; ++j) {
        // Channels [lo, hi) read p[c + j - pad] without padding: a vector at a time; the
        // others (zero padding or a wrap) one at a time after them.
        const int64_t lo = std::min(C, std::max<int64_t>(0, pad - j));
        const int64_t hi = std::max(lo, std::min(C, C + pad - j));
        // The lanes are added together: a partial step pads with zeros.
        Vec acc(acc_t(0));
        for (int64_t c = lo; c < hi; c += Vec::size()) {
          const int64_t m = std::min<int64_t>(Vec::size(), hi - c);
          acc = acc + loadu_zero_padded(dz_n + c, m) * loadu_zero_padded(p_n + c + j - pad, m);
        }
        acc_t sum = halving_sum(acc);
        for (int64_t c = 0; c < lo; ++c) sum += weight_grad_term(dz_n, p_n, j, k, c, C, mode);
        for (int64_t c = hi; c < C; ++c) sum += weight_grad_term(dz_n, p_n, j, k, c, C, mode);
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

}  // namespace
}  // namespace eca_cuda::cpu::CPU_CAPABILITY
