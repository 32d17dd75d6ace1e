#include <cuda_runtime.h>

#include <cstdio>
extern __shared__ __align__(16) unsigned char dyn[];
__global__ void k_generic(const float* x, float* out, int use_shared, int n) {
  float* buf = reinterpret_cast<float*>(dyn);
  for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = x[i] * 2.f;
  __syncthreads();
  const float* p = use_shared ? buf : x;  // generic pointer
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = p[i];
}
__global__ void k_dyn(const float* x, float* out, int n) {  // direct shared loads
  float* buf = reinterpret_cast<float*>(dyn);
  for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = x[i] * 2.f;
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = buf[n - 1 - i];
}
int main() {
  const int n = 512;
  float hx[n], ho[n];
  for (int i = 0; i < n; ++i) hx[i] = float(i + 1);
  float *dx, *dout;
  cudaMalloc(&dx, n * 4);
  cudaMalloc(&dout, n * 4);
  cudaMemcpy(dx, hx, n * 4, cudaMemcpyHostToDevice);
  k_dyn<<<1, 128, n * 4>>>(dx, dout, n);
  cudaMemcpy(ho, dout, n * 4, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int i = 0; i < n; ++i) bad += ho[i] != 2.f * hx[n - 1 - i];
  printf("dyn direct bad=%d (o[0]=%g)\n", bad, ho[0]);
  k_generic<<<1, 128, n * 4>>>(dx, dout, 1, n);
  cudaMemcpy(ho, dout, n * 4, cudaMemcpyDeviceToHost);
  bad = 0;
  for (int i = 0; i < n; ++i) bad += ho[i] != 2.f * hx[i];
  printf("generic->shared bad=%d (o[0]=%g o[1]=%g)\n", bad, ho[0], ho[1]);
  k_generic<<<1, 128, n * 4>>>(dx, dout, 0, n);
  cudaMemcpy(ho, dout, n * 4, cudaMemcpyDeviceToHost);
  bad = 0;
  for (int i = 0; i < n; ++i) bad += ho[i] != hx[i];
  printf("generic->global bad=%d\n", bad);
}
