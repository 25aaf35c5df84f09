#pragma once
// A permutohedral lattice on a CUDA device, for the CUDA bindings. The per-element work runs in the
// torch-free kernels of lattice_cuda.cu; the whole-array steps between them (numbering the vertices,
// grouping entries by vertex) are torch ops on the same stream. Vertices are numbered in entry order
// and each splat list keeps entry order (stable sort), as on the CPU, so both backends build the
// same lattice and sum in the same order.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "lattice/lattice.h"
#include "lattice/lattice_cuda.h"

namespace emseg {
namespace lattice {

class CudaLattice {
 public:
  // features: contiguous float32 [P, d] on the current CUDA device.
  explicit CudaLattice(const at::Tensor& features) : P_(features.size(0)), d_(int(features.size(1))) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    const auto iopts = features.options().dtype(at::kInt);
    const int64_t E = P_ * (d_ + 1);
    at::Tensor keys = at::empty({E * d_}, iopts);
    bary_ = at::empty({E}, features.options());
    C10_CUDA_CHECK(cuda::embed(features.data_ptr<float>(), P_, d_, keys.data_ptr<int32_t>(),
                               bary_.data_ptr<float>(), stream));
    // Worst-case table (every entry a distinct vertex): device memory is not the constraint here.
    const uint32_t cap = table_capacity(E);
    at::Tensor table = at::full({int64_t(cap)}, kEmpty, iopts);
    at::Tensor owner = at::empty({E}, iopts);
    at::Tensor created = at::zeros({1}, iopts);
    C10_CUDA_CHECK(cuda::insert(table.data_ptr<int32_t>(), cap, keys.data_ptr<int32_t>(), d_, E,
                                owner.data_ptr<int32_t>(), created.data_ptr<int32_t>(), stream));
    // Vertex ids in entry order: an exclusive count of owner entries.
    at::Tensor is_owner = owner.eq(at::arange(E, iopts));
    at::Tensor entry_vertex = (at::cumsum(is_owner, 0, at::kInt) - 1).to(at::kInt);
    M_ = E == 0 ? 0 : int32_t(is_owner.sum().item<int64_t>());
    vert_ = entry_vertex.index_select(0, owner.to(at::kLong)).contiguous();
    at::Tensor owner_of_vertex = at::nonzero(is_owner).view({-1}).to(at::kInt).contiguous();
    // Splat lists: entries grouped by vertex, entry order kept within each group.
    const at::Tensor order = std::get<1>(at::sort(vert_, /*stable=*/true, /*dim=*/0, false));
    splat_point_ = at::floor_divide(order, d_ + 1).to(at::kInt).contiguous();
    splat_weight_ = bary_.index_select(0, order).contiguous();
    start_ = at::zeros({int64_t(M_) + 1}, iopts);
    if (M_ > 0) {
      start_.slice(0, 1).copy_(at::cumsum(at::bincount(vert_, {}, M_), 0));
    }
    nbr_ = at::empty({int64_t(d_ + 1) * M_ * 2}, iopts);
    C10_CUDA_CHECK(cuda::neighbours(M_, d_, owner_of_vertex.data_ptr<int32_t>(),
                                    table.data_ptr<int32_t>(), cap, keys.data_ptr<int32_t>(),
                                    entry_vertex.data_ptr<int32_t>(), nbr_.data_ptr<int32_t>(),
                                    stream));
  }

  int32_t num_vertices() const { return M_; }

  LatticeView view() const {
    return LatticeView{P_,
                       d_,
                       M_,
                       vert_.data_ptr<int32_t>(),
                       bary_.data_ptr<float>(),
                       start_.data_ptr<int32_t>(),
                       splat_point_.data_ptr<int32_t>(),
                       splat_weight_.data_ptr<float>(),
                       nbr_.data_ptr<int32_t>()};
  }

  // in/out: [C][P][W] chunks; scratch: at least 2 C (M+1) W floats.
  void filter_chunks(const float* in, float* out, int W, int64_t C, float* scratch) const {
    float* a = scratch;
    float* b = scratch + C * (int64_t(M_) + 1) * W;
    C10_CUDA_CHECK(cuda::filter(view(), W, C, in, out, a, b, c10::cuda::getCurrentCUDAStream()));
  }

  // Plain layout [P, V] -> [P, V].
  at::Tensor filter(const at::Tensor& values) const {
    const int64_t V = values.size(1);
    const int W = chunk_width(V);
    const int64_t C = (V + W - 1) / W;
    at::Tensor padded = at::zeros({P_, C * W}, values.options());
    padded.slice(1, 0, V).copy_(values);
    at::Tensor in = padded.view({P_, C, W}).permute({1, 0, 2}).contiguous();
    at::Tensor out = at::empty_like(in);
    at::Tensor scratch = at::empty({2 * C * (int64_t(M_) + 1) * W}, values.options());
    filter_chunks(in.data_ptr<float>(), out.data_ptr<float>(), W, C, scratch.data_ptr<float>());
    return out.permute({1, 0, 2}).reshape({P_, C * W}).slice(1, 0, V).contiguous();
  }

 private:
  int64_t P_;
  int d_;
  int32_t M_ = 0;
  at::Tensor vert_, bary_, start_, splat_point_, splat_weight_, nbr_;
};

}  // namespace lattice
}  // namespace emseg
