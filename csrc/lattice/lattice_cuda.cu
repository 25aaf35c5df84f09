// CUDA kernels of the permutohedral lattice: each thread runs one of lattice.h's per-point or
// per-vertex functions, the same code the CPU kernels loop over. Torch-free (compiles with bare
// nvcc); lattice_cuda.h declares the launchers.
#include <cuda_runtime.h>

#include "common/cuda_launch.h"
#include "lattice/lattice.h"
#include "lattice/lattice_cuda.h"

namespace emseg {
namespace lattice {
namespace cuda {
namespace {

constexpr int kThreads = 256;

struct Scales {
  float s[kMaxDim];
};

__global__ void embed_kernel(const float* features, int64_t P, int d, Scales scale, int32_t* keys,
                             float* bary) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= P) return;
  embed_point(features + i * d, d, scale.s, keys + i * (d + 1) * d, bary + i * (d + 1));
}

__global__ void insert_kernel(int32_t* table, uint32_t mask, const int32_t* keys, int d, int64_t E,
                              int32_t* owner, int32_t* created) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= E) return;
  owner[e] = hash_insert(table, mask, keys, d, static_cast<int32_t>(e), created);
}

__global__ void neighbours_kernel(int32_t M, int d, const int32_t* owner_of_vertex,
                                  const int32_t* table, uint32_t mask, const int32_t* keys,
                                  const int32_t* entry_vertex, int32_t* nbr) {
  const int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (v >= M) return;
  link_vertex(static_cast<int32_t>(v), M, d, keys + static_cast<int64_t>(owner_of_vertex[v]) * d,
              EntryTableFind{table, mask, keys, d, entry_vertex}, nbr);
}

// The three filtering passes: one row of W floats per thread, chunks c = blockIdx.y, blockIdx.y +
// gridDim.y, ... (a grid has at most 65535 blocks along y; V channels make ceil(V / W) chunks).
template <int W>
__global__ void splat_kernel(LatticeView lat, int64_t C, const float* in, float* out) {
  const int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (v > lat.M) return;
  for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
    float* o = out + c * (lat.M + 1) * W;
    if (v == lat.M) {  // the zero row standing in for absent neighbours
      for (int t = 0; t < W; ++t) o[v * W + t] = 0.0f;
      continue;
    }
    splat_vertex<W>(static_cast<int32_t>(v), lat.start, lat.splat_point, lat.splat_weight,
                    in + c * lat.P * W, o);
  }
}

template <int W>
__global__ void blur_kernel(LatticeView lat, int64_t C, int axis, const float* in, float* out) {
  const int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (v > lat.M) return;
  for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
    const int64_t off = c * (lat.M + 1) * W;
    if (v == lat.M) {
      for (int t = 0; t < W; ++t) out[off + v * W + t] = 0.0f;
      continue;
    }
    blur_vertex<W>(static_cast<int32_t>(v), lat.nbr + int64_t(axis) * lat.M * 2, in + off,
                   out + off);
  }
}

template <int W>
__global__ void slice_kernel(LatticeView lat, int64_t C, const float* values, float scale,
                             float* out) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= lat.P) return;
  for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
    slice_point<W>(i, lat.d, lat.vert, lat.bary, values + c * (lat.M + 1) * W, scale,
                   out + c * lat.P * W);
  }
}

template <int W>
cudaError_t filter_w(const LatticeView& lat, int64_t C, const float* in, float* out, float* a,
                     float* b, bool adjoint, cudaStream_t stream) {
  if (lat.P == 0 || C == 0) return cudaSuccess;
  const unsigned chunk_blocks = static_cast<unsigned>(C < kMaxGridY ? C : kMaxGridY);
  const dim3 vgrid(blocks_for(lat.M + 1, kThreads), chunk_blocks);
  splat_kernel<W><<<vgrid, kThreads, 0, stream>>>(lat, C, in, a);
  for (int step = 0; step <= lat.d; ++step) {
    blur_kernel<W><<<vgrid, kThreads, 0, stream>>>(lat, C, blur_axis(step, lat.d, adjoint), a, b);
    float* t = a;
    a = b;
    b = t;
  }
  const dim3 pgrid(blocks_for(lat.P, kThreads), chunk_blocks);
  slice_kernel<W><<<pgrid, kThreads, 0, stream>>>(lat, C, a, slice_scale(lat.d), out);
  return cudaGetLastError();
}

}  // namespace

cudaError_t embed(const float* features, int64_t P, int d, int32_t* keys, float* bary,
                  cudaStream_t stream) {
  if (P == 0) return cudaSuccess;
  Scales scale{};
  for (int j = 1; j <= d; ++j) scale.s[j - 1] = embed_scale(j, d);
  embed_kernel<<<blocks_for(P, kThreads), kThreads, 0, stream>>>(features, P, d, scale, keys,
                                                                  bary);
  return cudaGetLastError();
}

cudaError_t insert(int32_t* table, uint32_t capacity, const int32_t* keys, int d, int64_t E,
                   int32_t* owner, int32_t* created, cudaStream_t stream) {
  if (E == 0) return cudaSuccess;
  insert_kernel<<<blocks_for(E, kThreads), kThreads, 0, stream>>>(table, capacity - 1, keys, d, E,
                                                                    owner, created);
  return cudaGetLastError();
}

cudaError_t neighbours(int32_t M, int d, const int32_t* owner_of_vertex, const int32_t* table,
                       uint32_t capacity, const int32_t* keys, const int32_t* entry_vertex,
                       int32_t* nbr, cudaStream_t stream) {
  if (M == 0) return cudaSuccess;
  neighbours_kernel<<<blocks_for(M, kThreads), kThreads, 0, stream>>>(
      M, d, owner_of_vertex, table, capacity - 1, keys, entry_vertex, nbr);
  return cudaGetLastError();
}

cudaError_t filter(const LatticeView& lat, int W, int64_t C, const float* in, float* out,
                   float* buf_a, float* buf_b, bool adjoint, cudaStream_t stream) {
  return W == 4 ? filter_w<4>(lat, C, in, out, buf_a, buf_b, adjoint, stream)
                : filter_w<8>(lat, C, in, out, buf_a, buf_b, adjoint, stream);
}

}  // namespace cuda
}  // namespace lattice
}  // namespace emseg
