// CPU permutohedral lattice and the permutohedral_filter operator.
#include "lattice/lattice_cpu.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/library.h"

#include <algorithm>
#include <atomic>
#include <memory>

#include "lattice/lattice.h"
#include "lattice/lattice_checks.h"

namespace emseg {
namespace lattice {

namespace {
// Block sizes: enough work per task to amortise handing it out.
constexpr int64_t kPointGrain = 2048;
constexpr int64_t kVertexGrain = 1024;
}  // namespace

CpuLattice::CpuLattice(const float* features, int64_t P, int d, bool parallel) : P_(P), d_(d) {
  // Serial build: run each pass as one range on this thread.
  auto loop = [parallel](int64_t n, int64_t grain, const auto& f) {
    if (parallel) {
      parallel_blocks(n, grain, f);
    } else if (n > 0) {
      f(int64_t(0), n);
    }
  };
  const int64_t E = P * (d + 1);
  // Uninitialised scratch: every element is written before it is read.
  std::unique_ptr<int32_t[]> keys(new int32_t[E * d]);
  std::unique_ptr<int32_t[]> owner(new int32_t[E]);
  vert_.resize(E);
  bary_.resize(E);

  // 1. Embed every point: its d+1 keys and weights. O(d^2) per point, parallel.
  float scale[kMaxDim];
  for (int j = 1; j <= d; ++j) scale[j - 1] = embed_scale(j, d);
  loop(P, kPointGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      embed_point(features + i * d, d, scale, keys.get() + i * (d + 1) * d, bary_.data() + i * (d + 1));
    }
  });

  // 2. Insert every entry's key into a shared hash table (the same lock-free insert as on the GPU).
  // Neighbouring points share vertices, so images have far fewer vertices than entries: start with
  // a table sized for P keys (cache-resident) and rebuild at the worst case, E, if it fills up.
  std::vector<int32_t> table;
  uint32_t cap = 0;
  for (int64_t expected : {std::min<int64_t>(E, std::max<int64_t>(P, 64)), E}) {
    cap = table_capacity(expected);
    table.assign(cap, kEmpty);
    int32_t created = 0;
    std::atomic<bool> full{false};
    loop(E, kPointGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t e = lo; e < hi && !full.load(std::memory_order_relaxed); ++e) {
        owner[e] = hash_insert(table.data(), cap - 1, keys.get(), d, static_cast<int32_t>(e),
                               &created);
        // Past 3/4 load the probes grow long; give up and take the worst-case size.
        if (owner[e] == kEmpty || __atomic_load_n(&created, __ATOMIC_RELAXED) > int64_t(cap) * 3 / 4) {
          full.store(true, std::memory_order_relaxed);
        }
      }
    });
    if (!full.load()) break;
    TORCH_CHECK(expected != E, "permutohedral lattice: hash table overflow (internal error)");
  }

  // 3. Number the vertices in the order of their owner entries. Which entry of a shared key owns
  // it depends on which thread's CAS won, so the numbering may change from run to run; what each
  // vertex sums (its entries in entry order, step 4) and its neighbours do not, so the outputs are
  // deterministic.
  std::unique_ptr<int32_t[]> entry_vertex(new int32_t[E]);  // read only at owner entries
  std::vector<int32_t> owner_of_vertex;
  int32_t M = 0;
  for (int64_t e = 0; e < E; ++e) {
    if (owner[e] == e) entry_vertex[e] = M++;
  }
  owner_of_vertex.resize(M);
  M_ = M;
  for (int64_t e = 0; e < E; ++e) {
    if (owner[e] == e) owner_of_vertex[entry_vertex[e]] = static_cast<int32_t>(e);
  }
  loop(E, kPointGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t e = lo; e < hi; ++e) vert_[e] = entry_vertex[owner[e]];
  });

  // 4. Blur neighbours of every vertex along every axis: 2 (d+1) hash probes per vertex. Most
  // probes miss or compare keys; against the entry table both hit memory all over the E-entry key
  // array, so first re-hash the M distinct keys into a compact table over a dense [M, d] key copy
  // (a few hundred KB for an image: cache-resident), then probe that.
  std::unique_ptr<int32_t[]> vkeys(new int32_t[int64_t(M) * d]);
  loop(M, kVertexGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t v = lo; v < hi; ++v) {
      std::copy_n(keys.get() + int64_t(owner_of_vertex[v]) * d, d, vkeys.get() + v * d);
    }
  });
  keys.reset();
  const uint32_t vcap = table_capacity(M);
  std::vector<int32_t> vtable(vcap, kEmpty);
  int32_t vcreated = 0;
  loop(M, kVertexGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t v = lo; v < hi; ++v) {
      hash_insert(vtable.data(), vcap - 1, vkeys.get(), d, static_cast<int32_t>(v), &vcreated);
    }
  });
  nbr_.resize(static_cast<int64_t>(d + 1) * M * 2);
  loop(M, kVertexGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t v = lo; v < hi; ++v) {
      find_neighbours(static_cast<int32_t>(v), M, d, static_cast<int32_t>(v), vtable.data(),
                      vcap - 1, vkeys.get(), nullptr, nbr_.data());
    }
  });
}

