#pragma once
// A permutohedral lattice on a CUDA device built with torch tensors, for the CUDA bindings of
// permutohedral_filter and dense_crf. The per-element work runs in the torch-free kernels of
// lattice_cuda.cu; the whole-array steps between them (numbering the vertices, grouping entries by
// vertex) are torch ops on the same stream.
//
// What is deterministic: each vertex's key, its splat list (its entries in entry order, by a
// stable sort) and its neighbours, hence every output value, run to run and backend to backend up
// to float contraction. What is not: the vertex ids. Among entries sharing a key, the one whose
// CAS wins owns it, and vertices are numbered in the order of their owner entries, so the
// numbering (and the layout of the vertex buffers) changes with thread scheduling.
//
// Device-to-host syncs: one per lattice, reading the vertex count M, which sizes the vertex
// arrays and the launch grids of the filtering passes.
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
    // Vertex ids in the order of their owner entries: an exclusive count of owner entries.
    at::Tensor is_owner = owner.eq(at::arange(E, iopts));
    at::Tensor entry_vertex = (at::cumsum(is_owner, 0, at::kInt) - 1).to(at::kInt);
    M_ = E == 0 ? 0 : int32_t(is_owner.sum().item<int64_t>());  // the one sync
    vert_ = entry_vertex.index_select(0, owner.to(at::kLong)).contiguous();
    // Owner entry of each vertex: owners scatter their entry id to their vertex, the others to a
    // spare slot M (nonzero would sync to learn its output size).
    const at::Tensor slot =
        at::where(is_owner, entry_vertex, at::full({}, M_, iopts)).to(at::kLong);
    at::Tensor owner_of_vertex =
        at::empty({int64_t(M_) + 1}, iopts).scatter_(0, slot, at::arange(E, iopts)).slice(0, 0, M_);
    // Splat lists: entries grouped by vertex, entry order kept within each group.
    const auto sorted = at::sort(vert_, /*stable=*/true, /*dim=*/0, false);
    const at::Tensor& order = std::get<1>(sorted);
    splat_point_ = at::floor_divide(order, d_ + 1).to(at::kInt).contiguous();
    splat_weight_ = bary_.index_select(0, order).contiguous();
    // start[v] = first position of vertex v among the sorted entries (bincount would sync to learn
    // its largest value).
    start_ = at::searchsorted(std::get<0>(sorted), at::arange(int64_t(M_) + 1, iopts),
                              /*out_int32=*/true);
    nbr_ = at::full({int64_t(d_ + 1) * M_ * 2}, M_, iopts);  // link_vertex fills the links found
    owner_of_vertex = owner_of_vertex.contiguous();
    C10_CUDA_CHECK(cuda::neighbours(M_, d_, owner_of_vertex.data_ptr<int32_t>(),
                                    table.data_ptr<int32_t>(), cap, keys.data_ptr<int32_t>(),
                                    entry_vertex.data_ptr<int32_t>(), nbr_.data_ptr<int32_t>(),
                                    stream));
  }

  int32_t num_vertices() const { return M_; }

  // Scales point i's splat and slice weights by n[i] (float32 [P] on the device): the filter
  // becomes diag(n) F diag(n), as CpuLattice::scale_points.
  void scale_points(const at::Tensor& n) {
    bary_ = (bary_.view({P_, d_ + 1}) * n.unsqueeze(1)).reshape({-1}).contiguous();
    splat_weight_ = (splat_weight_ * n.index_select(0, splat_point_.to(at::kLong))).contiguous();
  }

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

  // in/out: [C][P][W] chunks; scratch: at least 2 C (M+1) W floats. adjoint: the transpose.
  void filter_chunks(const float* in, float* out, int W, int64_t C, float* scratch,
                     bool adjoint = false) const {
    float* a = scratch;
    float* b = scratch + C * (int64_t(M_) + 1) * W;
    C10_CUDA_CHECK(
        cuda::filter(view(), W, C, in, out, a, b, adjoint, c10::cuda::getCurrentCUDAStream()));
  }

  // Plain layout [P, V] -> [P, V].
  at::Tensor filter(const at::Tensor& values, bool adjoint = false) const {
    const int64_t V = values.size(1);
    const int W = chunk_width(V);
    const int64_t C = (V + W - 1) / W;
    at::Tensor padded = at::zeros({P_, C * W}, values.options());
    padded.slice(1, 0, V).copy_(values);
    at::Tensor in = padded.view({P_, C, W}).permute({1, 0, 2}).contiguous();
    at::Tensor out = at::empty_like(in);
    at::Tensor scratch = at::empty({2 * C * (int64_t(M_) + 1) * W}, values.options());
    filter_chunks(in.data_ptr<float>(), out.data_ptr<float>(), W, C, scratch.data_ptr<float>(),
                  adjoint);
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
