#include <cuda_runtime.h>

#include <cstdio>
extern __shared__ __align__(16) unsigned char dyn[];
__global__ void k_mix(float* out, int n) {
  __shared__ double stat[256];
  float* buf = reinterpret_cast<float*>(dyn);
  for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = float(i);
  stat[threadIdx.x] = -1.0;
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = buf[i];
  out[n + threadIdx.x] = float(stat[threadIdx.x]);
}
int main() {
  const int n = 1024;
  float h[n + 256];
  float* d;
  cudaMalloc(&d, (n + 256) * 4);
  k_mix<<<1, 256, n * 4>>>(d, n);
  cudaMemcpy(h, d, (n + 256) * 4, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int i = 0; i < n; ++i) bad += h[i] != float(i);
  int bad2 = 0;
  for (int i = 0; i < 256; ++i) bad2 += h[n + i] != -1.f;
  printf("dyn bad=%d static bad=%d (h[0]=%g h[1]=%g s0=%g s1=%g)\n", bad, bad2, h[0], h[1], h[n],
         h[n + 1]);
}
