#pragma once
// Torch-free launchers of the CUDA mean-field update and its gradient (crf_cuda.cu).
#include <cuda_runtime_api.h>

#include "crf/crf.h"

namespace emseg {
namespace crf {
namespace cuda {

// One thread per pixel runs crf::mean_field_pixel<W> (W = 4 or 8).
cudaError_t mean_field(const MeanFieldArgs& args, int W, cudaStream_t stream);

// One thread per pixel runs crf::mean_field_pixel_grad<W>.
cudaError_t mean_field_grad(const MeanFieldGradArgs& args, int W, cudaStream_t stream);

// norm[i] = crf::symmetric_norm(response[i]) for i < P.
cudaError_t symmetric_norm(const float* response, int64_t P, float* norm, cudaStream_t stream);

}  // namespace cuda
}  // namespace crf
}  // namespace emseg
