// CUDA kernels of the box operators: one thread per pixel running the shared per-pixel code of
// boxes.h. Torch-free: compiles with bare nvcc.
//
// The shared code converts scores with static_cast<float>, which __half and __nv_bfloat16 allow
// unless __CUDA_NO_HALF_CONVERSIONS__ / __CUDA_NO_BFLOAT16_CONVERSIONS__ are defined (as
// torch.utils.cpp_extension and torch's own build do). This file includes no torch header, so it
// keeps the conversions whatever flags the build passes.
#undef __CUDA_NO_HALF_CONVERSIONS__
#undef __CUDA_NO_HALF_OPERATORS__
#undef __CUDA_NO_BFLOAT16_CONVERSIONS__
#undef __CUDA_NO_BFLOAT16_OPERATORS__
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "boxes/boxes.h"
#include "boxes/boxes_cuda.h"
#include "common/cuda_launch.h"
#include "estep/estep.h"

namespace emseg {
namespace boxes {
namespace {

template <typename box_t>
__global__ void boxes_to_labels_kernel(const box_t* __restrict__ boxes, int64_t total,
                                       int64_t num_boxes, int64_t height, int64_t width,
                                       int64_t fill, int64_t* __restrict__ labels) {
  const int64_t pixels = height * width;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t image = i / pixels, m = i - image * pixels;
    labels[i] = rect_label(boxes + image * num_boxes * kBoxFields, num_boxes, m / width, m % width,
                           fill);
  }
}

template <typename score_t, typename box_t, typename acc_t>
__global__ void bbox_em_fixed_kernel(const score_t* __restrict__ scores,
                                     const box_t* __restrict__ boxes, int64_t total,
                                     int64_t num_classes, int64_t height, int64_t width,
                                     int64_t num_boxes, acc_t fg_bias, acc_t bg_bias,
                                     bool suppress_absent, int64_t* __restrict__ labels) {
  const int64_t pixels = height * width;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t image = i / pixels, m = i - image * pixels;
    labels[i] = bbox_em_fixed_pixel(scores + image * num_classes * pixels + m, pixels, num_classes,
                                    boxes + image * num_boxes * kBoxFields, num_boxes, m / width,
                                    m % width, fg_bias, bg_bias, suppress_absent);
  }
}

}  // namespace

template <typename box_t>
void launch_boxes_to_labels(const box_t* boxes, int64_t num_images, int64_t num_boxes,
                            int64_t height, int64_t width, int64_t fill, int64_t* labels,
                            cudaStream_t stream) {
  const int64_t total = num_images * height * width;
  if (total == 0) return;
  boxes_to_labels_kernel<box_t><<<elementwise_blocks(total), kThreadsPerBlock, 0, stream>>>(
      boxes, total, num_boxes, height, width, fill, labels);
}

template <typename score_t, typename box_t>
void launch_bbox_em_fixed(const score_t* scores, const box_t* boxes, int64_t num_images,
                          int64_t num_classes, int64_t height, int64_t width, int64_t num_boxes,
                          double fg_bias, double bg_bias, bool suppress_absent, int64_t* labels,
                          cudaStream_t stream) {
  using acc_t = typename estep::AccType<score_t>::type;
  const int64_t total = num_images * height * width;
  if (total == 0) return;
  bbox_em_fixed_kernel<score_t, box_t, acc_t>
      <<<elementwise_blocks(total), kThreadsPerBlock, 0, stream>>>(
          scores, boxes, total, num_classes, height, width, num_boxes,
          static_cast<acc_t>(fg_bias), static_cast<acc_t>(bg_bias), suppress_absent, labels);
}

#define EMSEG_INSTANTIATE_BBOX_EM_FIXED(S, B)                                                      \
  template void launch_bbox_em_fixed<S, B>(const S*, const B*, int64_t, int64_t, int64_t, int64_t, \
                                           int64_t, double, double, bool, int64_t*, cudaStream_t);
#define EMSEG_INSTANTIATE_BOXES(B)                                                                 \
  template void launch_boxes_to_labels<B>(const B*, int64_t, int64_t, int64_t, int64_t, int64_t,  \
                                          int64_t*, cudaStream_t);                                \
  EMSEG_INSTANTIATE_BBOX_EM_FIXED(float, B)                                                        \
  EMSEG_INSTANTIATE_BBOX_EM_FIXED(double, B)                                                       \
  EMSEG_INSTANTIATE_BBOX_EM_FIXED(__half, B)                                                       \
  EMSEG_INSTANTIATE_BBOX_EM_FIXED(__nv_bfloat16, B)
EMSEG_INSTANTIATE_BOXES(float)
EMSEG_INSTANTIATE_BOXES(double)
#undef EMSEG_INSTANTIATE_BOXES
#undef EMSEG_INSTANTIATE_BBOX_EM_FIXED

}  // namespace boxes
}  // namespace emseg
