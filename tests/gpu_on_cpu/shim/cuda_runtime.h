#pragma once
// Stand-in for the CUDA runtime header in the HIP-CPU build: the CUDA names emseg's kernels and
// launchers use, mapped onto HIP-CPU, which runs kernels on the CPU.
#include <cstring>  // HIP-CPU uses std::memcpy without including it

#include <hip/hip_runtime.h>

using cudaStream_t = hipStream_t;
using cudaError_t = hipError_t;
constexpr hipError_t cudaSuccess = hipSuccess;

inline cudaError_t cudaGetLastError() { return hipGetLastError(); }
inline const char* cudaGetErrorString(cudaError_t error) { return hipGetErrorString(error); }

// HIP-CPU's qualifiers make every device function a SIMD-clone set (__device__) and flatten each
// kernel (__global__), which multiplies compile time; without NDEBUG it also drops the `inline`
// of __forceinline__, so header functions would be defined once per object. Plain C++ instead.
#undef __device__
#define __device__
#undef __global__
#define __global__
#undef __forceinline__
#define __forceinline__ inline
