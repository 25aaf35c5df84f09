// CPU permutohedral lattice and the permutohedral_filter operator.
#include "lattice/lattice_cpu.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/library.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>

#include "lattice/lattice.h"
#include "lattice/lattice_checks.h"

namespace emseg {
namespace lattice {

namespace {
// Block sizes: enough work per task to amortise handing it out.
constexpr int64_t kPointGrain = 2048;
constexpr int64_t kVertexGrain = 1024;
}  // namespace

// Open-addressing hash from vertex keys to vertex ids, over a dense [M, d] key array in id order,
// grown by doubling at load 1/2. Each slot keeps its key's hash beside the id, so a probe that
// misses is decided within the slot array (a few adjacent slots, one cache line) without reading
// the key array. Filled by one thread: no atomics, and ids come out in the order the entries
// first meet their keys (point order), so the lattice is the same on every run.
class VertexTable {
 public:
  VertexTable(int d, int64_t expected) : d_(d) { rehash(table_capacity(expected)); }

  int32_t find(const int32_t* key, uint32_t h) const { return probe(key, h).id; }  // h = hash_key
  // Starts loading the slot where a key of hash h would be.
  void prefetch(uint32_t h) const { __builtin_prefetch(&slots_[h & mask_]); }

  int32_t find_or_insert(const int32_t* key) { return find_or_insert(key, hash_key(key, d_)); }
  int32_t find_or_insert(const int32_t* key, uint32_t h) {  // h = hash_key(key, d)
    Slot& slot = probe(key, h);
    if (slot.id != kEmpty) return slot.id;
    slot = Slot{size_++, h};
    keys_.insert(keys_.end(), key, key + d_);
    if (2 * static_cast<uint64_t>(size_) > slots_.size()) rehash(2 * slots_.size());
    return size_ - 1;
  }

  int32_t size() const { return size_; }
  const int32_t* key(int32_t v) const { return keys_.data() + static_cast<int64_t>(v) * d_; }

 private:
  struct Slot {
    int32_t id;
    uint32_t hash;
  };

  // The slot holding `key`, or the empty slot where it would go.
  Slot& probe(const int32_t* key, uint32_t h) const {
    uint32_t i = h & mask_;
    for (;;) {
      Slot& slot = slots_[i];
      if (slot.id == kEmpty || (slot.hash == h && keys_equal(this->key(slot.id), key, d_))) {
        return slot;
      }
      i = (i + 1) & mask_;
    }
  }

  void rehash(uint64_t capacity) {
    slots_.assign(capacity, Slot{kEmpty, 0});
    mask_ = static_cast<uint32_t>(capacity - 1);
    for (int32_t v = 0; v < size_; ++v) {
      const uint32_t h = hash_key(key(v), d_);
      probe(key(v), h) = Slot{v, h};
    }
  }

