// The spatial sums of the CPU kernels in their one order (stated below), for rows
// (contiguous) and for columns of channels (channels last).
#pragma once

#ifndef CPU_CAPABILITY  // compiled once per instruction set, after the target pragma
#error "a part of the CPU kernels: included by eca_kernels_cpu_impl.h only"
#endif

namespace eca_cuda::cpu::CPU_CAPABILITY {
namespace {

// The canonical order of every spatial sum (pooling, and t = sum g x in the backward), the
// same for both layouts, so that contiguous and channels_last inputs give the same bits:
// - S = Vectorized<acc_t>::size() slots; element l of a sub-chunk of kSubChunk elements goes
//   to slot l % S, and each slot adds its elements in increasing l;
// - a chunk of kSumChunk elements adds its sub-chunks' slot sums slot by slot, in sub-chunk
//   order (so channels_last can cut a sample's rows into sub-chunks, one per work item);
// - one chunk (L <= kSumChunk): the S slot sums are added by halving_tree;
// - several chunks: each slot adds its chunk sums in chunk order in double (so a sum over
//   2^30 elements keeps its digits), then halving_tree in double.
// The contiguous kernel holds the S slots in one vector per row; the channels-last kernel
// holds S rows of slot sums per channel block.
constexpr int64_t kSumChunk = 1024;
constexpr int64_t kSubChunk = 512;

template <typename acc_t>
constexpr int64_t kSlots = Vectorized<acc_t>::size();

// a[0] after a[i] += a[i + w] for w = n/2, n/4, ..., 1 (n a power of two). Inlined, so that
// with n a constant the loops unroll and an array of vectors stays in registers.
template <typename T>
[[gnu::always_inline]] inline T halving_tree(T* a, int64_t n) {
  for (int64_t w = n / 2; w >= 1; w /= 2) {
#pragma GCC unroll 32
    for (int64_t i = 0; i < w; ++i) a[i] = a[i] + a[i + w];
  }
  return a[0];
}

// halving_tree of the lanes of v. ATen's shuffle reduction for float on AVX2/AVX-512 is
// this very tree (lane i + lane i + w for w = S/2, ..., 1); other types reduce in sequence
// there, so they go through memory.
template <typename acc_t>
acc_t halving_sum(const Vectorized<acc_t>& v) {
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<acc_t, float>) {
    return at::vec::vec_reduce_all<float>(
        [](const Vectorized<float>& p, const Vectorized<float>& q) { return p + q; }, v);
  }
#endif
  acc_t a[kSlots<acc_t>];
  v.store(a);
  return halving_tree(a, kSlots<acc_t>);
}

// Slot sums of chunk [0, n) of kRows rows of a contiguous tensor (row r at a + r * L), times
// b when given: the rows' chains interleave, to hide the add latency of one chain.
template <int kRows, typename scalar_t, typename Vec = typename VecIO<scalar_t>::Vec>
void chunk_slot_sums(const scalar_t* a, const scalar_t* b, int64_t L, int64_t n, Vec* acc) {
  using IO = VecIO<scalar_t>;
  static_assert(kSubChunk % IO::kStep == 0);
  for (int r = 0; r < kRows; ++r) acc[r] = Vec(0);  // n = 0 (L = 0) adds nothing
  const auto sum = [&](auto product) {
    Vec sub[kRows];
    const auto add_step = [&](int64_t l, int64_t m) {  // elements [l, l + m), m <= kStep
      Vec a0, a1, b0, b1;
      for (int r = 0; r < kRows; ++r) {
        IO::load(a + r * L + l, m, a0, a1);  // a1: elements l + S .. l + 2S - 1, same slots
        if constexpr (decltype(product)::value) {
          IO::load(b + r * L + l, m, b0, b1);
          sub[r] = at::vec::fmadd(a0, b0, sub[r]);
          sub[r] = at::vec::fmadd(a1, b1, sub[r]);
        } else {
          sub[r] = sub[r] + a0;
          sub[r] = sub[r] + a1;
        }
      }
    };
    for (int64_t l0 = 0; l0 < n; l0 += kSubChunk) {
      for (int r = 0; r < kRows; ++r) sub[r] = Vec(0);
      for_each_step<IO::kStep>(l0, std::min(n, l0 + kSubChunk), add_step);
      for (int r = 0; r < kRows; ++r) acc[r] = l0 == 0 ? sub[r] : acc[r] + sub[r];
    }
  };
  with_flag(b != nullptr, sum);
}

// out[r] = the sum of a[r * L .. r * L + L) (times b's) in the canonical order above, for
// kRows rows.
template <int kRows, typename scalar_t, typename acc_t>
void row_sums(const scalar_t* a, const scalar_t* b, int64_t L, acc_t* out) {
  using Vec = typename VecIO<scalar_t>::Vec;
  constexpr int64_t S = kSlots<acc_t>;
  static_assert(kSumChunk % (2 * S) == 0);
  Vec acc[kRows];
  if (L <= kSumChunk) {
    chunk_slot_sums<kRows>(a, b, L, L, acc);
    for (int r = 0; r < kRows; ++r) out[r] = halving_sum(acc[r]);
    return;
  }
  double total[kRows][S] = {};
  acc_t slots[S];
  for (int64_t l0 = 0; l0 < L; l0 += kSumChunk) {
    chunk_slot_sums<kRows>(a + l0, b ? b + l0 : nullptr, L, std::min(kSumChunk, L - l0), acc);
    for (int r = 0; r < kRows; ++r) {
      acc[r].store(slots);
      for (int64_t s = 0; s < S; ++s) total[r][s] += double(slots[s]);
    }
  }
  for (int r = 0; r < kRows; ++r) out[r] = acc_t(halving_tree(total[r], S));
}

// The row statistic pipeline_rows computes: scale * sum_l a[q, l] (* b[q, l]).
template <typename scalar_t, typename acc_t>
struct RowSum {
  const scalar_t* a;
  const scalar_t* b;
  int64_t L;
  acc_t scale;

