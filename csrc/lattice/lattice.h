#pragma once
// Permutohedral lattice (Adams, Baek & Davis, Eurographics 2010): the per-point and per-vertex math,
// written once for the CPU and CUDA kernels.
//
// A point with features f in R^d is lifted onto the hyperplane x . 1 = 0 of R^(d+1), where the
// lattice A*_d tiles space with simplices. The point's d+1 enclosing vertices (integer keys of d
// coordinates; the last one is implied by the zero sum) and its barycentric weights in that simplex
// define splatting and slicing; blurring runs a [1/2, 1, 1/2] stencil along each of the d+1 lattice
// axes. The feature scaling below makes the whole splat-blur-slice approximate a Gaussian of unit
// standard deviation in feature space, with the conventions of Krähenbühl's dense-CRF code (so a CRF
// built on it gives that code's answers).
//
// Data layout shared by both backends, for P points, dimension d, M distinct vertices:
//   keys  [P*(d+1), d] int32   key of entry e = i*(d+1)+r (vertex r of point i); build time only
//   bary  [P*(d+1)]    float   barycentric weight of entry e
//   vert  [P*(d+1)]    int32   vertex id (0..M-1) of entry e
//   table [cap]        int32   open-addressing hash: -1 or the entry holding the vertex's key
//   nbr   [d+1, M, 2]  int32   vertex id of the -/+ neighbour along each axis, M where absent
//   value buffers [M+1, W] per chunk of W channels: row M stays zero, so a missing neighbour costs
//   no branch.
#include "common/atomics.h"
#include "common/macros.h"

#include <cmath>
#include <cstdint>

