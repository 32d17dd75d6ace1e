// CPU kernels for eca_forward / eca_backward, written once with at::vec::Vectorized and
// compiled once per instruction set: eca_kernels_cpu_{default,avx2,avx512,avx512_bf16}.cpp
// define CPU_CAPABILITY and include this file, as ATen builds its own kernels per capability;
// eca_kernels_cpu.cpp picks one at run time.
//
// No (N, C, L) temporary is made; per-channel math comes from eca_math.h. Every spatial sum
// follows one canonical order (see kSumChunk) that depends only on L and the instruction set,
// so results are bitwise identical for any thread count and for contiguous and channels_last
// inputs (they may differ between instruction sets).
//
// Contiguous (N, C, L): each thread walks its own range of (n, c) rows, computing row sums a
// few rows ahead of the rows it finishes (gate, rescale), so a row is re-read from the core's
// L2 rather than from memory. Channels last (N, L, C): small samples go whole to a thread,
// which sums, gates and rescales one at a time; larger ones are cut into (row sub-chunk,
// channel block) items; each thread sums a balanced range of them, and after the gates are
// known rescales an even share of whole rows, mostly the ones it summed, last to first.

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
// clang-format on

namespace eca_cuda::cpu::CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// Elements per parallel work item: large enough to amortise scheduling.
constexpr int64_t kGrainElements = 32768;

int64_t grain_rows(int64_t row_length) {
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, row_length));
}

