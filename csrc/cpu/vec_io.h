// Vector loads and stores of the CPU kernels: any input dtype in and out of vectors of its
// accumulation type (float for float16 and bfloat16), with partial steps at row ends.
#pragma once

#ifndef CPU_CAPABILITY  // compiled once per instruction set, after the target pragma
#error "a part of the CPU kernels: included by eca_kernels_cpu_impl.h only"
#endif

namespace eca_cuda::cpu::CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// Partial loads. at::vec's Vectorized<T>::loadu(ptr, count) promises the first `count` lanes
// and nothing of the others, which differ between torch releases and instruction sets: AVX2's
// bfloat16 and float16 loads left them uninitialised before torch 2.7, stack garbage that any
// sum over the lanes picked up. So the kernels call at::vec's partial load only here, in
// loadu_partial (lanes past n unspecified: for lane-wise work whose lanes past n are never
// stored, as a partial store writes n), and wherever lanes are added together they load with
// loadu_zero_padded, which zeroes the lanes past n itself: with the masked loads whose zeroing
// Intel documents (AVX-512's maskz loads; AVX2's maskload for float and double), else through
// a zeroed buffer. Not with at::vec's Vectorized::set or blend: torch 2.4's AVX-512 blend of
// bfloat16/float16 reads the wrong lanes. A build with ECA_CPU_POISON_PARTIAL_LOADS acts out
// the worst the contract allows, NaN in every lane past n, so that tests catch a lane that
// leaks into a result on any torch; its padding can be switched off there, to show that the
// tests catch the bug it fixes.
template <typename T>
[[gnu::always_inline]] inline Vectorized<T> load_through_buffer(const T* p, int64_t n, T fill) {
  alignas(64) T buffer[Vectorized<T>::size()];
  std::fill_n(buffer, Vectorized<T>::size(), fill);
  std::copy_n(p, n, buffer);
  return Vectorized<T>::loadu(buffer);
}

template <typename T>
[[gnu::always_inline]] inline Vectorized<T> loadu_partial(const T* p, int64_t n) {
#ifdef ECA_CPU_POISON_PARTIAL_LOADS
  return load_through_buffer(p, n, std::numeric_limits<T>::quiet_NaN());
#else
  return Vectorized<T>::loadu(p, n);
#endif
}

// n <= Vectorized<T>::size() elements of p, then zeros.
template <typename T>
[[gnu::always_inline]] inline Vectorized<T> loadu_zero_padded(const T* p, int64_t n) {
#ifdef ECA_CPU_POISON_PARTIAL_LOADS
  if (!poison::pad_partial_loads.load(std::memory_order_relaxed)) return loadu_partial(p, n);
#endif
#if defined(CPU_CAPABILITY_AVX512)
  const uint64_t mask = n >= 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1;
  if constexpr (std::is_same_v<T, float>) {
    return _mm512_maskz_loadu_ps(__mmask16(mask), p);
  } else if constexpr (std::is_same_v<T, double>) {
    return _mm512_maskz_loadu_pd(__mmask8(mask), p);
  } else {  // bfloat16, float16: 32 lanes of 16 bits
    static_assert(sizeof(T) == 2 && Vectorized<T>::size() == 32);
    return _mm512_maskz_loadu_epi16(__mmask32(mask), p);
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), lanes));
  } else if constexpr (std::is_same_v<T, double>) {
    const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), lanes));
  } else {  // no 16-bit masked load in AVX2
    return load_through_buffer(p, n, T(0));
  }
#else
  return load_through_buffer(p, n, T(0));
#endif
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
      b = loadu_zero_padded(p + Vec::size(), n - Vec::size());
    } else {
      a = loadu_zero_padded(p, n);
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
    const ScalarVec v = n >= kStep ? ScalarVec::loadu(p) : loadu_zero_padded(p, n);
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

// Vectorized<acc_t>::size() elements of p as a vector of acc_t (m < size: the first m, then
// zeros).
template <typename scalar_t, typename acc_t>
[[gnu::always_inline]] inline Vectorized<acc_t> load_acc(const scalar_t* p, int64_t m) {
  using Vec = Vectorized<acc_t>;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return m == Vec::size() ? Vec::loadu(p) : loadu_zero_padded(p, m);
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

}  // namespace
}  // namespace eca_cuda::cpu::CPU_CAPABILITY
