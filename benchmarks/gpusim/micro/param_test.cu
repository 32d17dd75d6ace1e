#include <cuda_runtime.h>

#include <cstdio>
struct S {
  long long v[16];
};
__global__ void k_param(S s, int i, long long* out) {
  out[threadIdx.x] = s.v[(i + threadIdx.x) & 15];  // dynamic index into a by-value struct
}
int main() {
  S s;
  for (int i = 0; i < 16; ++i) s.v[i] = 100 + i;
  long long* d;
  cudaMalloc(&d, 16 * 8);
  long long h[16];
  k_param<<<1, 16>>>(s, 3, d);
  cudaMemcpy(h, d, 16 * 8, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int t = 0; t < 16; ++t) bad += h[t] != 100 + ((3 + t) & 15);
  printf("param indirect bad=%d h[0]=%lld (expect 103)\n", bad, h[0]);
}
