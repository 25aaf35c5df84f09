#pragma once
// CPU permutohedral lattice over one point set: built once, then used for any number of filterings
// (the dense CRF filters every mean-field iteration through the same lattice).
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "lattice/lattice.h"

// x86-64 hosts with AVX2 and FMA run copies of the hot loops compiled for them (selected at run
// time, so the extension still loads on any x86-64); other hosts run the portable build.
#if defined(__x86_64__) && defined(__GNUC__)
#define EMSEG_AVX2_TARGET __attribute__((target("avx2,fma"), flatten))
#define EMSEG_HAVE_AVX2_COPY 1
#else
#define EMSEG_AVX2_TARGET
#define EMSEG_HAVE_AVX2_COPY 0
#endif

namespace emseg {
namespace lattice {

inline bool cpu_has_avx2() {
#if EMSEG_HAVE_AVX2_COPY
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

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

// A run of blocks [next, end) that its thread takes from the front and the others from the back,
// packed in one word so that a take is one CAS.
class alignas(64) BlockShare {
 public:
  void reset(int64_t begin, int64_t end) { range_.store(pack(begin, end), std::memory_order_relaxed); }
  bool take_front(int64_t* k) { return take(k, true); }
  bool take_back(int64_t* k) { return take(k, false); }

 private:
  static uint64_t pack(int64_t next, int64_t end) {
    return (static_cast<uint64_t>(next) << 32) | static_cast<uint64_t>(end);
  }
  bool take(int64_t* k, bool front) {
    uint64_t r = range_.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t next = static_cast<int64_t>(r >> 32), end = static_cast<int64_t>(r & 0xffffffffu);
      if (next >= end) return false;
      const uint64_t taken = front ? pack(next + 1, end) : pack(next, end - 1);
      if (range_.compare_exchange_weak(r, taken, std::memory_order_relaxed)) {
        *k = front ? next : end - 1;
        return true;
      }
    }
  }
  std::atomic<uint64_t> range_{0};
};

// f(lo, hi) over [0, n) in blocks. Thread t of T first takes, in order, the blocks of its own
// share (the t-th of T equal runs), then the last blocks of the others' shares. The same share
// thus lands on the same thread from pass to pass, so the rows a pass writes are mostly read by
// the next pass on the core that wrote them (on the README's 2-core benchmark machine a row
// written on the other core takes about twice as long to read), and a thread that loses its core
// for a while has its blocks taken over instead of the others waiting for it at the end.
template <typename F>
void parallel_blocks(int64_t n, int64_t block, const F& f) {
  const int64_t tasks = (n + block - 1) / block;
  if (tasks <= 1 || at::get_num_threads() == 1 || at::in_parallel_region()) {
    if (n > 0) f(int64_t(0), n);
    return;
  }
  TORCH_CHECK(tasks < (int64_t(1) << 31), "parallel_blocks: too many blocks");
  const int64_t T = std::min<int64_t>(tasks, at::get_num_threads());
  std::unique_ptr<BlockShare[]> share(new BlockShare[T]);
  for (int64_t t = 0; t < T; ++t) share[t].reset(tasks * t / T, tasks * (t + 1) / T);
  auto run = [&](int64_t k) { f(k * block, std::min(n, (k + 1) * block)); };
  // With a grain of 1 and T items, at::parallel_for (OpenMP) gives item t to intra-op thread t.
  at::parallel_for(0, T, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      int64_t k;
      while (share[t].take_front(&k)) run(k);
      for (int64_t o = 1; o < T; ++o) {
        while (share[(t + o) % T].take_back(&k)) run(k);
      }
    }
  });
}

// f(lo, hi) over [0, n) in parallel blocks, compiled as passes() is on this CPU (inlined into the
// AVX2 + FMA copy where the CPU has them): a chunk split over threads then rounds exactly as the
// same chunk on one thread, so the output does not depend on the thread count.
template <typename F>
void run_default(const F& f, int64_t lo, int64_t hi) {
  f(lo, hi);
}
template <typename F>
EMSEG_AVX2_TARGET void run_avx2(const F& f, int64_t lo, int64_t hi) {
  f(lo, hi);
}
template <typename F>
void parallel_blocks_as_passes(int64_t n, int64_t block, const F& f) {
  const bool avx2 = cpu_has_avx2();
  parallel_blocks(n, block, [&](int64_t lo, int64_t hi) {
    if (avx2) {
      run_avx2(f, lo, hi);
    } else {
      run_default(f, lo, hi);
    }
  });
}

