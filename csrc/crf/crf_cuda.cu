// CUDA mean-field update: one thread per pixel, running crf.h's per-pixel function (the same code
// the CPU kernel loops over). Torch-free; the binding is crf_cuda.cpp.
#include <cuda_runtime.h>

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

}  // namespace

cudaError_t mean_field(const MeanFieldArgs& args, int W, cudaStream_t stream) {
  if (args.P == 0) return cudaSuccess;
  constexpr int kThreads = 128;
  const unsigned blocks = static_cast<unsigned>(ceil_div<int64_t>(args.P, kThreads));
  if (W == 4) {
    mean_field_kernel<4><<<blocks, kThreads, 0, stream>>>(args);
  } else {
    mean_field_kernel<8><<<blocks, kThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace crf
}  // namespace emseg
