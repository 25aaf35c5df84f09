#pragma once
// CPU permutohedral lattice over one point set: built once, then used for any number of filterings
// (the dense CRF filters every mean-field iteration through the same lattice).
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "lattice/lattice.h"

namespace emseg {
namespace lattice {

// Runs f(0..n-1) on the intra-op threads, handing tasks out one at a time: tasks of unequal cost
// (chunks of different lattices) still keep every thread busy, with one synchronisation in all.
template <typename F>
void run_tasks(int64_t n, const F& f) {
  if (n <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(n, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t t = next.fetch_add(1); t < n; t = next.fetch_add(1)) f(t);
  });
}

class CpuLattice {
 public:
  // features: [P, d] row-major float, already divided by their standard deviations. 1 <= d <= 16.
  // With parallel = false the build runs on the calling thread (to build several lattices at once).
  CpuLattice(const float* features, int64_t P, int d, bool parallel = true);

  int64_t num_points() const { return P_; }
  int64_t num_vertices() const { return M_; }
  int dim() const { return d_; }

  // One chunk of W channels: out[P][W] = scale * slice(blur(splat(in[P][W]))) (lattice.h).
  // buf_a, buf_b: scratch of (M+1) * W floats each. With inner_parallel the passes are split over
  // threads (a barrier between passes); without, the chunk runs on the calling thread.
  // Work: 2 (d+1) P W flops for splat and slice each, 3 (d+1) M W for the blur.
  template <int W>
  void filter_chunk(const float* in, float* out, float* buf_a, float* buf_b,
                    bool inner_parallel) const;

  // Plain layout: out[P, V] = lattice response to in[P, V]. Parallel over chunks (or within one).
  void filter(const float* in, float* out, int64_t V) const;

 private:
  int64_t P_;
  int d_;
  int64_t M_ = 0;
  std::vector<int32_t> vert_;          // [P*(d+1)] vertex of each entry
  std::vector<float> bary_;            // [P*(d+1)]
  std::vector<int32_t> start_;         // [M+1] splat list offsets
  std::vector<int32_t> splat_point_;   // [P*(d+1)] entries grouped by vertex (entry order within)
  std::vector<float> splat_weight_;    // [P*(d+1)] their barycentric weights
  std::vector<int32_t> nbr_;           // [d+1, M, 2]
};

// [P, V] <-> ceil(V / W) chunks [P][W] (padding channels zero).
void to_chunks(const float* x, float* chunks, int64_t P, int64_t V, int W);
void from_chunks(const float* chunks, float* x, int64_t P, int64_t V, int W);

}  // namespace lattice
}  // namespace emseg