  int d_;
  int32_t size_ = 0;
  uint32_t mask_ = 0;
  mutable std::vector<Slot> slots_;
  std::vector<int32_t> keys_;
};

// embed_points8 compiled for AVX2, and not FMA: a contracted multiply-add would round differently
// from embed_point.
#if EMSEG_HOST_SIMD && EMSEG_HAVE_AVX2_COPY
template <int D>
__attribute__((target("avx2"), flatten)) void embed_points8_avx2(const float* f, const float* scale,
                                                                  int32_t* keys, float* bary,
                                                                  uint32_t* hashes) {
  embed_points8<D>(f, scale, keys, bary, hashes);
}
#endif

// One pass over the points does the embedding and the vertex numbering together: each point's d+1
// keys go straight into the table, so no [P (d+1), d] key array is ever written (the largest
// buffer of a two-pass build, and most of its time in page faults). Neighbouring points share many
// of their vertices, so each key is first compared with the previous point's: a quarter (bilateral)
// to three quarters (positions) of the entries then never touch the table. Vertex r of a simplex
// is the only one whose coordinates are all r modulo d+1 (embed_point), so it can only equal
// vertex r of the previous point: one comparison per vertex. Sequential; D > 0 is d fixed at
// compile time.
template <int D>
void find_vertices(const float* features, int64_t P, int d_arg, VertexTable& table, int32_t* vert,
                   float* bary) {
  const int d = D > 0 ? D : d_arg;
  float scale[kMaxDim];
  for (int j = 1; j <= d; ++j) scale[j - 1] = embed_scale(j, d);
  // Points go in groups of 8, embedded (and their keys hashed) together on CPUs with AVX2: about
  // 3.5x faster than one by one at d = 5. The same bits as embed_point where the build's flags
  // leave FMA out (the default).
  const int64_t stride = static_cast<int64_t>(d + 1) * d;  // keys per point
  int32_t group[8 * (kMaxDim + 1) * kMaxDim];
  int32_t last[(kMaxDim + 1) * kMaxDim] = {};  // the previous group's last point's keys
  uint32_t hash[8 * (kMaxDim + 1)];
  bool shared[8 * (kMaxDim + 1)];
#if EMSEG_HOST_SIMD && EMSEG_HAVE_AVX2_COPY
  float padded[8 * kMaxDim] = {};  // the last group, when it has fewer than 8 points
  float padded_bary[8 * (kMaxDim + 1)];
#endif
  for (int64_t g = 0; g < P; g += 8) {
    const int n = static_cast<int>(std::min<int64_t>(8, P - g));
    bool hashed = false;
#if EMSEG_HOST_SIMD && EMSEG_HAVE_AVX2_COPY
    if constexpr (D > 0) {
      if (cpu_has_avx2()) {
        // The last group too, padded, so that every point takes the same path: a build whose
        // flags allow FMA contracts the two paths differently.
        if (n < 8) std::copy(features + g * d, features + (g + n) * d, padded);
        float* group_bary = n < 8 ? padded_bary : bary + g * (d + 1);
        embed_points8_avx2<D>(n < 8 ? padded : features + g * d, scale, group, group_bary, hash);
        if (n < 8) std::copy(padded_bary, padded_bary + n * (d + 1), bary + g * (d + 1));
        hashed = true;
      }
    }
#endif
    for (int p = 0; p < n && !hashed; ++p) {
      embed_point<D>(features + (g + p) * d, d, scale, group + p * stride, bary + (g + p) * (d + 1));
    }
    // Which entries the previous point shares, compared without early exits: a quarter to three
    // quarters of them are shared, so the branches of keys_equal would mispredict.
    for (int p = 0; p < n; ++p) {
      const int32_t* key = group + p * stride;
      const int32_t* prev_key = p > 0 ? key - stride : last;
      for (int r = 0; r <= d; ++r) {
        const int e = p * (d + 1) + r;
        int32_t differ = 0;
        for (int t = 0; t < d; ++t) differ |= prev_key[r * d + t] ^ key[r * d + t];
        shared[e] = (g + p > 0) & (differ == 0);
        if (!shared[e] && !hashed) hash[e] = hash_key(key + r * d, d);
      }
    }
    int32_t* group_vert = vert + g * (d + 1);
    for (int p = 0; p < n; ++p) {
      for (int r = 0; r <= d; ++r) {
        const int e = p * (d + 1) + r;
        group_vert[e] = shared[e] ? group_vert[e - (d + 1)]
                                  : table.find_or_insert(group + p * stride + r * d, hash[e]);
      }
    }
    std::copy(group + (n - 1) * stride, group + n * stride, last);
  }
}

namespace {

// The vertex pass of points [lo, hi) of a set into its own table (vert holding the table's ids).
void find_part_vertices(const CpuLattice::Points& set, int64_t lo, int64_t hi, VertexTable& table,
                        int32_t* vert, float* bary) {
  const int d = set.d;
  const float* f = set.features + lo * d;
  int32_t* v = vert + lo * (d + 1);
  float* b = bary + lo * (d + 1);
  // Copies for the dense CRF's dimensions (2: position, 5: bilateral) and 3 (grayscale bilateral).
  switch (d) {
    case 2: return find_vertices<2>(f, hi - lo, d, table, v, b);
    case 3: return find_vertices<3>(f, hi - lo, d, table, v, b);
    case 5: return find_vertices<5>(f, hi - lo, d, table, v, b);
    default: return find_vertices<0>(f, hi - lo, d, table, v, b);
  }
}

// Below this many points a set is one part: splitting it would cost more than it saves.
constexpr int64_t kMinPartPoints = 8192;

}  // namespace

// Each set's points are split into two fixed halves, whatever the thread count; every half finds
// its vertices into its own table (a sequential pass), all halves of all sets at once. The second
// half's vertices are then merged into the first's table (new ids follow the first half's) and
// its entries renumbered, and the neighbour links made with every thread. The ids, hence the
// lattice, are the same on any number of threads.
std::vector<CpuLattice> CpuLattice::build(const std::vector<Points>& sets) {
  struct Part {
    int set;
    int64_t lo, hi;
    std::optional<VertexTable> table;
  };
  std::vector<CpuLattice> lattices;
  std::vector<Part> parts;
  for (int s = 0; s < static_cast<int>(sets.size()); ++s) {
    const Points& set = sets[s];
    lattices.push_back(CpuLattice(set.P, set.d));
    lattices.back().vert_.resize(set.P * (set.d + 1));
    lattices.back().bary_.resize(set.P * (set.d + 1));
    const int64_t half = set.P >= kMinPartPoints ? set.P / 2 : set.P;
    parts.push_back(Part{s, 0, half, std::nullopt});
    if (half < set.P) parts.push_back(Part{s, half, set.P, std::nullopt});
  }
  // The costliest parts first, so the last ones to finish are short.
  std::vector<int> order(parts.size());
  for (size_t k = 0; k < parts.size(); ++k) order[k] = static_cast<int>(k);
  auto cost = [&](int k) { return (parts[k].hi - parts[k].lo) * (sets[parts[k].set].d + 1); };
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return cost(x) > cost(y); });
  run_tasks(static_cast<int64_t>(parts.size()), [&](int64_t t) {
    Part& part = parts[order[t]];
    const Points& set = sets[part.set];
    CpuLattice& lat = lattices[part.set];
    // Images have far fewer vertices than entries: start small.
    part.table.emplace(set.d, std::max<int64_t>(64, (part.hi - part.lo) / 8));
    find_part_vertices(set, part.lo, part.hi, *part.table, lat.vert_.data(), lat.bary_.data());
  });
  // Merge each set's second half into its first (sets in parallel).
  std::vector<VertexTable*> table(sets.size());
  for (Part& part : parts) {
    if (part.lo == 0) table[part.set] = &*part.table;
  }
  run_tasks(static_cast<int64_t>(parts.size()), [&](int64_t k) {
    Part& part = parts[k];
    if (part.lo == 0) return;
    const int d = sets[part.set].d;
    std::vector<int32_t> merged(part.table->size());
    for (int32_t v = 0; v < part.table->size(); ++v) {
      merged[v] = table[part.set]->find_or_insert(part.table->key(v));
    }
    int32_t* vert = lattices[part.set].vert_.data();
    for (int64_t e = part.lo * (d + 1); e < part.hi * (d + 1); ++e) vert[e] = merged[vert[e]];
    part.table.reset();
  });
  for (size_t s = 0; s < sets.size(); ++s) {
    lattices[s].M_ = table[s]->size();
    lattices[s].link(*table[s]);
  }
  return lattices;
}