  acc_t operator()(int64_t q) const {
    acc_t sum;
    row_sums<1>(a + q * L, b ? b + q * L : nullptr, L, &sum);
    return sum * scale;
  }
  // out[q] for q in [q0, q1), four rows at a time (their chains overlap; short rows are
  // bound by the latency of each row's adds): the same bits as operator().
  void fill(int64_t q0, int64_t q1, acc_t* out) const {
    int64_t q = q0;
    for (acc_t sums[4]; q + 4 <= q1; q += 4) {
      row_sums<4>(a + q * L, b ? b + q * L : nullptr, L, sums);
      for (int i = 0; i < 4; ++i) out[q + i] = sums[i] * scale;
    }
    for (; q < q1; ++q) out[q] = (*this)(q);
  }
};

// slots[i] = slots[i] + a[i] (* b[i] with kProduct) for i < n <= VecIO<scalar_t>::kStep; with
// from_zero (a slot's first term) 0 + a[i] (* b[i]) in registers, so that no slot row needs
// zeroing first.
template <bool kProduct, typename scalar_t, typename acc_t>
inline void add_to_slots(const scalar_t* a, const scalar_t* b, int64_t n, bool from_zero,
                         acc_t* slots) {
  using IO = VecIO<scalar_t>;
  typename IO::Vec a0, a1, b0, b1, s0(0), s1(0);
  IO::load(a, n, a0, a1);
  if (!from_zero) VecIO<acc_t>::load(slots, n, s0, s1);
  if constexpr (kProduct) {
    IO::load(b, n, b0, b1);
    s0 = at::vec::fmadd(a0, b0, s0);
    s1 = at::vec::fmadd(a1, b1, s1);
  } else {
    s0 = s0 + a0;
    s1 = s1 + a1;
  }
  VecIO<acc_t>::store(slots, n, s0, s1);
}

// slot_sums_channels_last over whole rows with slot rows back to back: element e = r * C + c
// goes to slot element (r % S) * C + c = e mod (S * C), so full vectors run across rows (narrow
// layers would otherwise take a partial vector per row), adding the same elements in the same
// order. Out of line, which keeps the row loop's code as it was.
template <typename scalar_t, typename acc_t>
[[gnu::noinline]] void slot_sums_whole_rows(const scalar_t* a, const scalar_t* b, int64_t total,
                                            int64_t period, acc_t* slots) {
  using IO = VecIO<scalar_t>;
  if (total < period) std::fill_n(slots + total, period - total, acc_t(0));  // fewer than S rows
  with_flag(b != nullptr, [&](auto product) {
    for (int64_t e = 0, pos = 0; e < total;) {  // a step stays inside one period
      const int64_t n = std::min({IO::kStep, period - pos, total - e});
      add_to_slots<decltype(product)::value>(a + e, b + (product ? e : 0), n, e < period,
                                             slots + pos);
      e += n;
      pos = pos + n == period ? 0 : pos + n;
    }
  });
}

// Channels last, one sub-chunk of rows of a channel block: slots[s, c] = the slot-s sum of
// a[r, c] (* b[r, c]) over the rows r with r % S == s (rows of `stride` elements, `width`
// channels; slots has rows of `slot_stride`). The sums live in memory (S rows of the
// channels, in L1 or L2); each row adds to the slot row it belongs to, the first S rows to
// zero in registers (add_to_slots' from_zero) rather than to a zeroed slot row.
template <typename scalar_t, typename acc_t>
void slot_sums_channels_last(const scalar_t* a, const scalar_t* b, int64_t rows, int64_t width,
                             int64_t stride, acc_t* slots, int64_t slot_stride) {
  using IO = VecIO<scalar_t>;
  constexpr int64_t S = kSlots<acc_t>;
  if (width == stride && slot_stride == width) {
    slot_sums_whole_rows(a, b, rows * width, S * width, slots);
    return;
  }
  for (int64_t s = rows; s < S; ++s) std::fill_n(slots + s * slot_stride, width, acc_t(0));
  with_flag(b != nullptr, [&](auto product) {
    for (int64_t r = 0; r < rows; ++r) {
      const scalar_t* a_row = a + r * stride;
      const scalar_t* b_row = b + (product ? r * stride : 0);
      acc_t* slot = slots + (r % S) * slot_stride;
      for_each_step<IO::kStep>(0, width, [&](int64_t c, int64_t n) {
        add_to_slots<decltype(product)::value>(a_row + c, b_row + (product ? c : 0), n, r < S,
                                               slot + c);
      });
    }
  });
}

// Channels last, one sub-chunk (rows <= kSubChunk) of `width` channels, rows `stride` elements
// apart: out[c] = scale * (the canonical sum of a[., c]). A vector of channels keeps its S
// slot sums in registers while it walks down the rows: the adds of slot_sums_channels_last and
// finish_slot_sums in their order, without loading and storing a slot row per row. For inputs
// in cache: the walks down the columns of an 8x2048x7x7 layer read from L3 ran 1.1-1.4x slower
// than slot rows (and the backward's two inputs, g and x, were slower even from L2).
template <typename scalar_t, typename acc_t>
void channel_sums_one_chunk(const scalar_t* a, int64_t rows, int64_t width, int64_t stride,
                            acc_t scale, acc_t* out) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t S = kSlots<acc_t>;
  for_each_step<Vec::size()>(0, width, [&](int64_t c, int64_t m) {
    Vec slot[S];
#pragma GCC unroll 32
    for (int64_t s = 0; s < S; ++s) slot[s] = Vec(acc_t(0));
    const auto add_row = [&](int64_t r, Vec& sum) {
      sum = sum + load_acc<scalar_t, acc_t>(a + r * stride + c, m);
    };
    int64_t r = 0;
    for (; r + S <= rows; r += S) {
#pragma GCC unroll 32
      for (int64_t s = 0; s < S; ++s) add_row(r + s, slot[s]);
    }
    for (int64_t s = 0; r + s < rows; ++s) add_row(r + s, slot[s]);
    (halving_tree(slot, S) * Vec(scale)).store(out + c, m);
  });
}