// f(std::true_type{}) when flag, else f(std::false_type{}): a choice made once, so that the
// loops inside f are compiled without it ("times b", "with a shift").
template <typename F>
void with_flag(bool flag, const F& f) {
  if (flag) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

// f(i, kStep) for the full steps of [i0, i1), then f(i, i1 - i) for a partial last step: the
// full steps compile without the partial loads' branches (short rows and narrow channel blocks
// spend a large part of their time there).
template <int64_t kStep, typename F>
void for_each_step(int64_t i0, int64_t i1, const F& f) {
  int64_t i = i0;
  for (; i + kStep <= i1; i += kStep) f(i, kStep);
  if (i < i1) f(i, i1 - i);
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

#if defined(CPU_CAPABILITY_AVX512_BF16)
// at::vec::convert_from_float<BFloat16> in one instruction, vcvtne2ps2bf16, where at::vec
// rounds to nearest even with about 14 integer ones, most of a bfloat16 rescale's work (0.87x
// forward, 0.94x backward time in an A/B). The instruction flushes denormals and keeps NaN
// payloads, where at::vec keeps denormals and writes 0xffff, so a vector holding either takes
// at::vec's path: the same bits as the AVX512 build.
inline Vectorized<c10::BFloat16> bfloat16_from_float(const Vectorized<float>& a,
                                                     const Vectorized<float>& b) {
  constexpr int kNanOrDenormal = 0x01 | 0x20 | 0x80;  // vfpclassps: QNaN, denormal, SNaN
  const __mmask16 special =
      _mm512_fpclass_ps_mask(a, kNanOrDenormal) | _mm512_fpclass_ps_mask(b, kNanOrDenormal);
  if (special != 0) return at::vec::convert_from_float<c10::BFloat16>(a, b);
  return __m512i(_mm512_cvtne2ps_pbh(b, a));  // b's lanes high, a's low
}
#endif

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
  static ScalarVec from_float(const Vec& a, const Vec& b) {
#if defined(CPU_CAPABILITY_AVX512_BF16)
    if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) return bfloat16_from_float(a, b);
#endif
    return at::vec::convert_from_float<scalar_t>(a, b);
  }
  static void store(scalar_t* p, int64_t n, const Vec& a, const Vec& b) {
    const ScalarVec v = from_float(a, b);
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

// Contiguous rows [0, rows) of L elements: out[r, l] = in[r, l] * scale[r] + shift[r] (shift =
// 0 when null), the bits of scale_shift_row per row. With L >= kStep the vectors run over the
// rows as one flat range, aligned to out, taking each lane's scale (and shift) from the row it
// falls in: a row that is not a whole number of cache lines (7x7, 14x14) would otherwise store
// every vector across two lines, and take a partial vector at its end.
template <typename scalar_t, typename acc_t>
void scale_shift_rows(const scalar_t* in, const acc_t* scale, const acc_t* shift, int64_t rows,
                      int64_t L, scalar_t* out) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t kStep = IO::kStep, V = Vec::size();
  if (L < kStep) {  // a step could span more than two rows
    for (int64_t r = 0; r < rows; ++r) {
      scale_shift_row(in + r * L, scale[r], shift ? shift[r] : acc_t(0), L, out + r * L);
    }
    return;
  }
  acc_t lanes[kStep];
  for (int64_t i = 0; i < kStep; ++i) lanes[i] = acc_t(i);
  const Vec lane0 = Vec::loadu(lanes), lane1 = Vec::loadu(lanes + V);
  const int64_t total = rows * L;
  int64_t e = 0, r = 0, row_end = L;  // row r holds elements [row_end - L, row_end)
  Vec a0, a1, s0, s1, t0(0), t1(0);
  const auto step = [&](int64_t n) {  // elements [e, e + n), n <= kStep <= L: rows r, r + 1
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
    IO::store(out + e, n, at::vec::fmadd(a0, s0, t0), at::vec::fmadd(a1, s1, t1));
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

// Vectorized<acc_t>::size() elements of p as a vector of acc_t (m < size: the first m, then
// zeros).
template <typename scalar_t, typename acc_t>
[[gnu::always_inline]] inline Vectorized<acc_t> load_acc(const scalar_t* p, int64_t m) {
  using Vec = Vectorized<acc_t>;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return m == Vec::size() ? Vec::loadu(p) : Vec::loadu(p, m);
  } else {
    Vec v;
    if (m == Vec::size()) {
      at::vec::load_to_float(p, v);
    } else {
      scalar_t part[Vec::size()] = {};
      std::copy_n(p, m, part);
      at::vec::load_to_float(part, v);
    }
    return v;
  }
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
    for (int64_t s = 0; s < S; ++s) v[s] = Vec::loadu(partial + (j0 * S + s) * stride + c, m);
    for (int64_t j = j0 + 1; j < std::min(subs, j0 + kSubsPerChunk); ++j) {
#pragma GCC unroll 32
      for (int64_t s = 0; s < S; ++s)
        v[s] = v[s] + Vec::loadu(partial + (j * S + s) * stride + c, m);
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

// scale_shift_rows_channels_last when rows end inside a vector: full vectors run across rows
// (a partial one per row costs as much as the rest of a narrow row), reading scale and shift
// from copies repeated past C. Out of line, which keeps the row loop's code as it was.
template <typename scalar_t, typename acc_t>
[[gnu::noinline]] void scale_shift_whole_rows(const scalar_t* in, const acc_t* scale,
                                              const acc_t* shift, int64_t total, int64_t C,
                                              scalar_t* out) {
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
    IO::store(out + e, n, at::vec::fmadd(a0, s0, t0), at::vec::fmadd(a1, s1, t1));
    c += advance;
    if (c >= C) c -= C;
  }
}

// Channels last: out[r, c] = in[r, c] * scale[c] + shift[c] (shift = 0 when null) for
// `rows` rows of C.
template <typename scalar_t, typename acc_t>
void scale_shift_rows_channels_last(const scalar_t* in, const acc_t* scale, const acc_t* shift,
                                    int64_t rows, int64_t C, scalar_t* out) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t kStep = IO::kStep;
  if (C % kStep != 0 && rows > 1) {
    scale_shift_whole_rows(in, scale, shift, rows * C, C, out);
    return;
  }
  with_flag(shift != nullptr, [&](auto shifted) {
    Vec a0, a1, s0, s1, t0(0), t1(0);
    for (int64_t r = 0; r < rows; ++r) {
      for_each_step<kStep>(0, C, [&](int64_t c, int64_t n) {
        IO::load(in + r * C + c, n, a0, a1);
        VecIO<acc_t>::load(scale + c, n, s0, s1);
        if constexpr (decltype(shifted)::value) VecIO<acc_t>::load(shift + c, n, t0, t1);
        IO::store(out + r * C + c, n, at::vec::fmadd(a0, s0, t0), at::vec::fmadd(a1, s1, t1));
      });
    }
  });
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
      acc = acc + Vec(w[j]) * Vec::loadu(p + i + (transposed ? k - 1 - j : j), m);
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
    const Vec sv = Vec::loadu(s + i, m);
    (Vec::loadu(t + i, m) * (sv * (one - sv))).store(dz + i, m);
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
      const Vec v = Vec::loadu(z + i, m);
      const Vec s = one / (one + (zero - v).exp_u20());
      Vec::blendv(s, v, v != v).store(z + i, m);  // exp_u20 loses NaN: put it back
    }
  } else {
    for (int64_t i = 0; i < n; ++i) z[i] = sigmoid(z[i]);
  }
}