void CpuLattice::link(const VertexTable& table) {
  const int d = d_;
  const int32_t M = static_cast<int32_t>(M_);
  nbr_.assign(static_cast<int64_t>(d + 1) * M * 2, M);
  // Vertices go in batches: the hashes of a batch's neighbour keys are computed first and their
  // slots prefetched, so the lookups (random reads of a table larger than L2) overlap.
  constexpr int kBatch = 16;
  parallel_blocks(M, kVertexGrain, [&](int64_t lo, int64_t hi) {
    uint32_t hash[kBatch * (kMaxDim + 1)];
    int32_t plus[kMaxDim];
    for (int64_t b = lo; b < hi; b += kBatch) {
      const int64_t end = std::min<int64_t>(hi, b + kBatch);
      int n = 0;
      for (int64_t v = b; v < end; ++v) {
        for (int j = 0; j <= d; ++j) {
          plus_neighbour_key(table.key(static_cast<int32_t>(v)), d, j, plus);
          hash[n] = hash_key(plus, d);
          table.prefetch(hash[n++]);
        }
      }
      // link_vertex looks up the same keys in the same order (every axis, + neighbours).
      const int hashed = n;
      n = 0;
      auto find = [&](const int32_t* key) { return table.find(key, hash[n++]); };
      for (int64_t v = b; v < end; ++v) {
        link_vertex(static_cast<int32_t>(v), M, d, table.key(static_cast<int32_t>(v)), find,
                    nbr_.data());
      }
      TORCH_INTERNAL_ASSERT(n == hashed, "link: lookups out of step with their hashes");
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
  parallel_blocks(P_, kPointGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      for (int r = 0; r <= d_; ++r) bary_[i * (d_ + 1) + r] *= n[i];
    }
  });
  if (!splat_weight_.empty()) {
    parallel_blocks(E, kPointGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t k = lo; k < hi; ++k) splat_weight_[k] *= n[splat_point_[k]];
    });
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

#if EMSEG_HOST_SIMD
template <int G>
const float* CpuLattice::blurred_rows(const float* in, float* a, float* b, float* c) const {
  const int64_t M = M_;
  const int d = d_;
  constexpr int64_t R = 8 * G;
  // Splat: two fixed halves of the points, each scattered in point order into its own buffer (a,
  // c) by its own task, then added by the first blur pass. A scatter reads the input once, in
  // order, and its vertex rows stay in cache (neighbouring points share vertices); a gather per
  // vertex would fetch each input row d+1 times from all over the image. Two halves whatever the
  // thread count, so the sums do not depend on it.
  float* part[2] = {a, c};
  const int64_t half = P_ / 2;
  // Through parallel_blocks, not run_tasks: half p runs on thread p, whose share of the slice's
  // pixels is, on 2 threads, (about) that half, so it reads the Q rows it has just written.
  parallel_blocks_as_passes(2, 1, [&](int64_t first_half, int64_t end_half) {
    for (int64_t p = first_half; p < end_half; ++p) {
      float* acc = part[p];
      std::fill(acc, acc + (M + 1) * R, 0.0f);
      const int64_t lo = p == 0 ? 0 : half, hi = p == 0 ? half : P_;
      for (int64_t i = lo; i < hi; ++i) {
        splat_point_scatter<R>(i, d, vert_.data(), bary_.data(), in, acc);
      }
    }
  });
  std::fill(b + M * R, b + (M + 1) * R, 0.0f);
  for (int step = 0; step <= d; ++step) {
    const int32_t* nbr_axis = nbr_.data() + static_cast<int64_t>(blur_axis(step, d, false)) * M * 2;
    const bool first = step == 0;
    parallel_blocks_as_passes(M, kVertexGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t v = lo; v < hi; ++v) {
        if (!first) {
          blur_vertex<R>(static_cast<int32_t>(v), nbr_axis, a, b);
          continue;
        }
        // blur_vertex on the two halves' sum a + c.
        typedef typename HostRow<R>::type Row;
        auto sum = [&](int32_t u) {
          return *reinterpret_cast<const Row*>(a + u * R) + *reinterpret_cast<const Row*>(c + u * R);
        };
        *reinterpret_cast<Row*>(b + v * R) =
            sum(static_cast<int32_t>(v)) + 0.5f * (sum(nbr_axis[2 * v]) + sum(nbr_axis[2 * v + 1]));
      }
    });
    std::swap(a, b);
  }
  return a;
}

template const float* CpuLattice::blurred_rows<1>(const float*, float*, float*, float*) const;
template const float* CpuLattice::blurred_rows<2>(const float*, float*, float*, float*) const;
template const float* CpuLattice::blurred_rows<3>(const float*, float*, float*, float*) const;
template const float* CpuLattice::blurred_rows<4>(const float*, float*, float*, float*) const;
#endif

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
