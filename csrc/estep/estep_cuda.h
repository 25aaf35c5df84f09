#pragma once
// Launchers of the E-step CUDA kernels (estep_cuda.cu). Torch-free: raw pointers, sizes and a
// stream, so the kernels compile with bare nvcc. Inputs are contiguous: scores [N, C, M] with
// M = H * W pixels, present [N, C]; outputs labels [N, M] (and biases [N, C] for em_adapt).
// Instantiated for scores of float, double, __half and __nv_bfloat16.
#include <cuda_runtime.h>

#include <cstdint>

namespace emseg {
namespace estep {

template <typename scalar_t>
void launch_em_fixed(const scalar_t* scores, const bool* present, int64_t num_images,
                     int64_t num_classes, int64_t num_pixels, double fg_bias, double bg_bias,
                     bool suppress_absent, int64_t* labels, cudaStream_t stream);

// One thread block per image. Scratch in global memory: `keys` N * M values, `state` N * 2C.
template <typename scalar_t>
void launch_em_adapt(const scalar_t* scores, const bool* present, int64_t num_images,
                     int64_t num_classes, int64_t num_pixels, double fg_portion, double bg_portion,
                     int64_t max_iter, double* biases, uint64_t* keys, int64_t* state, int64_t* labels,
                     cudaStream_t stream);

}  // namespace estep
}  // namespace emseg