void CpuLattice::build_splat_lists() const {
  // A stable counting sort of the entries by vertex, so splatting is a gather. Only the passes
  // split over threads need it (one thread scatters in point order instead), so it is built on
  // first use: the dense CRF on few threads never does.
  const int64_t E = P_ * (d_ + 1);
  start_.assign(M_ + 1, 0);
  for (int64_t e = 0; e < E; ++e) ++start_[vert_[e] + 1];
  for (int64_t v = 0; v < M_; ++v) start_[v + 1] += start_[v];
  splat_point_.resize(E);
  splat_weight_.resize(E);
  std::vector<int32_t> cursor(start_.begin(), start_.end() - 1);
  for (int64_t e = 0; e < E; ++e) {
    const int32_t k = cursor[vert_[e]]++;
    splat_point_[k] = static_cast<int32_t>(e / (d_ + 1));
    splat_weight_[k] = bary_[e];  // the same product the scatter multiplies by: the same bits
  }
}

void CpuLattice::scale_points(const float* n) {
  const int64_t E = P_ * (d_ + 1);
  for (int64_t e = 0; e < E; ++e) bary_[e] *= n[e / (d_ + 1)];
  if (!splat_weight_.empty()) {
    for (int64_t k = 0; k < E; ++k) splat_weight_[k] *= n[splat_point_[k]];
  }
}

template <int W>
inline void CpuLattice::passes(const float* in, float* out, float* a, float* b,
                               bool adjoint) const {
  const int64_t M = M_;
  std::fill(a, a + (M + 1) * W, 0.0f);
  std::fill(b + M * W, b + (M + 1) * W, 0.0f);
  for (int64_t i = 0; i < P_; ++i) splat_point_scatter<W>(i, d_, vert_.data(), bary_.data(), in, a);
  for (int step = 0; step <= d_; ++step) {
    const int32_t* nbr_axis = nbr_.data() + static_cast<int64_t>(blur_axis(step, d_, adjoint)) * M * 2;
    for (int64_t v = 0; v < M; ++v) blur_vertex<W>(static_cast<int32_t>(v), nbr_axis, a, b);
    std::swap(a, b);
  }
  const float scale = slice_scale(d_);
  for (int64_t i = 0; i < P_; ++i) slice_point<W>(i, d_, vert_.data(), bary_.data(), a, scale, out);
}

template <int W>
void CpuLattice::passes_default(const float* in, float* out, float* a, float* b,
                                bool adjoint) const {
  passes<W>(in, out, a, b, adjoint);
}

template <int W>
EMSEG_AVX2_TARGET void CpuLattice::passes_avx2(const float* in, float* out, float* a, float* b,
                                                bool adjoint) const {
  passes<W>(in, out, a, b, adjoint);
}


template <int W>
void CpuLattice::filter_chunk(const float* in, float* out, float* buf_a, float* buf_b,
                              bool inner_parallel, bool adjoint) const {
  if (!inner_parallel) {
    if (cpu_has_avx2()) {
      passes_avx2<W>(in, out, buf_a, buf_b, adjoint);
    } else {
      passes_default<W>(in, out, buf_a, buf_b, adjoint);
    }
    return;
  }
  // Split each pass over threads, with a barrier between passes (few chunks, many threads).
  std::call_once(*splat_lists_once_, [this] { build_splat_lists(); });
  const int d = d_;
  const int64_t M = M_;
  float* a = buf_a;
  float* b = buf_b;
  std::fill(a + M * W, a + (M + 1) * W, 0.0f);
  std::fill(b + M * W, b + (M + 1) * W, 0.0f);
  parallel_blocks_as_passes(M, kVertexGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t v = lo; v < hi; ++v) {
      splat_vertex<W>(static_cast<int32_t>(v), start_.data(), splat_point_.data(),
                      splat_weight_.data(), in, a);
    }
  });
  for (int step = 0; step <= d; ++step) {
    const int32_t* nbr_axis = nbr_.data() + static_cast<int64_t>(blur_axis(step, d, adjoint)) * M * 2;
    parallel_blocks_as_passes(M, kVertexGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t v = lo; v < hi; ++v) blur_vertex<W>(static_cast<int32_t>(v), nbr_axis, a, b);
    });
    std::swap(a, b);
  }
  const float scale = slice_scale(d);
  parallel_blocks_as_passes(P_, kPointGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) slice_point<W>(i, d, vert_.data(), bary_.data(), a, scale, out);
  });
}

template void CpuLattice::filter_chunk<4>(const float*, float*, float*, float*, bool, bool) const;
template void CpuLattice::filter_chunk<8>(const float*, float*, float*, float*, bool, bool) const;

