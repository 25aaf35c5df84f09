// CUDA mean-field update, its gradient and the symmetric normalisation: one thread per pixel, running crf.h's
// per-pixel functions (the same code the CPU kernel loops over). Torch-free; the binding is
// crf_cuda.cpp.
#include <cuda_runtime.h>

#include "common/cuda_launch.h"
#include "crf/crf.h"
#include "crf/crf_cuda.h"

namespace emseg {
namespace crf {
namespace cuda {
namespace {

template <int W>
__global__ void mean_field_kernel(MeanFieldArgs args) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= args.P) return;
  mean_field_pixel<W>(i, args);
}

template <int W>
__global__ void mean_field_grad_kernel(MeanFieldGradArgs args) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= args.P) return;
  mean_field_pixel_grad<W>(i, args);
}

__global__ void symmetric_norm_kernel(const float* response, int64_t P, float* norm) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < P) norm[i] = crf::symmetric_norm(response[i]);
}

constexpr int kThreads = 128;

}  // namespace

cudaError_t symmetric_norm(const float* response, int64_t P, float* norm, cudaStream_t stream) {
  if (P == 0) return cudaSuccess;
  symmetric_norm_kernel<<<blocks_for(P, kThreads), kThreads, 0, stream>>>(response, P, norm);
  return cudaGetLastError();
}

cudaError_t mean_field(const MeanFieldArgs& args, int W, cudaStream_t stream) {
  if (args.P == 0) return cudaSuccess;
  const unsigned blocks = blocks_for(args.P, kThreads);
  if (W == 4) {
    mean_field_kernel<4><<<blocks, kThreads, 0, stream>>>(args);
  } else {
    mean_field_kernel<8><<<blocks, kThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

cudaError_t mean_field_grad(const MeanFieldGradArgs& args, int W, cudaStream_t stream) {
  if (args.P == 0) return cudaSuccess;
  const unsigned blocks = blocks_for(args.P, kThreads);
  if (W == 4) {
    mean_field_grad_kernel<4><<<blocks, kThreads, 0, stream>>>(args);
  } else {
    mean_field_grad_kernel<8><<<blocks, kThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace crf
}  // namespace emseg
