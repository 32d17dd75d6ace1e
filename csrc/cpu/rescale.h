// The rescale of the CPU kernels: out = in * scale + shift per channel (the forward's
// y = x * s with no shift; the backward's dx = g * s + dp / L), for both layouts, and the
// forward's block tail: out = act(in * scale + residual).
#pragma once

#ifndef CPU_CAPABILITY  // compiled once per instruction set, after the target pragma
#error "a part of the CPU kernels: included by eca_kernels_cpu_impl.h only"
#endif

namespace eca_cuda::cpu::CPU_CAPABILITY {
namespace {

// The block tail of a forward rescale: the residual (same offsets as out) replaces the shift,
// which the forward does not have, and the activation follows. NoTail compiles to nothing, so
// the plain layer's loops are what they were.
template <typename scalar_t, bool kResidual, bool kReLU>
struct Tail {
  const scalar_t* residual = nullptr;

  Tail at(int64_t offset) const { return {kResidual ? residual + offset : nullptr}; }
  // The addend of elements [e, e + n) into t0, t1 (left as they are without a residual).
  template <typename Vec>
  void addend(int64_t e, int64_t n, Vec& t0, Vec& t1) const {
    if constexpr (kResidual) VecIO<scalar_t>::load(residual + e, n, t0, t1);
  }
  template <typename Vec>
  void activate(Vec& a, Vec& b) const {
    if constexpr (kReLU) {  // max(0, v), NaN kept as relu keeps it
      a = at::vec::clamp_min(a, Vec(0));
      b = at::vec::clamp_min(b, Vec(0));
    }
  }
};
template <typename scalar_t>
using NoTail = Tail<scalar_t, false, false>;

// One row: out[l] = in[l] * s + shift (shift = 0 in the forward), then the tail.
template <typename scalar_t, typename acc_t, typename TailT = NoTail<scalar_t>>
void scale_shift_row(const scalar_t* __restrict__ in, acc_t s, acc_t shift, int64_t L,
                     scalar_t* __restrict__ out, const TailT& tail = {}) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  const Vec scale(s);
  Vec a, b, t0(shift), t1(shift);
  for (int64_t l = 0; l < L; l += IO::kStep) {
    IO::load(in + l, L - l, a, b);
    tail.addend(l, L - l, t0, t1);
    Vec v0 = at::vec::fmadd(a, scale, t0), v1 = at::vec::fmadd(b, scale, t1);
    tail.activate(v0, v1);
    IO::store(out + l, L - l, v0, v1);
  }
}

// Contiguous rows [0, rows) of L elements: out[r, l] = in[r, l] * scale[r] + shift[r] (shift =
// 0 when null), the bits of scale_shift_row per row. With L >= kStep the vectors run over the
// rows as one flat range, aligned to out, taking each lane's scale (and shift) from the row it
// falls in: a row that is not a whole number of cache lines (7x7, 14x14) would otherwise store
// every vector across two lines, and take a partial vector at its end.
template <typename scalar_t, typename acc_t, typename TailT = NoTail<scalar_t>>
void scale_shift_rows(const scalar_t* in, const acc_t* scale, const acc_t* shift, int64_t rows,
                      int64_t L, scalar_t* out, const TailT& tail = {}) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t kStep = IO::kStep, V = Vec::size();
  if (L < kStep) {  // a step could span more than two rows
    for (int64_t r = 0; r < rows; ++r) {
      scale_shift_row(in + r * L, scale[r], shift ? shift[r] : acc_t(0), L, out + r * L,
                      tail.at(r * L));
    }
    return;
  }
  acc_t lanes[kStep];
  for (int64_t i = 0; i < kStep; ++i) lanes[i] = acc_t(i);
  const Vec lane0 = Vec::loadu(lanes), lane1 = Vec::loadu(lanes + V);
  const int64_t total = rows * L;
  int64_t e = 0, r = 0, row_end = L;  // row r holds elements [row_end - L, row_end)
  Vec a0, a1, s0, s1, t0(0), t1(0);
  // Elements [e, e + n), n <= kStep <= L: rows r, r + 1. Always inlined: called from three
  // places, it was left out of line once the tail grew it, and every step then kept its
  // vectors on the stack (8x2048x7x7 float32 forward: 192-235 us against 164-179 us).
  const auto step = [&](int64_t n) __attribute__((always_inline)) {
    if (e + n <= row_end) {
      s0 = s1 = Vec(scale[r]);
      if (shift) t0 = t1 = Vec(shift[r]);
    } else {  // lanes from row_end - e on are row r + 1's
      const Vec next_row(acc_t(row_end - e));
      const Vec m0 = lane0 >= next_row, m1 = lane1 >= next_row;
      s0 = Vec::blendv(Vec(scale[r]), Vec(scale[r + 1]), m0);
      s1 = Vec::blendv(Vec(scale[r]), Vec(scale[r + 1]), m1);
      if (shift) {
        t0 = Vec::blendv(Vec(shift[r]), Vec(shift[r + 1]), m0);
        t1 = Vec::blendv(Vec(shift[r]), Vec(shift[r + 1]), m1);
      }
    }
    IO::load(in + e, n, a0, a1);
    tail.addend(e, n, t0, t1);
    Vec v0 = at::vec::fmadd(a0, s0, t0), v1 = at::vec::fmadd(a1, s1, t1);
    tail.activate(v0, v1);
    IO::store(out + e, n, v0, v1);
    e += n;
    if (e >= row_end) {
      ++r;
      row_end += L;
    }
  };
  // Steps start at multiples of kAlign elements of out (a step never crosses a cache line).
  constexpr int64_t kAlign = std::min<int64_t>(64 / int64_t(sizeof(scalar_t)), kStep);
  const int64_t misaligned = int64_t(reinterpret_cast<uintptr_t>(out) / sizeof(scalar_t)) % kAlign;
  const int64_t head = misaligned ? kAlign - misaligned : 0;
  if (head > 0) step(std::min(head, total));
  while (e + kStep <= total) step(kStep);
  if (e < total) step(total - e);
}

