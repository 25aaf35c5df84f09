// CUDA binding of dense_crf and its gradient: the CUDA hooks of the shared driver (crf_driver.h).
// The kernels are in crf_cuda.cu and lattice_cuda.cu; the data stay on the device throughout, and
// the only device-to-host reads are the input checks' and one per lattice (its vertex count).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "common/library.h"
#include "crf/crf.h"
#include "crf/crf_cuda.h"
#include "crf/crf_driver.h"
#include "lattice/lattice_cuda_torch.h"

namespace emseg {
namespace {

struct CudaCrfBackend {
  using Lattice = lattice::CudaLattice;

  // No row layout: one thread per pixel already reads each entry once per chunk.
  static constexpr bool kRows = false;
  static int row_width(int64_t, bool) { return 0; }

  static at::Tensor chunked_energies(const at::Tensor& unary_region, bool logits, int W, int64_t C) {
    return crf::chunked_energies_torch(unary_region, logits, W, C);
  }
  static void write_plain(const at::Tensor& chunks, at::Tensor plain) {
    crf::write_plain_torch(chunks, plain);
  }
  static std::vector<Lattice> build(const std::vector<at::Tensor>& features) {
    std::vector<Lattice> lattices;
    for (const at::Tensor& f : features) lattices.emplace_back(f);
    return lattices;
  }
  static int64_t vertices(const Lattice& lat) { return lat.num_vertices(); }
  static void scale_points(Lattice& lat, const at::Tensor& n) { lat.scale_points(n); }
  // One launch sequence per lattice, all chunks in each launch.
  static void filter(const Lattice* const* lat, int count, const float* const* in,
                     float* const* out, float* const* scratch, int W, int64_t C, bool adjoint) {
    for (int s = 0; s < count; ++s) lat[s]->filter_chunks(in[s], out[s], W, C, scratch[s], adjoint);
  }
  static void symmetric_norm(const float* response, int64_t P, float* norm) {
    C10_CUDA_CHECK(crf::cuda::symmetric_norm(response, P, norm, c10::cuda::getCurrentCUDAStream()));
  }
  static void mean_field(const crf::MeanFieldArgs& args, int W) {
    C10_CUDA_CHECK(crf::cuda::mean_field(args, W, c10::cuda::getCurrentCUDAStream()));
  }
  template <typename F>
  static void for_each_image(int64_t N, const F& f) {
    for (int64_t n = 0; n < N; ++n) f(n);
  }
  static void mean_field_grad(const crf::MeanFieldGradArgs& args, int W) {
    C10_CUDA_CHECK(crf::cuda::mean_field_grad(args, W, c10::cuda::getCurrentCUDAStream()));
  }
};

at::Tensor dense_crf_cuda(const at::Tensor& unary, const at::Tensor& image, const at::Tensor& compat,
                          c10::ArrayRef<double> pos_std, c10::ArrayRef<double> bi_std,
                          int64_t iterations, const std::optional<at::Tensor>& sizes, bool logits) {
  check_cuda_binding_device(unary, "unary");
  const c10::cuda::CUDAGuard guard(unary.device());
  return crf::dense_crf_forward<CudaCrfBackend>(unary, image, compat, pos_std, bi_std, iterations,
                                                sizes, logits);
}

at::Tensor dense_crf_backward_cuda(const at::Tensor& grad, const at::Tensor& unary,
                                   const at::Tensor& image, const at::Tensor& compat,
                                   c10::ArrayRef<double> pos_std, c10::ArrayRef<double> bi_std,
                                   int64_t iterations, const std::optional<at::Tensor>& sizes,
                                   bool logits) {
  check_cuda_binding_device(unary, "unary");
  const c10::cuda::CUDAGuard guard(unary.device());
  return crf::dense_crf_backward<CudaCrfBackend>(grad, unary, image, compat, pos_std, bi_std,
                                                 iterations, sizes, logits);
}

}  // namespace
}  // namespace emseg

EMSEG_CUDA_LIBRARY_IMPL(m) {
  m.impl("dense_crf", &emseg::dense_crf_cuda);
  m.impl("dense_crf_backward", &emseg::dense_crf_backward_cuda);
}
