// CUDA bindings of the E-step operators: the same checks as the CPU bindings, then the torch-free
// launchers of estep_cuda.cu on the current stream.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/library.h"

#include "common/cuda_types.h"
#include "estep/estep_cuda.h"
#include "estep/estep_checks.h"

namespace emseg {
namespace estep {
namespace {

at::Tensor em_fixed_cuda(const at::Tensor& scores_in, const at::Tensor& present_in, double fg_bias,
                         double bg_bias, bool suppress_absent) {
  validate_em_fixed(scores_in, present_in, fg_bias, bg_bias);
  const c10::cuda::CUDAGuard guard(scores_in.device());
  const at::Tensor scores = scores_in.contiguous();
  const at::Tensor present = present_in.contiguous();
  const int64_t n = scores.size(0), c = scores.size(1), h = scores.size(2), w = scores.size(3);
  at::Tensor labels = at::empty({n, h, w}, scores.options().dtype(at::kLong));
  if (labels.numel() == 0) return labels;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "em_fixed_cuda", [&] {
    launch_em_fixed(cuda_ptr<scalar_t>(scores), present.data_ptr<bool>(), n, c, h * w, fg_bias,
                    bg_bias, suppress_absent, labels.data_ptr<int64_t>(), stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return labels;
}

std::tuple<at::Tensor, at::Tensor> em_adapt_cuda(const at::Tensor& scores_in,
                                                 const at::Tensor& present_in, double fg_portion,
                                                 double bg_portion, int64_t max_iter) {
  validate_em_adapt(scores_in, present_in, fg_portion, bg_portion, max_iter);
  const c10::cuda::CUDAGuard guard(scores_in.device());
  const at::Tensor scores = scores_in.contiguous();
  const at::Tensor present = present_in.contiguous();
  const int64_t n = scores.size(0), c = scores.size(1), h = scores.size(2), w = scores.size(3);
  const int64_t pixels = h * w;
  at::Tensor labels = at::empty({n, h, w}, scores.options().dtype(at::kLong));
  at::Tensor biases = at::empty({n, c}, scores.options().dtype(at::kDouble));
  if (n == 0) return {labels, biases};
  // Scratch: per-pixel keys of the radix select and 2 * C entries of per-class solver state, one
  // row per image.
  at::Tensor keys = at::empty({n, pixels}, scores.options().dtype(at::kLong));
  at::Tensor state = at::empty({n, 2 * c}, scores.options().dtype(at::kLong));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "em_adapt_cuda", [&] {
    launch_em_adapt(cuda_ptr<scalar_t>(scores), present.data_ptr<bool>(), n, c, pixels, fg_portion,
                    bg_portion, max_iter, biases.data_ptr<double>(),
                    reinterpret_cast<uint64_t*>(keys.data_ptr<int64_t>()),
                    state.data_ptr<int64_t>(), labels.data_ptr<int64_t>(), stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {labels, biases};
}

}  // namespace

EMSEG_CUDA_LIBRARY_IMPL(m) {
  m.impl("em_fixed", &em_fixed_cuda);
  m.impl("em_adapt", &em_adapt_cuda);
}

}  // namespace estep
}  // namespace emseg
