// The channels-last (N, L, C) engine of the CPU kernels: small samples go whole to a
// thread, which sums, gates and rescales one at a time; larger ones are cut into (row
// sub-chunk, channel block) items, each thread sums a balanced range of them, and once the
// gates are known rescales an even share of whole rows, mostly the ones it summed.
#pragma once

#ifndef CPU_CAPABILITY  // compiled once per instruction set, after the target pragma
#error "a part of the CPU kernels: included by eca_kernels_cpu_impl.h only"
#endif

namespace eca_cuda::cpu::CPU_CAPABILITY {
namespace {

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

}  // namespace
}  // namespace eca_cuda::cpu::CPU_CAPABILITY
