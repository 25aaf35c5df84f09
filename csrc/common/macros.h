#pragma once
// Host/device qualifiers so the per-element math is written once for the CPU and CUDA kernels.
#if defined(__CUDACC__)
#define EMSEG_HD __host__ __device__ __forceinline__
#define EMSEG_DEVICE __device__ __forceinline__
#else
#define EMSEG_HD inline
#define EMSEG_DEVICE inline
#endif

#include <cstdint>

namespace emseg {

// Ceil division for launch configurations and tiling.
template <typename T>
EMSEG_HD T ceil_div(T a, T b) {
  return (a + b - 1) / b;
}

}  // namespace emseg
