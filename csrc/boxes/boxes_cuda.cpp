// CUDA bindings of the box operators: the same checks as the CPU bindings, then the torch-free
// launchers of boxes_cuda.cu on the current stream.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/library.h"

#include "boxes/boxes_cuda.h"
#include "boxes/boxes_checks.h"
#include "common/cuda_types.h"

namespace emseg {
namespace boxes {
namespace {

at::Tensor boxes_to_labels_cuda(const at::Tensor& boxes_in, int64_t height, int64_t width,
                                int64_t fill) {
  validate_boxes_to_labels(boxes_in, height, width);
  const c10::cuda::CUDAGuard guard(boxes_in.device());
  const at::Tensor boxes = boxes_in.contiguous();
  const int64_t n = boxes.size(0), num_boxes = boxes.size(1);
  at::Tensor labels = at::empty({n, height, width}, boxes.options().dtype(at::kLong));
  if (labels.numel() == 0) return labels;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "boxes_to_labels_cuda", [&] {
    launch_boxes_to_labels(boxes.data_ptr<scalar_t>(), n, num_boxes, height, width, fill,
                           labels.data_ptr<int64_t>(), stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return labels;
}

at::Tensor bbox_em_fixed_cuda(const at::Tensor& scores_in, const at::Tensor& boxes_in,
                              double fg_bias, double bg_bias, bool suppress_absent) {
  validate_bbox_em_fixed(scores_in, boxes_in, fg_bias, bg_bias);
  const c10::cuda::CUDAGuard guard(scores_in.device());
  const at::Tensor scores = scores_in.contiguous();
  const at::Tensor boxes = boxes_in.contiguous();
  const int64_t n = scores.size(0), c = scores.size(1), h = scores.size(2), w = scores.size(3);
  const int64_t num_boxes = boxes.size(1);
  at::Tensor labels = at::empty({n, h, w}, scores.options().dtype(at::kLong));
  if (labels.numel() == 0) return labels;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "bbox_em_fixed_cuda_boxes", [&] {
    using box_t = scalar_t;
    const box_t* b = boxes.data_ptr<box_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "bbox_em_fixed_cuda", [&] {
      launch_bbox_em_fixed(cuda_ptr<scalar_t>(scores), b, n, c, h, w, num_boxes, fg_bias, bg_bias,
                           suppress_absent, labels.data_ptr<int64_t>(), stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return labels;
}

}  // namespace

EMSEG_CUDA_LIBRARY_IMPL(m) {
  m.impl("boxes_to_labels", &boxes_to_labels_cuda);
  m.impl("bbox_em_fixed", &bbox_em_fixed_cuda);
}

}  // namespace boxes
}  // namespace emseg