class VertexTable;

class CpuLattice {
 public:
  // A point set: features [P, d] row-major float, already divided by their standard deviations,
  // 1 <= d <= 16.
  struct Points {
    const float* features;
    int64_t P;
    int d;
  };
  // The lattices of several point sets, built with every thread at once (see build in the .cpp).
  static std::vector<CpuLattice> build(const std::vector<Points>& sets);
  CpuLattice(const float* features, int64_t P, int d)
      : CpuLattice(std::move(build({Points{features, P, d}}).front())) {}
  CpuLattice(CpuLattice&&) noexcept = default;

  int64_t num_points() const { return P_; }
  int64_t num_vertices() const { return M_; }
  int dim() const { return d_; }

  // One chunk of W channels: out[P][W] = scale * slice(blur(splat(in[P][W]))) (lattice.h).
  // buf_a, buf_b: scratch of (M+1) * W floats each. With inner_parallel the passes are split over
  // threads (a barrier between passes); without, the chunk runs on the calling thread.
  // Work: 2 (d+1) P W flops for splat and slice each, 3 (d+1) M W for the blur.
  // adjoint: apply the transpose instead (the blur axes in reverse order, see blur_axis).
  template <int W>
  void filter_chunk(const float* in, float* out, float* buf_a, float* buf_b, bool inner_parallel,
                    bool adjoint = false) const;

  // Scales point i's splat and slice weights by n[i]: the filter becomes diag(n) F diag(n) (the
  // dense CRF's symmetric normalisation, applied once instead of every iteration).
  void scale_points(const float* n);

#if EMSEG_HOST_SIMD
  // The filter in the row layout, [P][8 G] (all of a point's channels in one row, as G groups of
  // 8 lanes), in two halves so a caller can fuse its own per-point work into the slice:
  // blurred_rows leaves blur(splat(in)) in a, b or c ([M + 1][8 G] each) and returns which;
  // slice_row is point i's slice of it times `gain`. The passes are split over threads
  // and the result does not depend on their number. Reading each entry's vertex and weight once
  // for all channels (not once per chunk) is what the layout saves.
  template <int G>
  const float* blurred_rows(const float* in, float* a, float* b, float* c) const;
  template <int G>
  typename HostRow<8 * G>::type slice_row(int64_t i, const float* values, float gain) const {
    return sliced_row<8 * G>(i, d_, vert_.data(), bary_.data(), values, gain);
  }
#endif

  // Plain layout: out[P, V] = lattice response to in[P, V] (or its transpose's, with adjoint).
  // Parallel over chunks (or within one).
  void filter(const float* in, float* out, int64_t V, bool adjoint = false) const;

 private:
  // The passes of filter_chunk on the calling thread, written once, compiled twice (below).
  template <int W>
  __attribute__((always_inline)) inline void passes(const float* in, float* out, float* a,
                                                    float* b, bool adjoint) const;
  template <int W>
  void passes_default(const float* in, float* out, float* a, float* b, bool adjoint) const;
  template <int W>
  EMSEG_AVX2_TARGET void passes_avx2(const float* in, float* out, float* a, float* b,
                                     bool adjoint) const;

  CpuLattice(int64_t P, int d) : P_(P), d_(d) {}
  void link(const VertexTable& table);  // the blur neighbours, from the vertex keys

  int64_t P_;
  int d_;
  int64_t M_ = 0;
  std::vector<int32_t> vert_;          // [P*(d+1)] vertex of each entry
  std::vector<float> bary_;            // [P*(d+1)]
  // Splat lists, built on first use by the passes split over threads (build_splat_lists).
  void build_splat_lists() const;
  std::unique_ptr<std::once_flag> splat_lists_once_ = std::make_unique<std::once_flag>();
  mutable std::vector<int32_t> start_;         // [M+1] splat list offsets
  mutable std::vector<int32_t> splat_point_;   // [P*(d+1)] entries grouped by vertex (entry order within)
  mutable std::vector<float> splat_weight_;    // [P*(d+1)] their barycentric weights
  std::vector<int32_t> nbr_;           // [d+1, M, 2]
};

// [P, V] <-> ceil(V / W) chunks [P][W] (padding channels zero).
void to_chunks(const float* x, float* chunks, int64_t P, int64_t V, int W);
void from_chunks(const float* chunks, float* x, int64_t P, int64_t V, int W);

}  // namespace lattice
}  // namespace emseg