// Channels last work items: (sample, sub-chunk of kSubChunk rows, block of at most
// kChannelBlock channels). The row sub-chunks are those of the canonical sum; the channel
// blocks only split the work (channels are summed independently), so any block size gives the
// same bits.
constexpr int64_t kChannelBlock = 128;

struct ChannelsLastItems {
  int64_t L, C, subs, blocks;

  ChannelsLastItems(int64_t L_, int64_t C_)
      : L(L_),
        C(C_),
        subs((L_ + kSubChunk - 1) / kSubChunk),
        blocks((C_ + kChannelBlock - 1) / kChannelBlock) {}
  int64_t per_sample() const { return subs * blocks; }
  int64_t sub(int64_t item) const { return item % per_sample() / blocks; }
  int64_t first_row(int64_t item) const { return sub(item) * kSubChunk; }
  int64_t rows(int64_t item) const { return std::min(kSubChunk, L - first_row(item)); }
  int64_t first_channel(int64_t item) const { return item % blocks * kChannelBlock; }
  int64_t width(int64_t item) const { return std::min(kChannelBlock, C - first_channel(item)); }
  // Elements in the items before `item` (items are sample-major, then sub-chunk, then block).
  int64_t elements_before(int64_t item) const {
    return item / per_sample() * L * C + first_row(item) * C + rows(item) * first_channel(item);
  }
};

// Runs body(item0, item1) over items [0, items), each thread over one range of them cut by
// element counts (the last sub-chunk and block of a sample are short, so equal item counts
// would not balance), in runs [item0, item1) of one sample and sub-chunk (consecutive channel
// blocks), walked in whole rows where it can be.
template <typename Body>
void for_each_run_balanced(const ChannelsLastItems& cut, int64_t items, const Body& body) {
  const int64_t total = cut.elements_before(items);
  // At least kGrainElements per thread, as at::parallel_for's grain elsewhere: a small layer
  // runs inline rather than paying a parallel region.
  const int64_t threads = std::min<int64_t>(at::get_num_threads(),
                                            std::max<int64_t>(1, at::divup(total, kGrainElements)));
  // The first item whose midpoint is at or past thread t's share: a binary search, as the
  // midpoints increase.
  const auto first_item = [&](int64_t t) {
    int64_t lo = 0, hi = items;
    while (lo < hi) {
      const int64_t i = (lo + hi) / 2;
      const int64_t twice_mid = cut.elements_before(i) + cut.elements_before(i + 1);
      if (twice_mid * threads < 2 * total * t) {
        lo = i + 1;
      } else {
        hi = i;
      }
    }
    return lo;
  };
  at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
    const int64_t end = first_item(t1);
    for (int64_t item = first_item(t0); item < end;) {
      const int64_t run_end = std::min(end, (item / cut.blocks + 1) * cut.blocks);
      body(item, run_end);
      item = run_end;
    }
  });
}

// Samples per group in channels last: the group's input (x, or grad_y and x) is about one
// MiB per thread, so the rows a thread summed are mostly still in its L2 when the second
// phase rescales them.
int64_t samples_per_group(int64_t sample_bytes) {
  const int64_t bytes = int64_t(at::get_num_threads()) << 20;
  return std::max<int64_t>(1, bytes / std::max<int64_t>(1, sample_bytes));
}

