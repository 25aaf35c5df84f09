#pragma once
// The torch library emseg's kernels register in: torch.ops.emseg, CPU kernels under the CPU key
// and the CUDA bindings under the CUDA key. Builds of the same sources for checks on the CPU
// (tests/gpu_on_cpu) register beside the real extension under another name, EMSEG_LIBRARY:
// - the HIP-CPU build (EMSEG_HIP_CPU) runs the CUDA kernels on the CPU, so it registers the CUDA
//   bindings under the CPU key of torch.ops.emseg_hipcpu;
// - the build without host SIMD (EMSEG_NO_HOST_SIMD) registers the CPU kernels as
//   torch.ops.emseg_scalar.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#ifndef EMSEG_LIBRARY
#define EMSEG_LIBRARY emseg
#endif
#if defined(EMSEG_HIP_CPU)
#define EMSEG_CUDA_BINDING_KEY CPU
#else
#define EMSEG_CUDA_BINDING_KEY CUDA
#endif

// TORCH_LIBRARY pastes its namespace argument unexpanded; this expands EMSEG_LIBRARY first.
#define EMSEG_TORCH_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
// Registration blocks of a CPU and of a CUDA binding file.
#define EMSEG_CPU_LIBRARY_IMPL(m) TORCH_LIBRARY_IMPL(EMSEG_LIBRARY, CPU, m)
#define EMSEG_CUDA_LIBRARY_IMPL(m) TORCH_LIBRARY_IMPL(EMSEG_LIBRARY, EMSEG_CUDA_BINDING_KEY, m)

namespace emseg {

// The CUDA bindings' own device check (the dispatcher picks them when any argument is on CUDA).
inline void check_cuda_binding_device(const at::Tensor& t, const char* name) {
#if defined(EMSEG_HIP_CPU)
  const bool ok = t.is_cpu();
#else
  const bool ok = t.is_cuda();
#endif
  TORCH_CHECK(ok, name, " must be a CUDA tensor for the CUDA kernel, got ", t.device());
}

}  // namespace emseg
