#include <cuda_runtime.h>

#include <cstdio>
// 60 KiB of dynamic shared memory a block: one block per SM of 100 KiB, whatever the threads,
// registers or static arrays allow (the simulator prints what limits its blocks per SM).
extern __shared__ __align__(16) unsigned char dyn[];
__global__ void k_big(float* out) {
  float* buf = reinterpret_cast<float*>(dyn);
  buf[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}
int main() {
  const int blocks = 92, threads = 128, bytes = 60 * 1024;
  float* d;
  cudaMalloc(&d, blocks * threads * 4);
  cudaFuncSetAttribute(k_big, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  k_big<<<blocks, threads, bytes>>>(d);
  float h[blocks * threads];
  cudaMemcpy(h, d, sizeof(h), cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int i = 0; i < blocks * threads; ++i) bad += h[i] != float(threads - 1 - i % threads);
  printf("occupancy bad=%d\n", bad);
}