void to_chunks(const float* x, float* chunks, int64_t P, int64_t V, int W) {
  const int64_t C = (V + W - 1) / W;
  parallel_blocks(P, kPointGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      for (int64_t c = 0; c < C * W; ++c) {
        chunks[chunk_offset(i, c, P, W)] = c < V ? x[i * V + c] : 0.0f;
      }
    }
  });
}

void from_chunks(const float* chunks, float* x, int64_t P, int64_t V, int W) {
  parallel_blocks(P, kPointGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      for (int64_t c = 0; c < V; ++c) x[i * V + c] = chunks[chunk_offset(i, c, P, W)];
    }
  });
}

void CpuLattice::filter(const float* in, float* out, int64_t V, bool adjoint) const {
  const int W = chunk_width(V);
  const int64_t C = (V + W - 1) / W;
  std::vector<float> cin(C * P_ * W), cout(C * P_ * W), buf(C * 2 * (M_ + 1) * W);
  to_chunks(in, cin.data(), P_, V, W);
  // Few chunks: parallelise inside each; many: one chunk per task, no barriers between passes.
  const bool inner = C < at::get_num_threads();
  auto task = [&](int64_t c) {
    float* a = buf.data() + c * 2 * (M_ + 1) * W;
    float* b = a + (M_ + 1) * W;
    if (W == 4) {
      filter_chunk<4>(cin.data() + c * P_ * W, cout.data() + c * P_ * W, a, b, inner, adjoint);
    } else {
      filter_chunk<8>(cin.data() + c * P_ * W, cout.data() + c * P_ * W, a, b, inner, adjoint);
    }
  };
  if (inner) {
    for (int64_t c = 0; c < C; ++c) task(c);
  } else {
    run_tasks(C, task);
  }
  from_chunks(cout.data(), out, P_, V, W);
}

}  // namespace lattice

namespace {

// The filter (adjoint = false) or its transpose, the gradient with respect to the values
// (adjoint = true). Normalised, the forward is F(v) / F(1); the normaliser does not depend on the
// values, so the transpose is F^T(g / F(1)) (F(1), not F^T(1): the forward's normaliser).
at::Tensor permutohedral_cpu(const at::Tensor& values_in, const at::Tensor& features_in,
                             bool normalize, bool adjoint) {
  TORCH_CHECK(values_in.device().is_cpu(), "values must be a CPU tensor for the CPU kernel, got ",
              values_in.device());
  check_permutohedral_inputs(values_in, features_in);
  const bool batched = values_in.dim() == 3;
  at::Tensor values = (batched ? values_in : values_in.unsqueeze(0)).contiguous();
  at::Tensor features = (batched ? features_in : features_in.unsqueeze(0)).contiguous();
  const int64_t N = values.size(0), P = values.size(1), V = values.size(2);
  const int d = static_cast<int>(features.size(2));
  at::Tensor out = at::empty_like(values);
  if (P == 0 || V == 0) return batched ? out : out.squeeze(0);

  std::vector<float> ones(normalize ? P : 0, 1.0f), norm(normalize ? P : 0);
  std::vector<float> scaled(normalize && adjoint ? P * V : 0);
  // x * (1 / norm), the CUDA binding's formula too, so the backends round alike.
  auto divide_by_norm = [&](const float* x, float* y) {
    lattice::parallel_blocks(P, 4096, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const float s = 1.0f / norm[i];
        for (int64_t c = 0; c < V; ++c) y[i * V + c] = x[i * V + c] * s;
      }
    });
  };
  for (int64_t n = 0; n < N; ++n) {
    lattice::CpuLattice lat(features.data_ptr<float>() + n * P * d, P, d);
    const float* in = values.data_ptr<float>() + n * P * V;
    float* o = out.data_ptr<float>() + n * P * V;
    // Normalised: divide by the response to all-ones, a weighted mean independent of the gain.
    if (normalize) lat.filter(ones.data(), norm.data(), 1);
    if (normalize && adjoint) {
      divide_by_norm(in, scaled.data());
      in = scaled.data();
    }
    lat.filter(in, o, V, adjoint);
    if (normalize && !adjoint) divide_by_norm(o, o);
  }
  return batched ? out : out.squeeze(0);
}

at::Tensor permutohedral_filter_cpu(const at::Tensor& values, const at::Tensor& features,
                                    bool normalize) {
  return permutohedral_cpu(values, features, normalize, /*adjoint=*/false);
}

at::Tensor permutohedral_filter_backward_cpu(const at::Tensor& grad, const at::Tensor& features,
                                             bool normalize) {
  return permutohedral_cpu(grad, features, normalize, /*adjoint=*/true);
}

}  // namespace
}  // namespace emseg

EMSEG_CPU_LIBRARY_IMPL(m) {
  m.impl("permutohedral_filter", &emseg::permutohedral_filter_cpu);
  m.impl("permutohedral_filter_backward", &emseg::permutohedral_filter_backward_cpu);
}
