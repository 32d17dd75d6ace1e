// The simulator's application: one case of run.py on one shape, through the extension's own
// launch plan (csrc/cuda/eca_launch.cuh) with a plain <<<>>> launcher, plus the baselines the
// cases are compared with (a 16-byte copy and a 16-byte add), in the same binary and the same
// simulated GPU. Inputs come from files run.py writes, outputs go to files run.py checks
// against the CPU operator; the simulator reports each kernel's cycles.
//
//   eca_sim CASE DTYPE LAYOUT N C L k TILE_BUDGET SMS DIR
//   CASE: copy | add | forward | tail | backward;  DTYPE: float32 | bfloat16;
//   LAYOUT: contiguous | channels_last;  DIR: x.bin, weight.bin (float32), residual.bin
//   (tail), grad_y.bin, pooled.bin, gate.bin (backward, float32) in; y.bin, pooled.bin,
//   gate.bin (copy, add, forward, tail) or grad_x.bin, grad_weight.bin (backward) out.
#include <c10/util/BFloat16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/eca_launch.cuh"

using namespace eca_cuda;

namespace {

struct SimLauncher {
  template <typename... Params, typename... Args>
  void operator()(const char* name, void (*kernel)(Params...), const LaunchConfig& config,
                  Args... args) {
    if (config.shared_bytes > 48 * 1024) {
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(config.shared_bytes));
    }
    kernel<<<config.grid, config.block, config.shared_bytes>>>(args...);
    const cudaError_t error = cudaDeviceSynchronize();
    std::printf("ECA_SIM launch %s grid=%u block=%ux%u shared=%zu: %s\n", name, config.grid.x,
                config.block.x, config.block.y, config.shared_bytes, cudaGetErrorString(error));
    if (error != cudaSuccess) std::exit(1);
  }
};

// The baselines: grid-stride loops over 16-byte packs, as many blocks as the ECA kernels may use,
// with the tile kernels' accesses (load_once, store_once: no L1 allocation), so that both sides
// take the same path through the memory system.
__global__ void copy16_kernel(const uint4* __restrict__ x, uint4* __restrict__ y, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    eca_cuda::store_once(y + i, eca_cuda::load_once(x + i));
  }
}

template <typename scalar_t>
__global__ void add16_kernel(const uint4* __restrict__ a, const uint4* __restrict__ b,
                             uint4* __restrict__ y, int64_t n) {
  constexpr int kPer = 16 / sizeof(scalar_t);
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    uint4 u = eca_cuda::load_once(a + i), v = eca_cuda::load_once(b + i), w;
    const scalar_t* p = reinterpret_cast<const scalar_t*>(&u);
    const scalar_t* q = reinterpret_cast<const scalar_t*>(&v);
    scalar_t* r = reinterpret_cast<scalar_t*>(&w);
#pragma unroll
    for (int j = 0; j < kPer; ++j) r[j] = scalar_t(float(p[j]) + float(q[j]));
    eca_cuda::store_once(y + i, w);
  }
}

std::vector<char> read_file(const std::string& path, size_t bytes) {
  std::vector<char> data(bytes);
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f || std::fread(data.data(), 1, bytes, f) != bytes) {
    std::fprintf(stderr, "eca_sim: cannot read %zu bytes from %s\n", bytes, path.c_str());
    std::exit(2);
  }
  std::fclose(f);
  return data;
}

template <typename T>
T* to_device(const std::string& path, size_t count) {
  const std::vector<char> host = read_file(path, count * sizeof(T));
  T* device = nullptr;
  cudaMalloc(&device, count * sizeof(T));
  cudaMemcpy(device, host.data(), count * sizeof(T), cudaMemcpyHostToDevice);
  return device;
}

template <typename T>
T* device_buffer(size_t count) {
  T* device = nullptr;
  cudaMalloc(&device, std::max<size_t>(count, 1) * sizeof(T));
  cudaMemset(device, 0xff, std::max<size_t>(count, 1) * sizeof(T));  // NaN: unwritten shows
  return device;
}

template <typename T>
void to_file(const T* device, size_t count, const std::string& path) {
  std::vector<char> host(count * sizeof(T));
  cudaMemcpy(host.data(), device, host.size(), cudaMemcpyDeviceToHost);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(host.data(), 1, host.size(), f) != host.size()) {
    std::fprintf(stderr, "eca_sim: cannot write %s\n", path.c_str());
    std::exit(2);
  }
  std::fclose(f);
}

// The launch plan's budgets and SMs; kernels from before the pair budget (run.py --compare
// with an older commit) have no such member and plan with the tile budget alone.
struct Plan {
  int64_t tile_budget, pair_budget, sms;
};
template <typename Args>
auto set_pair_budget(Args& a, int64_t bytes, int) -> decltype(a.pair_budget = bytes, void()) {
  a.pair_budget = bytes;
}
template <typename Args>
void set_pair_budget(Args&, int64_t, long) {}
template <typename Args>
void set_plan(Args& a, const Plan& plan) {
  a.tile_budget = plan.tile_budget, a.sms = plan.sms;
  set_pair_budget(a, plan.pair_budget, 0);
}