namespace emseg {
namespace lattice {

// Keys live in fixed-size registers on the device; 16 dimensions covers the CRF's 5 and then some.
constexpr int kMaxDim = 16;
constexpr int32_t kEmpty = -1;

// Gain that makes the lattice response of a lone point come out near 1 (Krähenbühl's "alpha").
EMSEG_HD float slice_scale(int d) { return 1.0f / (1.0f + powf(2.0f, -static_cast<float>(d))); }

// Per-axis factor of the elevation matrix times the inverse of the lattice's standard deviation
// (Adams et al., p. 5-6); embed_point takes them precomputed, scale[j-1] for j = 1..d.
EMSEG_HD float embed_scale(int j, int d) {
  return sqrtf(2.0f / 3.0f) * static_cast<float>(d + 1) / sqrtf(static_cast<float>((j + 1) * j));
}

// Lift one point onto the lattice: writes its d+1 vertex keys (row-major [(d+1), d]) and weights.
// Cost: O(d^2) flops per point, dominated by the ranking of the remainders. D > 0 fixes d at
// compile time (d_arg is then ignored), so the CPU's copies for the CRF's dimensions unroll.
template <int D = 0>
EMSEG_HD void embed_point(const float* f, int d_arg, const float* scale, int32_t* keys, float* bary) {
  const int d = D > 0 ? D : d_arg;
  float elevated[kMaxDim + 1];
  int32_t rem0[kMaxDim + 1];
  int32_t rank[kMaxDim + 1];
  float b[kMaxDim + 2];
  // Elevation y = E f, evaluated from the last coordinate down (E is lower-triangular-like).
  float running = 0.0f;
  for (int j = d; j > 0; --j) {
    const float cf = f[j - 1] * scale[j - 1];
    elevated[j] = running - static_cast<float>(j) * cf;
    running += cf;
  }
  elevated[0] = running;

  // Nearest "zero-coloured" lattice point: each coordinate to its nearest multiple of d+1.
  const float down = 1.0f / static_cast<float>(d + 1);
  const float up = static_cast<float>(d + 1);
  int32_t sum = 0;
  for (int i = 0; i <= d; ++i) {
    const float v = down * elevated[i];
    // floor and ceil by integer conversion (|v| < 2^22 is validated): libm calls otherwise.
    // The selections are integer and bitwise, not branches, since their outcomes are
    // data-dependent: GCC turns a float subtraction of a comparison, or a product with one,
    // back into a branch.
    const int32_t truncated = static_cast<int32_t>(v);
    const int32_t k_lo = truncated - static_cast<int32_t>(static_cast<float>(truncated) > v);
    const int32_t k_step = static_cast<float>(k_lo) < v;  // ceil - floor: 0 or 1
    const float lo = static_cast<float>(k_lo) * up;
    const float hi = static_cast<float>(k_lo + k_step) * up;
    // The nearer multiple of d+1, as k (d+1): k directly, not r / (d+1), an integer division.
    const int32_t k = k_lo + (k_step & static_cast<int32_t>(hi - elevated[i] < elevated[i] - lo));
    rem0[i] = k * (d + 1);
    sum += k;
  }

  // Rank of each remainder (which simplex of the cell the point is in); ties go to the lower index.
  for (int i = 0; i <= d; ++i) rank[i] = 0;
  for (int i = 0; i < d; ++i) {
    const float di = elevated[i] - static_cast<float>(rem0[i]);
    for (int j = i + 1; j <= d; ++j) {
      // Branch-free: the comparison's outcome is data-dependent and mispredicts half the time.
      const int32_t lt = di < elevated[j] - static_cast<float>(rem0[j]);
      rank[i] += lt;
      rank[j] += 1 - lt;
    }
  }
  // Rounding may leave the point off the hyperplane (sum != 0): wrap ranks back into 0..d.
  // Branch-free too: sum != 0 is common and its sign data-dependent.
  for (int i = 0; i <= d; ++i) {
    const int32_t shifted = rank[i] + sum;
    const int32_t wrap =
        (static_cast<int32_t>(shifted < 0) - static_cast<int32_t>(shifted > d)) * (d + 1);
    rank[i] = shifted + wrap;
    rem0[i] += wrap;
  }

  // Barycentric coordinates from the sorted differences (Adams et al., p. 10).
  for (int i = 0; i <= d + 1; ++i) b[i] = 0.0f;
  for (int i = 0; i <= d; ++i) {
    const float v = (elevated[i] - static_cast<float>(rem0[i])) * down;
    b[d - rank[i]] += v;
    b[d - rank[i] + 1] -= v;
  }
  b[0] += 1.0f + b[d + 1];

  // Vertex r of the simplex: rem0 + the canonical offset, which is r or r-(d+1) by rank. rem0 is a
  // multiple of d+1, so every coordinate of vertex r is r modulo d+1 (its "colour").
  for (int r = 0; r <= d; ++r) {
    for (int i = 0; i < d; ++i) {
      keys[r * d + i] = rem0[i] + (rank[i] <= d - r ? r : r - (d + 1));
    }
    bary[r] = b[r];
  }
}

// 32-bit hash of a key: multiply-add chain, then a murmur3-style finaliser so that the low bits
// (the table is a power of two) depend on every coordinate. The steps are templates so that
// embed_points8 hashes 8 keys at once (U = a vector of uint32) with the same arithmetic.
constexpr uint32_t kHashBasis = 2166136261u;
template <typename U>
EMSEG_HD U hash_step(U h, U coordinate) {
  return (h ^ coordinate) * 16777619u;
}
template <typename U>
EMSEG_HD U hash_finish(U h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}
EMSEG_HD uint32_t hash_key(const int32_t* key, int d) {
  uint32_t h = kHashBasis;
  for (int i = 0; i < d; ++i) h = hash_step(h, static_cast<uint32_t>(key[i]));
  return hash_finish(h);
}

EMSEG_HD bool keys_equal(const int32_t* a, const int32_t* b, int d) {
  for (int i = 0; i < d; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// Insert entry `e` (its key at keys + e*d) and return the entry that owns the key: `e` itself when it
// was first, else the earlier owner; kEmpty when the table is full (the caller retries bigger).
// Lock-free: a slot goes from kEmpty to an entry id once, by CAS (read with an atomic load, since
// a CAS may be under way), and the owner's key was written before any insertion started, so
// reading it is race-free. `mask` = capacity - 1 (a power of two).
// `created` counts new keys so the caller can tell when the table got too full.
EMSEG_HD int32_t hash_insert(int32_t* table, uint32_t mask, const int32_t* keys, int d, int32_t e,
                             int32_t* created) {
  const int32_t* key = keys + static_cast<int64_t>(e) * d;
  uint32_t slot = hash_key(key, d) & mask;
  for (uint32_t probe = 0; probe <= mask; ++probe) {
    // Atomic: another thread's CAS may be writing this slot right now.
    int32_t owner = atomic_load(&table[slot]);
    if (owner == kEmpty) {
      owner = atomic_cas(&table[slot], kEmpty, e);
      if (owner == kEmpty) {
        atomic_add(created, int32_t(1));
        return e;
      }
    }
    if (keys_equal(keys + static_cast<int64_t>(owner) * d, key, d)) return owner;
    slot = (slot + 1) & mask;
  }
  return kEmpty;
}

// Owner entry of `key`, or kEmpty. Read-only, after every insertion has finished.
EMSEG_HD int32_t hash_find(const int32_t* table, uint32_t mask, const int32_t* keys, int d,
                           const int32_t* key) {
  uint32_t slot = hash_key(key, d) & mask;
  for (uint32_t probe = 0; probe <= mask; ++probe) {
    const int32_t owner = table[slot];
    if (owner == kEmpty) return kEmpty;
    if (keys_equal(keys + static_cast<int64_t>(owner) * d, key, d)) return owner;
    slot = (slot + 1) & mask;
  }
  return kEmpty;
}

// The key of a vertex's + neighbour along axis j (0..d): the vertex moves by the vector
// 1 - (d+1) e_j (in d+1 coordinates), so every coordinate moves by +1 except j, which moves by -d
// (the implied last coordinate is axis d). The - neighbour moves by the opposite vector.
EMSEG_HD void plus_neighbour_key(const int32_t* key, int d, int j, int32_t* out) {
  for (int i = 0; i < d; ++i) out[i] = key[i] + 1;
  if (j < d) out[j] = key[j] - d;
}

// The blur links of vertex v (its key: `key`) along all d+1 axes, from its + neighbours alone:
// find(key) is the vertex with that key or kEmpty. When u is v's + neighbour along j, v is u's -
// neighbour, so one lookup fills both links: nbr[(j M + v) 2 + 1] = u and nbr[(j M + u) 2] = v.
// nbr [d+1, M, 2] is filled with M (no such vertex) beforehand. Every (u, j, -) link has one
// writer, u's unique - neighbour, so vertices can be linked in parallel. d+1 lookups per vertex.
template <typename Find>
EMSEG_HD void link_vertex(int32_t v, int32_t M, int d, const int32_t* key, const Find& find,
                          int32_t* nbr) {
  int32_t plus[kMaxDim];
  for (int j = 0; j <= d; ++j) {
    plus_neighbour_key(key, d, j, plus);
    const int32_t u = find(plus);
    if (u == kEmpty) continue;
    int32_t* axis = nbr + static_cast<int64_t>(j) * M * 2;
    axis[static_cast<int64_t>(v) * 2 + 1] = u;
    axis[static_cast<int64_t>(u) * 2] = v;
  }
}

// link_vertex's find over hash_insert's table of entries (the GPU's): the vertex of the entry
// holding the key.
struct EntryTableFind {
  const int32_t* table;
  uint32_t mask;
  const int32_t* keys;
  int d;
  const int32_t* entry_vertex;
  EMSEG_HD int32_t operator()(const int32_t* key) const {
    const int32_t e = hash_find(table, mask, keys, d, key);
    return e == kEmpty ? kEmpty : entry_vertex[e];
  }
};

// Filtering works on channel chunks: values of V channels are stored as ceil(V / W) arrays
// [P][W] (zero-padded), and each chunk goes through splat, blur and slice on its own. Chunks are
// independent, so threads (or CUDA blocks) split the work by chunk without synchronising between
// the d+3 passes, and every inner loop has the constant trip count W and vectorises.
// Chunk width for V channels: 8 (two SSE registers, one AVX) unless V is small.
inline int chunk_width(int64_t V) { return V <= 4 ? 4 : 8; }

EMSEG_HD int64_t chunk_offset(int64_t i, int64_t c, int64_t P, int W) {
  return ((c / W) * P + i) * W + (c % W);
}

// Host builds spell the W-wide row arithmetic with GCC/Clang vector types: left to itself the
// compiler vectorises these gathers across rows (with shuffles) and runs 3-4x slower. CUDA threads
// work one float at a time, so device code (and any other compiler) takes the scalar loops.
// EMSEG_NO_HOST_SIMD makes a host build take them too, so the CPU tests cover the device's bodies
// (tests/gpu_on_cpu).
#if defined(__GNUC__) && !defined(__CUDACC__) && !defined(EMSEG_NO_HOST_SIMD)
#define EMSEG_HOST_SIMD 1
typedef float vf4 __attribute__((vector_size(16), aligned(4)));  // unaligned 4-float row piece
typedef int32_t vi4 __attribute__((vector_size(16), aligned(4)));
inline vf4 vf4_set(float x) { return vf4{x, x, x, x}; }
// Eight lanes: a row group of the CPU's row layout (CpuLattice::blurred_rows).
typedef float vf8 __attribute__((vector_size(32), aligned(4)));
typedef int32_t vi8 __attribute__((vector_size(32), aligned(4)));
typedef uint32_t vu8 __attribute__((vector_size(32), aligned(4)));
inline vf8 vf8_set(float x) { return vf8{x, x, x, x, x, x, x, x}; }
// A whole row of a chunk as one vector: two SSE operations each, or one where the caller is
// compiled for AVX (lattice_cpu.cpp dispatches to such a copy at run time).
template <int W>
struct HostRow;
template <>
struct HostRow<4> {
  typedef float type __attribute__((vector_size(16), aligned(4)));
};
template <>
struct HostRow<8> {
  typedef vf8 type;
};
// Wider rows (the CPU's row layout, CpuLattice::blurred_rows) as G eight-lane vectors, with the
// arithmetic the row functions below use, lane by lane.
template <int G>
struct Lanes {
  vf8 g[G];
  Lanes& operator+=(const Lanes& o) {
    for (int k = 0; k < G; ++k) g[k] += o.g[k];
    return *this;
  }
  friend Lanes operator+(Lanes a, const Lanes& b) { return a += b; }
  friend Lanes operator*(float s, Lanes a) {
    for (int k = 0; k < G; ++k) a.g[k] = s * a.g[k];
    return a;
  }
};
template <>
struct HostRow<16> {
  typedef Lanes<2> type;
};
template <>
struct HostRow<24> {
  typedef Lanes<3> type;
};
template <>
struct HostRow<32> {
  typedef Lanes<4> type;
};
#else
#define EMSEG_HOST_SIMD 0
#endif

// Splat as a gather: vertex v sums w * in[point] over its list, in entry order (so the result does
// not depend on thread scheduling). The list holds (point, weight) pairs, sorted by vertex at build
// time. 2 W flops, 8 + 4 W bytes read per listed entry.
template <int W>
EMSEG_HD void splat_vertex(int32_t v, const int32_t* start, const int32_t* point,
                           const float* weight, const float* in, float* out) {
#if EMSEG_HOST_SIMD
  typedef typename HostRow<W>::type Row;
  Row acc = {};
  for (int32_t k = start[v]; k < start[v + 1]; ++k) {
    acc += weight[k] * *reinterpret_cast<const Row*>(in + static_cast<int64_t>(point[k]) * W);
  }
  *reinterpret_cast<Row*>(out + static_cast<int64_t>(v) * W) = acc;
#else
  float acc[W];
  for (int c = 0; c < W; ++c) acc[c] = 0.0f;
  for (int32_t k = start[v]; k < start[v + 1]; ++k) {
    const float w = weight[k];
    const float* x = in + static_cast<int64_t>(point[k]) * W;
    for (int c = 0; c < W; ++c) acc[c] += w * x[c];
  }
  float* o = out + static_cast<int64_t>(v) * W;
  for (int c = 0; c < W; ++c) o[c] = acc[c];
#endif
}

// Splat as a scatter, for one thread that owns the whole output (the CPU's per-chunk tasks): adds
// point i's row into its d+1 vertices. Called for i = 0, 1, ... it sums each vertex's terms in
// entry order, exactly as splat_vertex does, but reads the input sequentially: faster on a CPU,
// where the vertex rows stay in cache and the input rows would not.
template <int W>
EMSEG_HD void splat_point_scatter(int64_t i, int d, const int32_t* vert, const float* bary,
                                  const float* in, float* out) {
  const int64_t base = i * (d + 1);
#if EMSEG_HOST_SIMD
  typedef typename HostRow<W>::type Row;
  const Row x = *reinterpret_cast<const Row*>(in + i * W);
  for (int r = 0; r <= d; ++r) {
    *reinterpret_cast<Row*>(out + static_cast<int64_t>(vert[base + r]) * W) += bary[base + r] * x;
  }
#else
  const float* x = in + i * W;
  for (int r = 0; r <= d; ++r) {
    float* o = out + static_cast<int64_t>(vert[base + r]) * W;
    for (int c = 0; c < W; ++c) o[c] += bary[base + r] * x[c];
  }
#endif
}

// One blur pass along one axis at vertex v: out = in + (in[-] + in[+]) / 2. 3 W reads, W writes.
template <int W>
EMSEG_HD void blur_vertex(int32_t v, const int32_t* nbr_axis, const float* in, float* out) {
#if EMSEG_HOST_SIMD
  typedef typename HostRow<W>::type Row;
  const Row c = *reinterpret_cast<const Row*>(in + static_cast<int64_t>(v) * W);
  const Row a = *reinterpret_cast<const Row*>(in + static_cast<int64_t>(nbr_axis[2 * v]) * W);
  const Row b = *reinterpret_cast<const Row*>(in + static_cast<int64_t>(nbr_axis[2 * v + 1]) * W);
  *reinterpret_cast<Row*>(out + static_cast<int64_t>(v) * W) = c + 0.5f * (a + b);
#else
  const float* c = in + static_cast<int64_t>(v) * W;
  const float* a = in + static_cast<int64_t>(nbr_axis[2 * v]) * W;
  const float* b = in + static_cast<int64_t>(nbr_axis[2 * v + 1]) * W;
  float* o = out + static_cast<int64_t>(v) * W;
  for (int k = 0; k < W; ++k) o[k] = c[k] + 0.5f * (a[k] + b[k]);
#endif
}

// Axis of the step-th blur pass (step = 0..d). The filter is s * Slice * B_d ... B_0 * Splat with
// Slice = Splat^T and each one-axis blur B_j symmetric (v is u's - neighbour along j exactly when u
// is v's +), so its transpose is the same passes with the blurs in reverse order. On a sparse
// lattice the B_j do not commute (a missing neighbour breaks the product's symmetry), so the
// adjoint, the gradient with respect to the values, needs that order.
EMSEG_HD int blur_axis(int step, int d, bool adjoint) { return adjoint ? d - step : step; }

#if EMSEG_HOST_SIMD
// Host: point i's slice as a row value, scale * sum_r bary[r] * values[vertex r] (for a caller
// that uses it at once, as the CPU's fused mean-field update).
template <int W>
inline typename HostRow<W>::type sliced_row(int64_t i, int d, const int32_t* vert,
                                            const float* bary, const float* values, float scale) {
  typedef typename HostRow<W>::type Row;
  const int64_t base = i * (d + 1);
  Row acc = {};
  for (int r = 0; r <= d; ++r) {
    acc += (bary[base + r] * scale) *
           *reinterpret_cast<const Row*>(values + static_cast<int64_t>(vert[base + r]) * W);
  }
  return acc;
}
#endif

#if EMSEG_HOST_SIMD
// Host: embed_point<D> of 8 points at once, one per lane (the CPU's lattice build; worth it only
// compiled for AVX2, and without FMA, whose contractions would round differently). Every lane
// runs embed_point's operations in its order, so keys and weights are the same bits; the
// barycentric sums become selections (rank is a permutation, so each weight gets one term of
// each sign, and a - c rounds alike in either order). Comparisons give lane masks (-1 or 0).
// f: 8 points [8][D]; keys [8][(D+1) D]; bary [8][D+1]; hashes [8][D+1], hash_key of each key.
template <int D>
inline void embed_points8(const float* f, const float* scale, int32_t* keys, float* bary,
                          uint32_t* hashes) {
  static_assert(D > 0 && D <= kMaxDim, "embed_points8: D fixed at compile time");
  vf8 elevated[D + 1];
  vi8 rem0[D + 1], rank[D + 1];
  vf8 running = {};
  for (int j = D; j > 0; --j) {
    vf8 x;
    for (int p = 0; p < 8; ++p) x[p] = f[p * D + j - 1];
    const vf8 cf = x * scale[j - 1];
    elevated[j] = running - static_cast<float>(j) * cf;
    running += cf;
  }
  elevated[0] = running;
  const float down = 1.0f / static_cast<float>(D + 1);
  const float up = static_cast<float>(D + 1);
  vi8 sum = {};
  for (int i = 0; i <= D; ++i) {
    const vf8 v = down * elevated[i];
    const vi8 truncated = __builtin_convertvector(v, vi8);
    const vi8 k_lo = truncated + (__builtin_convertvector(truncated, vf8) > v);
    const vi8 step_mask = __builtin_convertvector(k_lo, vf8) < v;
    const vf8 lo = __builtin_convertvector(k_lo, vf8) * up;
    const vf8 hi = __builtin_convertvector(k_lo - step_mask, vf8) * up;
    const vi8 k = k_lo - (step_mask & (hi - elevated[i] < elevated[i] - lo));
    rem0[i] = k * (D + 1);
    sum += k;
  }
  for (int i = 0; i <= D; ++i) rank[i] = vi8{};
  for (int i = 0; i < D; ++i) {
    const vf8 di = elevated[i] - __builtin_convertvector(rem0[i], vf8);
    for (int j = i + 1; j <= D; ++j) {
      const vi8 lt = di < elevated[j] - __builtin_convertvector(rem0[j], vf8);
      rank[i] -= lt;
      rank[j] += 1 + lt;
    }
  }
  for (int i = 0; i <= D; ++i) {
    const vi8 shifted = rank[i] + sum;
    const vi8 wrap = ((shifted > D) - (shifted < 0)) * (D + 1);
    rank[i] = shifted + wrap;
    rem0[i] += wrap;
  }
  // b[k] = v[i with rank d - k] - v[i with rank d - k + 1], as embed_point's sums leave it.
  vi8 v_bits[D + 1];
  for (int i = 0; i <= D; ++i) {
    const vf8 v = (elevated[i] - __builtin_convertvector(rem0[i], vf8)) * down;
    v_bits[i] = (vi8)v;  // a cast between vector types keeps the bits
  }
  auto weight_of_rank = [&](int r) {
    vi8 bits = {};
    for (int i = 0; i <= D; ++i) bits |= v_bits[i] & (rank[i] == r);
    return (vf8)bits;
  };
  vf8 b[D + 2];
  b[0] = 0.0f + weight_of_rank(D);
  // (0 + x) - y, as embed_point sums it: x - y alone differs for x = -0, y = +0 (flush-to-zero).
  for (int k = 1; k <= D; ++k) b[k] = (0.0f + weight_of_rank(D - k)) - weight_of_rank(D - k + 1);
  b[D + 1] = 0.0f - weight_of_rank(0);
  b[0] += 1.0f + b[D + 1];
  for (int r = 0; r <= D; ++r) {
    vu8 h = vu8{} + kHashBasis;  // hash_key, lane by lane
    for (int i = 0; i < D; ++i) {
      const vi8 key = rem0[i] + r + (D + 1) * (rank[i] > D - r);
      for (int p = 0; p < 8; ++p) keys[p * (D + 1) * D + r * D + i] = key[p];
      h = hash_step(h, (vu8)key);
    }
    h = hash_finish(h);
    for (int p = 0; p < 8; ++p) {
      bary[p * (D + 1) + r] = b[r][p];
      hashes[p * (D + 1) + r] = h[p];
    }
  }
}
#endif

// Slice at point i: out = scale * sum_r bary[r] * values[vertex r]. (d+1) W reads, W writes.
template <int W>
EMSEG_HD void slice_point(int64_t i, int d, const int32_t* vert, const float* bary,
                          const float* values, float scale, float* out) {
#if EMSEG_HOST_SIMD
  *reinterpret_cast<typename HostRow<W>::type*>(out + i * W) =
      sliced_row<W>(i, d, vert, bary, values, scale);
#else
  const int64_t base = i * (d + 1);
  float acc[W];
  for (int c = 0; c < W; ++c) acc[c] = 0.0f;
  for (int r = 0; r <= d; ++r) {
    const float w = bary[base + r] * scale;
    const float* x = values + static_cast<int64_t>(vert[base + r]) * W;
    for (int c = 0; c < W; ++c) acc[c] += w * x[c];
  }
  float* o = out + i * W;
  for (int c = 0; c < W; ++c) o[c] = acc[c];
#endif
}

// Smallest power of two >= 2n: a table for n keys at load factor at most 1/2.
inline uint32_t table_capacity(int64_t n) {
  uint64_t cap = 16;
  while (cap < 2 * static_cast<uint64_t>(n)) cap <<= 1;
  return static_cast<uint32_t>(cap);
}

}  // namespace lattice
}  // namespace emseg
