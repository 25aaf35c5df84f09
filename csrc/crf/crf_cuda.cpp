// CUDA binding of dense_crf (torch-facing; the kernels are in crf_cuda.cu and lattice_cuda.cu).
// Per image: two lattices built once, then per iteration one filtering launch sequence per kernel
// and one mean-field launch; the data stay on the device throughout.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/library.h"

#include <optional>
#include <vector>

#include "common/interrupt.h"
#include "crf/crf.h"
#include "crf/crf_checks.h"
#include "crf/crf_features.h"
#include "crf/crf_cuda.h"
#include "lattice/lattice_cuda_torch.h"

namespace emseg {
namespace {

at::Tensor dense_crf_cuda(const at::Tensor& unary_in, const at::Tensor& image_in,
                          const at::Tensor& compat_in, c10::ArrayRef<double> pos_std,
                          c10::ArrayRef<double> bi_std, int64_t iterations,
                          const std::optional<at::Tensor>& sizes, bool logits) {
  check_cuda_binding_device(unary_in, "unary");
  const DenseCrfPlan plan =
      check_dense_crf_inputs(unary_in, image_in, compat_in, pos_std, bi_std, iterations, sizes);
  const c10::cuda::CUDAGuard guard(unary_in.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t N = unary_in.size(0), L = unary_in.size(1);
  const auto fopts = unary_in.options().dtype(at::kFloat);
  const at::Tensor compat = compat_in.to(unary_in.device(), at::kFloat).contiguous();
  at::Tensor out = at::zeros_like(unary_in, at::MemoryFormat::Contiguous);
  const int W = lattice::chunk_width(L);
  const int64_t C = (L + W - 1) / W;

  for (int64_t n = 0; n < N; ++n) {
    const int64_t h = plan.height[n], w = plan.width[n];
    const int64_t P = h * w;
    if (P == 0) continue;
    // Energies in the chunked layout [C][P][W], the lowest of each pixel shifted to 0; padding
    // lanes get an infinite energy (Q = 0 there). See crf.h.
    at::Tensor U = at::full({P, C * W}, crf::kPadEnergy, fopts);
    at::Tensor u_plain = unary_in[n].slice(1, 0, h).slice(2, 0, w).reshape({L, P}).t();
    const at::Tensor energy = logits ? u_plain.neg() : u_plain;
    U.slice(1, 0, L).copy_(energy - energy.amin(1, /*keepdim=*/true));
    U = U.view({P, C, W}).permute({1, 0, 2}).contiguous();
    at::Tensor Q = at::zeros({C, P, W}, fopts);

    crf::MeanFieldArgs args{};
    args.P = P;
    args.L = L;
    args.C = C;
    args.unary = U.data_ptr<float>();
    args.q = Q.data_ptr<float>();

    std::vector<lattice::CudaLattice> lat;
    std::vector<at::Tensor> keep;  // buffers the raw pointers in args refer to
    std::vector<float*> in_ptr, out_ptr, scratch_ptr;
    int used = 0;
    for (int k = 0; k < crf::kMaxKernels && iterations > 0; ++k) {
      if (!plan.active[k]) continue;
      at::Tensor f = k == 0 ? crf_features(image_in[n], h, w, pos_std, false)
                            : crf_features(image_in[n], h, w, bi_std, true);
      lat.emplace_back(f);
      const lattice::CudaLattice& l = lat.back();
      // The response to all-ones, then crf::symmetric_norm per pixel, as on the CPU.
      const at::Tensor response = l.filter(at::ones({P, 1}, fopts));
      at::Tensor norm = at::empty({P}, fopts);
      C10_CUDA_CHECK(crf::cuda::symmetric_norm(response.data_ptr<float>(), P,
                                               norm.data_ptr<float>(), stream));
      at::Tensor next_in = at::zeros({C, P, W}, fopts);
      at::Tensor sliced = at::empty({C, P, W}, fopts);
      at::Tensor scratch = at::empty({2 * C * (int64_t(l.num_vertices()) + 1) * W}, fopts);
      args.norm[used] = norm.data_ptr<float>();
      args.sliced[used] = sliced.data_ptr<float>();
      args.next_in[used] = next_in.data_ptr<float>();
      args.compat[used] = compat[k].data_ptr<float>();
      if (plan.diagonal[k]) {
        at::Tensor dg = at::zeros({C * W}, fopts);
        dg.slice(0, 0, L).copy_(at::diag(compat[k]));
        args.diag[used] = dg.data_ptr<float>();
        keep.push_back(dg);
      }
      in_ptr.push_back(next_in.data_ptr<float>());
      out_ptr.push_back(sliced.data_ptr<float>());
      scratch_ptr.push_back(scratch.data_ptr<float>());
      keep.insert(keep.end(), {norm, next_in, sliced, scratch});
      ++used;
    }

    args.num_kernels = 0;  // Q = softmax(-U) and the first lattice inputs
    C10_CUDA_CHECK(crf::cuda::mean_field(args, W, stream));
    args.num_kernels = used;
    for (int64_t it = 0; it < iterations && used > 0; ++it) {
      check_interrupt();
      for (int s = 0; s < used; ++s) {
        lat[s].filter_chunks(in_ptr[s], out_ptr[s], W, C, scratch_ptr[s]);
      }
      C10_CUDA_CHECK(crf::cuda::mean_field(args, W, stream));
    }
    at::Tensor q_plain = Q.permute({1, 0, 2}).reshape({P, C * W}).slice(1, 0, L);
    out[n].slice(1, 0, h).slice(2, 0, w).copy_(q_plain.t().reshape({L, h, w}));
  }
  return out;
}

}  // namespace
}  // namespace emseg

EMSEG_CUDA_LIBRARY_IMPL(m) { m.impl("dense_crf", &emseg::dense_crf_cuda); }
