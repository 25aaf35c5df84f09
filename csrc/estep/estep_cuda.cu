// CUDA kernels of the E-step operators, running the shared per-element code of estep.h: one thread
// per pixel (em_fixed), one thread block per image (em_adapt). Torch-free: compiles with bare nvcc.
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

#include "common/cuda_launch.h"
#include "common/team.h"
#include "estep/estep.h"
#include "estep/estep_cuda.h"

namespace emseg {
namespace estep {
namespace {

// Threads per image in em_adapt: the per-pixel thresholds dominate and are independent.
constexpr int kAdaptThreads = 512;

template <typename scalar_t, typename acc_t>
__global__ void em_fixed_kernel(const scalar_t* __restrict__ scores, const bool* __restrict__ present,
                                int64_t total, int64_t num_classes, int64_t num_pixels,
                                acc_t fg_bias, acc_t bg_bias, bool suppress_absent,
                                int64_t* __restrict__ labels) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t image = i / num_pixels, m = i - image * num_pixels;
    labels[i] = em_fixed_pixel(scores + image * num_classes * num_pixels + m, num_pixels,
                               num_classes, present + image * num_classes, fg_bias, bg_bias,
                               suppress_absent);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kAdaptThreads)
    em_adapt_kernel(const scalar_t* __restrict__ scores, const bool* __restrict__ present,
                    int64_t num_classes, int64_t num_pixels, double fg_portion, double bg_portion,
                    int64_t max_iter, double* biases, uint64_t* keys, int64_t* state,
                    int64_t* labels) {
  __shared__ AdaptShared shared;
  const int64_t image = blockIdx.x;
  const BlockTeam team;
  em_adapt_image(scores + image * num_classes * num_pixels, present + image * num_classes,
                 num_classes, num_pixels, fg_portion, bg_portion, max_iter,
                 biases + image * num_classes, keys + image * num_pixels,
                 state + image * 2 * num_classes, labels + image * num_pixels, &shared, team);
}

}  // namespace

template <typename scalar_t>
void launch_em_fixed(const scalar_t* scores, const bool* present, int64_t num_images,
                     int64_t num_classes, int64_t num_pixels, double fg_bias, double bg_bias,
                     bool suppress_absent, int64_t* labels, cudaStream_t stream) {
  using acc_t = typename AccType<scalar_t>::type;
  const int64_t total = num_images * num_pixels;
  if (total == 0) return;
  em_fixed_kernel<scalar_t, acc_t><<<elementwise_blocks(total), kThreadsPerBlock, 0, stream>>>(
      scores, present, total, num_classes, num_pixels, static_cast<acc_t>(fg_bias),
      static_cast<acc_t>(bg_bias), suppress_absent, labels);
}

template <typename scalar_t>
void launch_em_adapt(const scalar_t* scores, const bool* present, int64_t num_images,
                     int64_t num_classes, int64_t num_pixels, double fg_portion, double bg_portion,
                     int64_t max_iter, double* biases, uint64_t* keys, int64_t* state,
                     int64_t* labels, cudaStream_t stream) {
  if (num_images == 0) return;
  em_adapt_kernel<scalar_t><<<static_cast<unsigned int>(num_images), kAdaptThreads, 0, stream>>>(
      scores, present, num_classes, num_pixels, fg_portion, bg_portion, max_iter, biases, keys,
      state, labels);
}

#define EMSEG_INSTANTIATE_ESTEP(T)                                                                 \
  template void launch_em_fixed<T>(const T*, const bool*, int64_t, int64_t, int64_t, double,     \
                                   double, bool, int64_t*, cudaStream_t);                        \
  template void launch_em_adapt<T>(const T*, const bool*, int64_t, int64_t, int64_t, double,     \
                                   double, int64_t, double*, uint64_t*, int64_t*, int64_t*,      \
                                   cudaStream_t);
EMSEG_INSTANTIATE_ESTEP(float)
EMSEG_INSTANTIATE_ESTEP(double)
EMSEG_INSTANTIATE_ESTEP(__half)
EMSEG_INSTANTIATE_ESTEP(__nv_bfloat16)
#undef EMSEG_INSTANTIATE_ESTEP

}  // namespace estep
}  // namespace emseg