// scale_shift_rows_channels_last when rows end inside a vector: full vectors run across rows
// (a partial one per row costs as much as the rest of a narrow row), reading scale and shift
// from copies repeated past C. Out of line, which keeps the row loop's code as it was.
template <typename scalar_t, typename acc_t, typename TailT>
[[gnu::noinline]] void scale_shift_whole_rows(const scalar_t* in, const acc_t* scale,
                                              const acc_t* shift, int64_t total, int64_t C,
                                              scalar_t* out, const TailT& tail) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t kStep = IO::kStep;
  const int64_t period = C + kStep;
  std::vector<acc_t> repeated((shift ? 2 : 1) * period);
  for (int64_t j = 0; j < period; ++j) {
    repeated[j] = scale[j % C];
    if (shift) repeated[period + j] = shift[j % C];
  }
  Vec a0, a1, s0, s1, t0(0), t1(0);
  const int64_t advance = kStep % C;  // c steps by this, mod C: no division per step
  for (int64_t e = 0, c = 0; e < total; e += kStep) {  // c = e % C
    const int64_t n = std::min(kStep, total - e);
    IO::load(in + e, n, a0, a1);
    VecIO<acc_t>::load(repeated.data() + c, n, s0, s1);
    if (shift) VecIO<acc_t>::load(repeated.data() + period + c, n, t0, t1);
    tail.addend(e, n, t0, t1);
    Vec v0 = at::vec::fmadd(a0, s0, t0), v1 = at::vec::fmadd(a1, s1, t1);
    tail.activate(v0, v1);
    IO::store(out + e, n, v0, v1);
    c += advance;
    if (c >= C) c -= C;
  }
}

// Channels last: out[r, c] = in[r, c] * scale[c] + shift[c] (shift = 0 when null) for
// `rows` rows of C, then the tail.
template <typename scalar_t, typename acc_t, typename TailT = NoTail<scalar_t>>
void scale_shift_rows_channels_last(const scalar_t* in, const acc_t* scale, const acc_t* shift,
                                    int64_t rows, int64_t C, scalar_t* out,
                                    const TailT& tail = {}) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t kStep = IO::kStep;
  if (C % kStep != 0 && rows > 1) {
    scale_shift_whole_rows(in, scale, shift, rows * C, C, out, tail);
    return;
  }
  with_flag(shift != nullptr, [&](auto shifted) {
    Vec a0, a1, s0, s1, t0(0), t1(0);
    for (int64_t r = 0; r < rows; ++r) {
      for_each_step<kStep>(0, C, [&](int64_t c, int64_t n) {
        IO::load(in + r * C + c, n, a0, a1);
        VecIO<acc_t>::load(scale + c, n, s0, s1);
        if constexpr (decltype(shifted)::value) VecIO<acc_t>::load(shift + c, n, t0, t1);
        tail.addend(r * C + c, n, t0, t1);
        Vec v0 = at::vec::fmadd(a0, s0, t0), v1 = at::vec::fmadd(a1, s1, t1);
        tail.activate(v0, v1);
        IO::store(out + r * C + c, n, v0, v1);
      });
    }
  });
}

}  // namespace
}  // namespace eca_cuda::cpu::CPU_CAPABILITY
