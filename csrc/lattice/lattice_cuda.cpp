// CUDA binding of permutohedral_filter (torch-facing; the kernels are in lattice_cuda.cu).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/library.h"

#include "lattice/lattice_cuda_torch.h"
#include "lattice/lattice_checks.h"

namespace emseg {
namespace {

// The filter or (adjoint) its transpose, as permutohedral_cpu in lattice_cpu.cpp.
at::Tensor permutohedral_cuda(const at::Tensor& values_in, const at::Tensor& features_in,
                              bool normalize, bool adjoint) {
  check_cuda_binding_device(values_in, "values");
  check_permutohedral_inputs(values_in, features_in);
  const c10::cuda::CUDAGuard guard(values_in.device());
  const bool batched = values_in.dim() == 3;
  at::Tensor values = (batched ? values_in : values_in.unsqueeze(0)).contiguous();
  at::Tensor features = (batched ? features_in : features_in.unsqueeze(0)).contiguous();
  const int64_t N = values.size(0), P = values.size(1), V = values.size(2);
  at::Tensor out = at::empty_like(values);
  if (P == 0 || V == 0) return batched ? out : out.squeeze(0);
  for (int64_t n = 0; n < N; ++n) {
    const lattice::CudaLattice lat(features[n]);
    // x * (1 / norm), as the CPU binding computes it.
    const at::Tensor inv_norm =
        normalize ? at::reciprocal(lat.filter(at::ones({P, 1}, values.options()))) : at::Tensor();
    at::Tensor r = lat.filter(normalize && adjoint ? values[n] * inv_norm : values[n], adjoint);
    if (normalize && !adjoint) r = r * inv_norm;
    out[n].copy_(r);
  }
  return batched ? out : out.squeeze(0);
}

at::Tensor permutohedral_filter_cuda(const at::Tensor& values, const at::Tensor& features,
                                     bool normalize) {
  return permutohedral_cuda(values, features, normalize, /*adjoint=*/false);
}

at::Tensor permutohedral_filter_backward_cuda(const at::Tensor& grad, const at::Tensor& features,
                                              bool normalize) {
  return permutohedral_cuda(grad, features, normalize, /*adjoint=*/true);
}

}  // namespace
}  // namespace emseg

EMSEG_CUDA_LIBRARY_IMPL(m) {
  m.impl("permutohedral_filter", &emseg::permutohedral_filter_cuda);
  m.impl("permutohedral_filter_backward", &emseg::permutohedral_filter_backward_cuda);
}
