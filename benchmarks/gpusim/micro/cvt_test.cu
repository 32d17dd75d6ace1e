#include <cuda_runtime.h>

#include <cstdio>
__global__ void k(long long L, float* out, const float* w) {
  out[0] = float(L);
  out[1] = 1.f / float(L);
  out[2] = w[0] * (1.f / float(L));
  out[3] = float(int(L));
}
int main() {
  float* d;
  float* w;
  cudaMalloc(&d, 16);
  cudaMalloc(&w, 4);
  float one = 3.f;
  cudaMemcpy(w, &one, 4, cudaMemcpyHostToDevice);
  float h[4];
  k<<<1, 1>>>(64, d, w);
  cudaMemcpy(h, d, 16, cudaMemcpyDeviceToHost);
  printf("cvt.f32.s64(64)=%g rcp=%g w/L=%g cvt.f32.s32=%g\n", h[0], h[1], h[2], h[3]);
}
