// eca_forward / eca_backward of the CUDA kernels, run on the CPU: csrc/cuda/eca_launch.cuh's
// launch plan, the one the extension runs, with a Launcher that runs each launch through the
// emulation of cuda_emulation.h. A C API, for ctypes (tests/test_cuda_emulated.py) and for
// sanitize_cases.cpp.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cuda_emulation.h"
// The device code, after the stand-ins.
#include "cuda/eca_launch.cuh"

namespace {

std::string last_error;
std::set<std::string> launched;  // kernel names, for the test that every kernel ran
std::string launched_list;

// Stream capture, as a CUDA graph records a stream: while capturing, each launch is recorded
// with its arguments (by value) and runs only at replay; the op's workspaces live until the
// next capture. What the host reads between launches at capture time is nothing the kernels
// wrote, so a plan that depended on it would replay wrongly.
bool capturing = false;
std::vector<std::function<void()>> captured;
std::string captured_list;  // kernel names in launch order
std::vector<std::shared_ptr<void>> captured_workspaces;

struct EmulatedLauncher {
  eca_emu::Options options;

  template <typename... Params, typename... Args>
  void operator()(const char* name, void (*kernel)(Params...), const eca_cuda::LaunchConfig& config,
                  Args... args) {
    launched.insert(name);
    eca_emu::Options with_shared = options;
    with_shared.dynamic_shared_bytes = config.shared_bytes;
    auto run = [=] {
#if defined(ECA_EMU_COUNT_ACCESSES)
      eca_emu_count_kernel(name);
#endif
      eca_emu::launch(config.grid, config.block, [&] { kernel(args...); }, with_shared);
    };
    if (capturing) {
      captured.push_back(run);
      captured_list += std::string(name) + " ";
    } else {
      run();
    }
  }
};

// A NaN-filled (n,) buffer of exactly n elements, so AddressSanitizer sees a step past its end.
template <typename T>
std::unique_ptr<T[]> poisoned(int64_t n) {
  std::unique_ptr<T[]> p(new T[n]);
  std::fill(p.get(), p.get() + n, std::numeric_limits<T>::quiet_NaN());
#if defined(ECA_EMU_COUNT_ACCESSES)
  eca_emu_count_global(p.get(), sizeof(T) * n);  // a workspace in device memory
#endif
  return p;
}

// The block tail of eca_tail_forward; the plain forward has none.
struct Tail {
  const void* residual = nullptr;
  double scale = 1.0;
  const void* gain = nullptr;
  void* multiplier = nullptr;
  int relu = 0;
  int64_t tile_budget = 0;  // ForwardArgs' single-pass plan: 0, the three launches
  int64_t sms = 1;
};

template <typename scalar_t, typename acc_t>
void forward(const void* x, const void* weight, void* y, void* pooled, void* gate, int64_t N,
             int64_t C, int64_t L, int64_t k, int circular, int channels_last, int64_t max_blocks,
             const eca_emu::Options& options, const Tail& tail = {}) {
  eca_cuda::ForwardArgs<scalar_t, acc_t> args{
      static_cast<const scalar_t*>(x),
      static_cast<const acc_t*>(weight),
      static_cast<scalar_t*>(y),
      static_cast<acc_t*>(pooled),
      static_cast<acc_t*>(gate),
      N,
      C,
      L,
      k,
      circular ? eca_cuda::PaddingMode::Circular : eca_cuda::PaddingMode::Zeros,
      channels_last ? eca_cuda::Layout::ChannelsLast : eca_cuda::Layout::ChannelsFirst,
      max_blocks};
  args.residual = static_cast<const scalar_t*>(tail.residual);
  args.scale = acc_t(tail.scale);
  args.gain = static_cast<const acc_t*>(tail.gain);
  args.multiplier = static_cast<acc_t*>(tail.multiplier);
  args.activation = tail.relu ? eca_cuda::Activation::ReLU : eca_cuda::Activation::None;
  args.tile_budget = tail.tile_budget;
  args.sms = tail.sms;
  EmulatedLauncher launch{options};
  eca_cuda::launch_forward(launch, args);
}

template <typename scalar_t, typename acc_t>
void backward(const void* grad_y, const void* x, const void* weight, const void* pooled,
              const void* gate, void* grad_x, void* grad_weight, int64_t N, int64_t C, int64_t L,
              int64_t k, int circular, int channels_last, int64_t max_blocks,
              const eca_emu::Options& options, const void* relu_out, void* grad_pre,
              int64_t tile_budget, int64_t sms) {
  std::shared_ptr<acc_t[]> dz = poisoned<acc_t>(N * C), shift = poisoned<acc_t>(N * C);
  std::shared_ptr<acc_t[]> chunk_sums = poisoned<acc_t>(k * eca_cuda::weight_grad_chunks(N * C));
  if (capturing) captured_workspaces.insert(captured_workspaces.end(), {dz, shift, chunk_sums});
  eca_cuda::BackwardArgs<scalar_t, acc_t> args{
      static_cast<const scalar_t*>(grad_y),
      static_cast<const scalar_t*>(x),
      static_cast<const acc_t*>(weight),
      static_cast<const acc_t*>(pooled),
      static_cast<const acc_t*>(gate),
      static_cast<scalar_t*>(grad_x),
      static_cast<acc_t*>(grad_weight),
      dz.get(),
      shift.get(),
      N,
      C,
      L,
      k,
      circular ? eca_cuda::PaddingMode::Circular : eca_cuda::PaddingMode::Zeros,
      channels_last ? eca_cuda::Layout::ChannelsLast : eca_cuda::Layout::ChannelsFirst,
      max_blocks};
  args.weight_grad_partial = chunk_sums.get();
  args.relu_out = static_cast<const scalar_t*>(relu_out);
  args.grad_pre = static_cast<scalar_t*>(grad_pre);
  args.tile_budget = tile_budget;
  args.sms = sms;
  EmulatedLauncher launch{options};
  eca_cuda::launch_backward(launch, args);
}

// f<scalar_t, acc_t>() for dtype 0 float32, 1 float64, 2 float16, 3 bfloat16; 0, or 1 with
// the reason in last_error.
template <typename F>
int dispatch(int dtype, const F& f) {
  last_error.clear();
  try {
    switch (dtype) {
      case 0:
        f.template operator()<float, float>();
        break;
#ifndef ECA_EMU_FLOAT32_ONLY  // the mutation tests' builds: a quarter of the compile time
      case 1:
        f.template operator()<double, double>();
        break;
      case 2:
        f.template operator()<c10::Half, float>();
        break;
      case 3:
        f.template operator()<c10::BFloat16, float>();
        break;
#endif
      default:
        last_error = "dtype " + std::to_string(dtype) + " is not built";
        return 1;
    }
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
  return 0;
}

eca_emu::Options options_for(int shuffle_seed) {
  return {shuffle_seed >= 0, static_cast<unsigned>(shuffle_seed)};
}

}  // namespace

extern "C" {

// The arguments of eca_cuda::ForwardArgs; x and y are (N, C, L), or (N, L, C) when
// channels_last; shuffle_seed < 0 runs the blocks in index order.
int eca_emu_forward(int dtype, const void* x, const void* weight, void* y, void* pooled, void* gate,
                    int64_t N, int64_t C, int64_t L, int64_t k, int circular, int channels_last,
                    int64_t max_blocks, int shuffle_seed) {
  return dispatch(dtype, [&]<typename scalar_t, typename acc_t>() {
    forward<scalar_t, acc_t>(x, weight, y, pooled, gate, N, C, L, k, circular, channels_last,
                             max_blocks, options_for(shuffle_seed));
  });
}

// eca_emu_forward with the block tail of eca_cuda::ForwardArgs: residual (x's layout), gain
// (one accumulation-dtype value) and multiplier ((N, C) scratch, needed with scale != 1 or a
// gain) may be null; and the single-pass plan's tile_budget (bytes; 0: the three launches)
// and sms.
int eca_emu_tail_forward(int dtype, const void* x, const void* weight, const void* residual,
                         const void* gain, void* y, void* pooled, void* gate, void* multiplier,
                         int64_t N, int64_t C, int64_t L, int64_t k, int circular,
                         int channels_last, int64_t max_blocks, int shuffle_seed, double scale,
                         int relu, int64_t tile_budget, int64_t sms) {
  const Tail tail{residual, scale, gain, multiplier, relu, tile_budget, sms};
  return dispatch(dtype, [&]<typename scalar_t, typename acc_t>() {
    forward<scalar_t, acc_t>(x, weight, y, pooled, gate, N, C, L, k, circular, channels_last,
                             max_blocks, options_for(shuffle_seed), tail);
  });
}

// The arguments of eca_cuda::BackwardArgs: relu_out (the ReLU tail's output, or null) and
// grad_pre (x's layout, written with relu_out), tile_budget and sms as
// eca_emu_tail_forward's.
int eca_emu_backward(int dtype, const void* grad_y, const void* x, const void* weight,
                     const void* pooled, const void* gate, const void* relu_out, void* grad_x,
                     void* grad_weight, void* grad_pre, int64_t N, int64_t C, int64_t L, int64_t k,
                     int circular, int channels_last, int64_t max_blocks, int shuffle_seed,
                     int64_t tile_budget, int64_t sms) {
  return dispatch(dtype, [&]<typename scalar_t, typename acc_t>() {
    backward<scalar_t, acc_t>(grad_y, x, weight, pooled, gate, grad_x, grad_weight, N, C, L, k,
                              circular, channels_last, max_blocks, options_for(shuffle_seed),
                              relu_out, grad_pre, tile_budget, sms);
  });
}

// The channels per tile that launch_forward's and launch_backward's plan picks (0: the
// multi-launch plans), and the tile's dynamic shared memory in *shared_bytes.
int64_t eca_emu_tile_channels(int dtype, int64_t N, int64_t C, int64_t L, int64_t k,
                              int64_t tile_budget, int64_t pair_budget, int64_t sms,
                              int64_t* shared_bytes) {
  int64_t T = -1;
  dispatch(dtype, [&]<typename scalar_t, typename acc_t>() {
    eca_cuda::ForwardArgs<scalar_t, acc_t> args{};
    args.N = N;
    args.C = C;
    args.L = L;
    args.k = k;
    args.tile_budget = tile_budget;
    args.pair_budget = pair_budget;
    args.sms = sms;
    T = eca_cuda::tile_channels<scalar_t, acc_t>(args);
    *shared_bytes = T > 0 ? eca_cuda::tile_shared_bytes<scalar_t, acc_t>(T, C, L, (k - 1) / 2) : 0;
  });
  return T;
}

// The tile budget the extension computes for a device's shared memory (eca_launch_args.h).
int64_t eca_emu_tile_budget(int64_t optin_per_block) {
  return eca_cuda::tile_budget_for(optin_per_block);
}

// The budget of tiles two blocks an SM hold (eca_launch_args.h).
int64_t eca_emu_pair_budget(int64_t shared_per_sm) {
  return eca_cuda::pair_budget_for(shared_per_sm);
}

// Starts (capture != 0) or ends stream capture: between the two, eca_emu_* calls record their
// launches instead of running them; starting drops the previous recording.
void eca_emu_capture(int capture) {
  if (capture) {
    captured.clear();
    captured_list.clear();
    captured_workspaces.clear();
  }
  capturing = capture != 0;
}

// Runs the recorded launches in order, as a graph replay: 0, or 1 with the reason in
// eca_emu_error.
int eca_emu_replay() {
  last_error.clear();
  try {
    for (const auto& run : captured) run();
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
  return 0;
}

// The recorded launches' kernels, in order, space separated.
const char* eca_emu_captured() {
  return captured_list.c_str();
}

const char* eca_emu_error() {
  return last_error.c_str();
}

// The kernels launched since the library was loaded, by name, space separated.
const char* eca_emu_launched() {
  launched_list.clear();
  for (const std::string& name : launched) launched_list += name + " ";
  return launched_list.c_str();
}

}  // extern "C"
