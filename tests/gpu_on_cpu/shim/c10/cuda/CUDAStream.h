#pragma once
// The current CUDA stream, for the HIP-CPU build: HIP-CPU's null stream.
#include <cuda_runtime.h>

namespace c10 {
namespace cuda {

struct CUDAStream {
  operator cudaStream_t() const { return nullptr; }
};

inline CUDAStream getCurrentCUDAStream(int device = -1) { return {}; }

}  // namespace cuda
}  // namespace c10
