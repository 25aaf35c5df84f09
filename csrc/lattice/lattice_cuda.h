#pragma once
// Torch-free launchers of the CUDA lattice kernels (lattice_cuda.cu): raw device pointers, sizes
// and a stream in, a cudaError_t out. The torch-facing side (lattice_cuda_torch.h) allocates the
// memory.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace emseg {
namespace lattice {

// A built lattice on the device (layout in lattice.h).
struct LatticeView {
  int64_t P;
  int d;
  int32_t M;
  const int32_t* vert;          // [P*(d+1)]
  const float* bary;            // [P*(d+1)]
  const int32_t* start;         // [M+1]
  const int32_t* splat_point;   // [P*(d+1)]
  const float* splat_weight;    // [P*(d+1)]
  const int32_t* nbr;           // [d+1, M, 2]
};

namespace cuda {

cudaError_t embed(const float* features, int64_t P, int d, int32_t* keys, float* bary,
                  cudaStream_t stream);
cudaError_t insert(int32_t* table, uint32_t capacity, const int32_t* keys, int d, int64_t E,
                   int32_t* owner, int32_t* created, cudaStream_t stream);
cudaError_t neighbours(int32_t M, int d, const int32_t* owner_of_vertex, const int32_t* table,
                       uint32_t capacity, const int32_t* keys, const int32_t* entry_vertex,
                       int32_t* nbr, cudaStream_t stream);
// C chunks of width W (4 or 8): in/out [C][P][W], buf_a/buf_b [C][M+1][W] scratch. adjoint: the
// filter's transpose (lattice.h, blur_axis).
cudaError_t filter(const LatticeView& lat, int W, int64_t C, const float* in, float* out,
                   float* buf_a, float* buf_b, bool adjoint, cudaStream_t stream);

}  // namespace cuda
}  // namespace lattice
}  // namespace emseg
