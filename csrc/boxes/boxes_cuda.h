#pragma once
// Launchers of the box CUDA kernels (boxes_cuda.cu). Torch-free: raw pointers, sizes and a stream.
// Inputs are contiguous: boxes [N, B, 5] (float or double), scores [N, C, M] with M = H * W
// (float, double, __half or __nv_bfloat16); output labels [N, M].
#include <cuda_runtime.h>

#include <cstdint>

namespace emseg {
namespace boxes {

template <typename box_t>
void launch_boxes_to_labels(const box_t* boxes, int64_t num_images, int64_t num_boxes,
                            int64_t height, int64_t width, int64_t fill, int64_t* labels,
                            cudaStream_t stream);

template <typename score_t, typename box_t>
void launch_bbox_em_fixed(const score_t* scores, const box_t* boxes, int64_t num_images,
                          int64_t num_classes, int64_t height, int64_t width, int64_t num_boxes,
                          double fg_bias, double bg_bias, bool suppress_absent, int64_t* labels,
                          cudaStream_t stream);

}  // namespace boxes
}  // namespace emseg