template <typename scalar_t>
int run(const std::string& what, Layout layout, int64_t N, int64_t C, int64_t L, int64_t k,
        const Plan& plan, const std::string& dir) {
  using acc_t = float;
  const size_t numel = size_t(N * C * L), NC = size_t(N * C);
  const int64_t packs = int64_t(numel * sizeof(scalar_t) / 16);
  const LaunchConfig baseline = threads_for(packs, kMaxBlocks);
  scalar_t* x = to_device<scalar_t>(dir + "/x.bin", numel);
  SimLauncher launch;
  if (what == "copy" || what == "add") {
    scalar_t* y = device_buffer<scalar_t>(numel);
    if (what == "copy") {
      launch("copy16_kernel", copy16_kernel, baseline, static_cast<const uint4*>((void*)x),
             static_cast<uint4*>((void*)y), packs);
    } else {
      scalar_t* b = to_device<scalar_t>(dir + "/residual.bin", numel);
      launch("add16_kernel", add16_kernel<scalar_t>, baseline, static_cast<const uint4*>((void*)x),
             static_cast<const uint4*>((void*)b), static_cast<uint4*>((void*)y), packs);
    }
    to_file(y, numel, dir + "/y.bin");
    return 0;
  }
  const acc_t* weight = to_device<acc_t>(dir + "/weight.bin", size_t(k));
  if (what == "forward" || what == "tail") {
    ForwardArgs<scalar_t, acc_t> a{};
    a.x = x;
    a.weight = weight;
    a.y = device_buffer<scalar_t>(numel);
    a.pooled = device_buffer<acc_t>(NC);
    a.gate = device_buffer<acc_t>(NC);
    a.N = N, a.C = C, a.L = L, a.k = k;
    a.mode = PaddingMode::Zeros;
    a.layout = layout;
    set_plan(a, plan);
    if (what == "tail") {  // ResNet's block tail: relu(x * gate + residual)
      a.residual = to_device<scalar_t>(dir + "/residual.bin", numel);
      a.activation = Activation::ReLU;
    }
    launch_forward(launch, a);
    to_file(a.y, numel, dir + "/y.bin");
    to_file(a.pooled, NC, dir + "/pooled.bin");
    to_file(a.gate, NC, dir + "/gate.bin");
    return 0;
  }
  if (what == "backward") {
    BackwardArgs<scalar_t, acc_t> b{};
    b.grad_y = to_device<scalar_t>(dir + "/grad_y.bin", numel);
    b.x = x;
    b.weight = weight;
    b.pooled = to_device<acc_t>(dir + "/pooled.bin", NC);
    b.gate = to_device<acc_t>(dir + "/gate.bin", NC);
    b.grad_x = device_buffer<scalar_t>(numel);
    b.grad_weight = device_buffer<acc_t>(size_t(k));
    b.dz = device_buffer<acc_t>(NC);
    b.shift = device_buffer<acc_t>(NC);
    b.weight_grad_partial = device_buffer<acc_t>(size_t(k * weight_grad_chunks(N * C)));
    b.N = N, b.C = C, b.L = L, b.k = k;
    b.mode = PaddingMode::Zeros;
    b.layout = layout;
    set_plan(b, plan);
    launch_backward(launch, b);
    to_file(b.grad_x, numel, dir + "/grad_x.bin");
    to_file(b.grad_weight, size_t(k), dir + "/grad_weight.bin");
    return 0;
  }
  std::fprintf(stderr, "eca_sim: unknown case %s\n", what.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 12) {
    std::fprintf(stderr,
                 "usage: eca_sim CASE DTYPE LAYOUT N C L k TILE_BUDGET SMS DIR PAIR_BUDGET\n");
    return 2;
  }
  const std::string what = argv[1], dtype = argv[2], layout_name = argv[3], dir = argv[10];
  const Layout layout =
      layout_name == "channels_last" ? Layout::ChannelsLast : Layout::ChannelsFirst;
  const int64_t N = std::atoll(argv[4]), C = std::atoll(argv[5]), L = std::atoll(argv[6]),
                k = std::atoll(argv[7]);
  const Plan plan{std::atoll(argv[8]), std::atoll(argv[11]), std::atoll(argv[9])};
  if (dtype == "float32") return run<float>(what, layout, N, C, L, k, plan, dir);
  if (dtype == "bfloat16") return run<c10::BFloat16>(what, layout, N, C, L, k, plan, dir);
  std::fprintf(stderr, "eca_sim: unknown dtype %s\n", dtype.c_str());
  return 2;
}