// out[c] = scale * (the canonical sum of channel c) for c in [c0, c1), from the slot sums
// of each sub-chunk: partial holds `subs` x S rows of `stride` elements.
template <typename acc_t>
void finish_slot_sums(const acc_t* partial, int64_t subs, int64_t stride, int64_t c0, int64_t c1,
                      acc_t scale, acc_t* out) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t S = kSlots<acc_t>, V = Vec::size();
  constexpr int64_t kSubsPerChunk = kSumChunk / kSubChunk;
  // v[s] = the slot-s sums of channels [c, c + m) of the chunk whose first sub-chunk is j0,
  // added in sub-chunk order. Unrolled, so that v stays in registers.
  const auto chunk_slots = [&](int64_t j0, int64_t c, int64_t m, Vec* v) {
#pragma GCC unroll 32
    for (int64_t s = 0; s < S; ++s) v[s] = loadu_partial(partial + (j0 * S + s) * stride + c, m);
    for (int64_t j = j0 + 1; j < std::min(subs, j0 + kSubsPerChunk); ++j) {
#pragma GCC unroll 32
      for (int64_t s = 0; s < S; ++s)
        v[s] = v[s] + loadu_partial(partial + (j * S + s) * stride + c, m);
    }
  };
  // One chunk: the halving tree across the slots, a vector of channels at a time.
  if (subs <= kSubsPerChunk) {
    for (int64_t c = c0; c < c1; c += V) {
      const int64_t m = std::min<int64_t>(V, c1 - c);
      Vec v[S];
      chunk_slots(0, c, m, v);
      (halving_tree(v, S) * Vec(scale)).store(out + c, m);
    }
    return;
  }
  for (int64_t c = c0; c < c1; c += V) {  // a vector of channels at a time
    const int64_t m = std::min<int64_t>(V, c1 - c);
    Vec v[S];
    double total[S][V] = {};
    acc_t lanes[V];
    for (int64_t j0 = 0; j0 < subs; j0 += kSubsPerChunk) {
      chunk_slots(j0, c, m, v);
      for (int64_t s = 0; s < S; ++s) {
        v[s].store(lanes);
        for (int64_t i = 0; i < V; ++i) total[s][i] += double(lanes[i]);
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      double slots[S];
      for (int64_t s = 0; s < S; ++s) slots[s] = total[s][i];
      out[c + i] = acc_t(halving_tree(slots, S)) * scale;
    }
  }
}

}  // namespace
}  // namespace eca_cuda::cpu::CPU_CAPABILITY
