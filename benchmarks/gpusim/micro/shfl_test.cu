#include <cuda_runtime.h>

#include <cstdio>
__global__ void k_float(const float* x, float* out) {
  float v = x[threadIdx.x];
  for (int w = 16; w >= 1; w /= 2) v += __shfl_down_sync(0xffffffffu, v, w);
  out[threadIdx.x] = v;
}
__global__ void k_double(const float* x, double* out) {
  double v = x[threadIdx.x];
  for (int w = 16; w >= 1; w /= 2) v += __shfl_down_sync(0xffffffffu, v, w);
  out[threadIdx.x] = v;
}
__global__ void k_one(const float* x, float* out) {  // single shfl, no accumulation
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, x[threadIdx.x], 1);
}
int main() {
  float hx[32];
  for (int i = 0; i < 32; ++i) hx[i] = float(i + 1);
  float *dx, *df;
  double* dd;
  cudaMalloc(&dx, 128);
  cudaMalloc(&df, 128);
  cudaMalloc(&dd, 256);
  cudaMemcpy(dx, hx, 128, cudaMemcpyHostToDevice);
  float hf[32];
  double hd[32];
  k_one<<<1, 32>>>(dx, df);
  cudaMemcpy(hf, df, 128, cudaMemcpyDeviceToHost);
  printf("one: ");
  for (int i = 0; i < 32; ++i) printf("%g ", hf[i]);
  printf("\n");
  k_float<<<1, 32>>>(dx, df);
  cudaMemcpy(hf, df, 128, cudaMemcpyDeviceToHost);
  printf("float sum lane0=%g (expect 528)\n", hf[0]);
  k_double<<<1, 32>>>(dx, dd);
  cudaMemcpy(hd, dd, 256, cudaMemcpyDeviceToHost);
  printf("double sum lane0=%g (expect 528)\n", hd[0]);
}