// Both channels-last kernels: phase 1 computes the slot sums of a (times b) for every item;
// sums[n, c] = scale * (the canonical sum); `between(begin, end)` then works on the (n, c)
// range [begin, end) (gates, shifts); phase 2 runs `finish(n, row0, rows)` over whole rows.
// - Small samples, at least one per thread: each thread takes whole samples and runs both
//   phases on one sample at a time, in one parallel region (each region costs microseconds,
//   as much as the work of a 7x7 layer), the sample still in its L2 when it is rescaled.
// - Otherwise, per group of samples: phase 1 cuts the group's items between the threads;
//   phase 2 gives each thread an even share of whole rows in the order phase 1 cut them, so
//   that most of what it rescales is still in its cache. (Rescaling phase 1's items instead
//   writes part-rows when phase 1 had to split a sub-chunk by channels, as with one sample of
//   1024 channels at 14x14: y's part-rows then share L2 sets with x's, and the rescale ran
//   1.6-1.9x slower in a 2-thread A/B.)
// Both ways add the same elements in the same order, so give the same bits.
template <typename scalar_t, typename acc_t, typename Between, typename Finish>
void channels_last_two_phase(const scalar_t* a, const scalar_t* b, int64_t N, int64_t C, int64_t L,
                             acc_t scale, acc_t* sums, const at::TensorOptions& acc_options,
                             const Between& between, const Finish& finish) {
  constexpr int64_t S = kSlots<acc_t>;
  const ChannelsLastItems cut(L, C);
  const int64_t input_bytes = C * L * int64_t(sizeof(scalar_t)) * (b ? 2 : 1);
  const int64_t threads = at::get_num_threads();
  const int64_t part_size = cut.subs * S * C;  // slot sums of one sample
  // The forward of a layer of at most 1 MiB per thread, likely in cache, sums a sub-chunk
  // down its columns (in-process A/B, float32: 0.88-0.94x on 7x7 and 14x14 layers).
  const bool columns_in_cache = !b && N * input_bytes <= (threads << 20);
  // Phase 1 for items [item0, item1) (one sub-chunk, consecutive blocks) of sample n: with
  // several sub-chunks, into `part` (the slot sums of that sample), finished once all are
  // in; with one (L <= kSubChunk), each item finishes its sums from an L1 scratch, or from
  // registers (channel_sums_one_chunk).
  const auto sum_items = [&](int64_t n, acc_t* part, int64_t item0, int64_t item1) {
    const int64_t c0 = cut.first_channel(item0);
    const int64_t c1 = cut.first_channel(item1 - 1) + cut.width(item1 - 1);
    const int64_t offset = (n * L + cut.first_row(item0)) * C;
    const scalar_t* b_run = b ? b + offset : nullptr;
    if (part) {
      acc_t* slots = part + cut.sub(item0) * S * C;
      slot_sums_channels_last<scalar_t, acc_t>(a + offset + c0, b_run ? b_run + c0 : nullptr,
                                               cut.rows(item0), c1 - c0, C, slots + c0, C);
      return;
    }
    if (columns_in_cache) {
      channel_sums_one_chunk(a + offset + c0, cut.rows(item0), c1 - c0, C, scale,
                             sums + n * C + c0);
      return;
    }
    for (int64_t item = item0; item < item1; ++item) {  // a block at a time, in L1
      acc_t scratch[S * kChannelBlock];
      const int64_t c = cut.first_channel(item), width = cut.width(item);
      slot_sums_channels_last<scalar_t, acc_t>(a + offset + c, b_run ? b_run + c : nullptr,
                                               cut.rows(item), width, C, scratch, width);
      finish_slot_sums(scratch, 1, width, 0, width, scale, sums + n * C + c);
    }
  };
  const auto finish_block = [&](int64_t n, const acc_t* part, int64_t c0) {
    finish_slot_sums(part, cut.subs, C, c0, std::min(C, c0 + kChannelBlock), scale, sums + n * C);
  };
  // Slot-sum scratch for `count` samples' parts, held by `holder`; null with at most one
  // sub-chunk (L <= kSubChunk).
  const auto parts_scratch = [&](int64_t count, at::Tensor& holder) -> acc_t* {
    if (cut.subs <= 1) return nullptr;
    holder = at::empty({count * part_size}, acc_options);
    return holder.mutable_data_ptr<acc_t>();
  };

  const int64_t samples_per_thread = at::divup(N, threads);
  if (input_bytes <= (int64_t(1) << 20) && N >= threads &&
      4 * samples_per_thread * threads <= 5 * N) {  // whole samples, at most 25% imbalance
    // Ranges of `per_range` samples, at least kGrainElements each as elsewhere (tiny layers
    // run inline), at most one per thread; each range has its own slot-sum scratch.
    const int64_t per_range = std::max(samples_per_thread, at::divup(kGrainElements, C * L));
    const int64_t ranges = at::divup(N, per_range);
    at::Tensor part_t;
    acc_t* parts = parts_scratch(ranges, part_t);
    at::parallel_for(0, ranges, 1, [&](int64_t range0, int64_t range1) {
      for (int64_t range = range0; range < range1; ++range) {
        acc_t* part = parts ? parts + range * part_size : nullptr;
        for (int64_t n = range * per_range; n < std::min(N, (range + 1) * per_range); ++n) {
          for (int64_t sub = 0; sub < cut.subs; ++sub) {
            sum_items(n, part, sub * cut.blocks, (sub + 1) * cut.blocks);
          }
          for (int64_t c0 = 0; part && c0 < C; c0 += kChannelBlock) finish_block(n, part, c0);
          between(n * C, (n + 1) * C);  // its parallel_for runs inline here
          finish(n, 0, L);
        }
      }
    });
    return;
  }

  const int64_t group = std::min(N, samples_per_group(input_bytes));
  const int64_t block =
      std::max<int64_t>(1, (int64_t(64) << 10) / std::max<int64_t>(1, C * sizeof(scalar_t)));
  at::Tensor partial_t;
  acc_t* partial = parts_scratch(group, partial_t);
  for (int64_t n0 = 0; n0 < N; n0 += group) {
    const int64_t samples = std::min(group, N - n0);
    const int64_t items = samples * cut.per_sample();
    for_each_run_balanced(cut, items, [&](int64_t item0, int64_t item1) {
      const int64_t sample = item0 / cut.per_sample();
      sum_items(n0 + sample, partial ? partial + sample * part_size : nullptr,
                item0 % cut.per_sample(), (item1 - 1) % cut.per_sample() + 1);
    });
    if (partial) {
      const int64_t blocks = cut.blocks;
      // An item reads subs x S slot rows of one block: kGrainElements per thread, as above.
      at::parallel_for(0, samples * blocks, grain_rows(cut.subs * S * kChannelBlock),
                       [&](int64_t begin, int64_t end) {
                         for (int64_t i = begin; i < end; ++i) {
                           const int64_t sample = i / blocks;
                           finish_block(n0 + sample, partial + sample * part_size,
                                        i % blocks * kChannelBlock);
                         }
                       });
    }
    between(n0 * C, (n0 + samples) * C);
    // Each thread takes its rows last to first, in blocks of `block` rows (64 KiB): the rows
    // it summed last are the likeliest to be still in its L2, and y's lines then push out the
    // rows summed first, which it rescales last. (First to last, a y line pushes out a row
    // still due; last to first measured 0.93-0.97x on 8x256x56x56 and 1x256x56x56, forward
    // and backward.)
    at::parallel_for(0, samples * L, grain_rows(C), [&](int64_t begin, int64_t end) {
      for (int64_t block_end = end; block_end > begin; block_end -= block) {
        const int64_t block_begin = std::max(begin, block_end - block);
        for (int64_t r = block_begin; r < block_end;) {  // r = row of the group
          const int64_t sample = r / L, row0 = r % L, rows = std::min(block_end - r, L - row0);
          finish(n0 + sample, row0, rows);  // rows of one sample per call
          r += rows;
        }
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
    const RowSum<scalar_t, acc_t> mean_of_row{x, nullptr, L, inv_L};
    pipeline_rows<acc_t>(
        N * C, L, sizeof(scalar_t), pad, pooled, mean_of_row,
        [&](int64_t r0, int64_t r1, const auto& pooled_at) {
          channel_conv_rows(pooled_at, w, k, /*transposed=*/false, C, p.mode, r0, r1, gate);
          sigmoid_inplace(gate + r0, r1 - r0);
          scale_shift_rows<scalar_t, acc_t>(x + r0 * L, gate + r0, nullptr, r1 - r0, L, y + r0 * L);
        });
    return;
  }
  channels_last_two_phase<scalar_t, acc_t>(
      x, nullptr, N, C, L, inv_L, pooled, p.pooled.options(),
      [&](int64_t begin, int64_t end) {
        at::parallel_for(begin, end, grain_rows(k), [&](int64_t r0, int64_t r1) {
          channel_conv_rows(KnownStats<acc_t>{pooled}, w, k, /*transposed=*/false, C, p.mode, r0,
                            r1, gate);
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
        Vec acc(acc_t(0));
        for (int64_t c = lo; c < hi; c += Vec::size()) {
          const int64_t m = std::min<int64_t>(Vec::size(), hi - c);
          acc = acc + Vec::loadu(dz_n + c, m) * Vec::loadu(p_n + c + j - pad, m);
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
