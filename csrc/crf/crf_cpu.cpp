// CPU dense-CRF mean-field inference and its gradient: the CPU hooks of the shared driver
// (crf_driver.h). What stays here is what the CPU does its own way: lattices built and filtered by
// CpuLattice; inference in the row layout (mean_field_rows, the filterings fused with the update);
// elsewhere (the backward, full compatibilities, > 32 labels) filterings as one task per (kernel,
// chunk); the layout conversions as loops; the per-pixel loops compiled twice (baseline and
// AVX2 + FMA) and picked at run time.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "common/interrupt.h"
#include "common/library.h"
#include "crf/crf.h"
#include "crf/crf_driver.h"
#include "lattice/lattice_cpu.h"

namespace emseg {
namespace {

// Pixel blocks, compiled for the baseline and for AVX2 + FMA (lattice_cpu.h).
template <typename F>
void for_pixels(int64_t P, const F& f) {
  lattice::parallel_blocks_as_passes(P, 1024, f);
}

#if EMSEG_HOST_SIMD
using lattice::vf8;
using lattice::vi8;

// The softmax of a pixel's row a[G] (8 G lanes, padding lanes -inf), stored into q.
template <int G>
inline void softmax_row(vf8* a, float* q) {
  vf8 mx = a[0];
  for (int g = 1; g < G; ++g) mx = a[g] > mx ? a[g] : mx;
  float m = mx[0];
  for (int t = 1; t < 8; ++t) m = mx[t] > m ? mx[t] : m;
  vf8 sum = {};
  for (int g = 0; g < G; ++g) {
    a[g] = crf::exp_approx_lanes<vf8, vi8>(a[g] - m);
    sum += a[g];
  }
  float total = 0.0f;
  for (int t = 0; t < 8; ++t) total += sum[t];
  const float inv = 1.0f / total;
  vf8* out = reinterpret_cast<vf8*>(q);
  for (int g = 0; g < G; ++g) out[g] = a[g] * inv;
}

// One mean-field step in the row layout ([P][8 G]): each kernel's splat and blur, then one pass
// over the pixels that slices every kernel and updates Q (Potts: the message of lane l is
// C_k(l, l) times its slice). Per iteration this reads Q twice (the splats) and the energies once
// and writes Q once; the chunked layout also writes and reads a message array per kernel and
// reads every entry's vertex and weight once per chunk.
template <int G>
void mean_field_rows(const crf::MeanFieldArgs& a, const lattice::CpuLattice* const* lat,
                     float* const* scratch) {
  constexpr int64_t R = 8 * G;
  const float* blurred[crf::kMaxKernels] = {nullptr, nullptr};
  float gain[crf::kMaxKernels] = {0.0f, 0.0f};
  for (int k = 0; k < a.num_kernels; ++k) {
    const int64_t rows = lat[k]->num_vertices() + 1;
    blurred[k] = lat[k]->blurred_rows<G>(a.q, scratch[k], scratch[k] + rows * R,
                                         scratch[k] + 2 * rows * R);
    gain[k] = lattice::slice_scale(lat[k]->dim());
  }
  for_pixels(a.P, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      vf8 x[G];
      const vf8* u = reinterpret_cast<const vf8*>(a.unary + i * R);
      for (int g = 0; g < G; ++g) x[g] = -u[g];
      for (int k = 0; k < a.num_kernels; ++k) {
        const auto row = lat[k]->slice_row<G>(i, blurred[k], gain[k]);
        const vf8* sliced = reinterpret_cast<const vf8*>(&row);  // G groups of 8 lanes
        const vf8* diag = reinterpret_cast<const vf8*>(a.diag[k]);
        for (int g = 0; g < G; ++g) x[g] -= diag[g] * sliced[g];
      }
      softmax_row<G>(x, a.q + i * R);
    }
  });
}
#endif

struct CpuCrfBackend {
  using Lattice = lattice::CpuLattice;

#if EMSEG_HOST_SIMD
  // Inference runs in the row layout when every kernel is Potts (a full compatibility mixes
  // labels across the row's groups, which the fused update does not) and L <= 32.
  static constexpr bool kRows = true;
  static int row_width(int64_t L, bool all_kernels_diagonal) {
    return all_kernels_diagonal && L <= 32 ? static_cast<int>(8 * ((L + 7) / 8)) : 0;
  }
  static void mean_field_rows(const crf::MeanFieldArgs& a, const Lattice* const* lat,
                              float* const* scratch, int width) {
    switch (width / 8) {
      case 1: return emseg::mean_field_rows<1>(a, lat, scratch);
      case 2: return emseg::mean_field_rows<2>(a, lat, scratch);
      case 3: return emseg::mean_field_rows<3>(a, lat, scratch);
      default: return emseg::mean_field_rows<4>(a, lat, scratch);
    }
  }
#else
  static constexpr bool kRows = false;
  static int row_width(int64_t, bool) { return 0; }
#endif

  // chunked_energies_torch in one pass over the image rows: per row, each label's plane is read in
  // order (the lowest energies first), and the row's pixels are written (a few tens of KB: in cache).
  static at::Tensor chunked_energies(const at::Tensor& unary_region, bool logits, int W, int64_t C) {
    const int64_t L = unary_region.size(0), h = unary_region.size(1), w = unary_region.size(2);
    const int64_t P = h * w;
    const int64_t label_stride = unary_region.stride(0), row_stride = unary_region.stride(1);
    // A width-1 tensor counts as contiguous whatever its last stride: x is then always 0.
    TORCH_INTERNAL_ASSERT(w == 1 || unary_region.stride(2) == 1);
    const float* u = unary_region.data_ptr<float>();
    const float sign = logits ? -1.0f : 1.0f;
    at::Tensor chunks = at::empty({C, P, W}, unary_region.options());
    float* out = chunks.data_ptr<float>();
    lattice::parallel_blocks(h, 8, [&](int64_t lo, int64_t hi) {
      std::vector<float> lowest(w);
      for (int64_t y = lo; y < hi; ++y) {
        const float* row = u + y * row_stride;
        for (int64_t x = 0; x < w; ++x) lowest[x] = sign * row[x];
        for (int64_t l = 1; l < L; ++l) {
          const float* plane = row + l * label_stride;
          for (int64_t x = 0; x < w; ++x) lowest[x] = std::min(lowest[x], sign * plane[x]);
        }
        for (int64_t l = 0; l < C * W; ++l) {
          if (l >= L) {  // padding lanes
            for (int64_t x = 0; x < w; ++x) {
              out[lattice::chunk_offset(y * w + x, l, P, W)] = crf::kPadEnergy;
            }
            continue;
          }
          const float* plane = row + l * label_stride;
          for (int64_t x = 0; x < w; ++x) {
            out[lattice::chunk_offset(y * w + x, l, P, W)] = sign * plane[x] - lowest[x];
          }
        }
      }
    });
    return chunks;
  }

  // write_plain_torch in one pass over the image rows, each label's plane written in order.
  static void write_plain(const at::Tensor& chunks, at::Tensor plain) {
    const int64_t L = plain.size(0), h = plain.size(1), w = plain.size(2), P = chunks.size(1);
    const int W = static_cast<int>(chunks.size(2));
    const int64_t label_stride = plain.stride(0), row_stride = plain.stride(1);
    TORCH_INTERNAL_ASSERT((w == 1 || plain.stride(2) == 1) && chunks.is_contiguous());
    const float* q = chunks.data_ptr<float>();
    float* out = plain.data_ptr<float>();
    lattice::parallel_blocks(h, 8, [&](int64_t lo, int64_t hi) {
      for (int64_t y = lo; y < hi; ++y) {
        for (int64_t l = 0; l < L; ++l) {
          float* plane = out + y * row_stride + l * label_stride;
          for (int64_t x = 0; x < w; ++x) plane[x] = q[lattice::chunk_offset(y * w + x, l, P, W)];
        }
      }
    });
  }

  static std::vector<Lattice> build(const std::vector<at::Tensor>& features) {
    std::vector<Lattice::Points> sets;
    for (const at::Tensor& f : features) {
      sets.push_back({f.data_ptr<float>(), f.size(0), static_cast<int>(f.size(1))});
    }
    return Lattice::build(sets);
  }
  static int64_t vertices(const Lattice& lat) { return lat.num_vertices(); }
  static void scale_points(Lattice& lat, const at::Tensor& n) { lat.scale_points(n.data_ptr<float>()); }

  // One task per (lattice, chunk), each running all its passes without synchronising; with fewer
  // tasks than threads, each chunk's passes are split over the threads instead.
  static void filter(const Lattice* const* lat, int count, const float* const* in,
                     float* const* out, float* const* scratch, int W, int64_t C, bool adjoint) {
    const int64_t tasks = count * C;
    const bool inner = tasks < at::get_num_threads();
    auto task = [&](int64_t t) {
      const int64_t s = t / C, c = t % C;
      const int64_t P = lat[s]->num_points(), M1 = lat[s]->num_vertices() + 1;
      float* a = scratch[s] + c * 2 * M1 * W;
      if (W == 4) {
        lat[s]->filter_chunk<4>(in[s] + c * P * W, out[s] + c * P * W, a, a + M1 * W, inner,
                                adjoint);
      } else {
        lat[s]->filter_chunk<8>(in[s] + c * P * W, out[s] + c * P * W, a, a + M1 * W, inner,
                                adjoint);
      }
    };
    if (inner) {
      for (int64_t t = 0; t < tasks; ++t) task(t);
    } else {
      lattice::run_tasks(tasks, task);
    }
  }

  static void symmetric_norm(const float* response, int64_t P, float* norm) {
    lattice::parallel_blocks(P, 4096, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) norm[i] = crf::symmetric_norm(response[i]);
    });
  }

  static void mean_field(const crf::MeanFieldArgs& args, int W) {
    for_pixels(args.P, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        if (W == 4) {
          crf::mean_field_pixel<4>(i, args);
        } else {
          crf::mean_field_pixel<8>(i, args);
        }
      }
    });
  }

  // Several images: one per thread at a time, each run on its thread alone (no synchronisation
  // inside an image; the outputs are the same bits either way, see lattice_cpu.cpp).
  template <typename F>
  static void for_each_image(int64_t N, const F& f) {
    if (N > 1 && at::get_num_threads() > 1 && !at::in_parallel_region()) {
      parallel_items_interruptible(N, f);
    } else {
      for (int64_t n = 0; n < N; ++n) f(n);
    }
  }

  static void mean_field_grad(const crf::MeanFieldGradArgs& args, int W) {
    for_pixels(args.P, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        if (W == 4) {
          crf::mean_field_pixel_grad<4>(i, args);
        } else {
          crf::mean_field_pixel_grad<8>(i, args);
        }
      }
    });
  }
};

void check_cpu(const at::Tensor& unary) {
  TORCH_CHECK(unary.device().is_cpu(), "unary must be a CPU tensor for the CPU kernel, got ",
              unary.device());
}

at::Tensor dense_crf_cpu(const at::Tensor& unary, const at::Tensor& image, const at::Tensor& compat,
                         c10::ArrayRef<double> pos_std, c10::ArrayRef<double> bi_std,
                         int64_t iterations, const std::optional<at::Tensor>& sizes, bool logits) {
  check_cpu(unary);
  return crf::dense_crf_forward<CpuCrfBackend>(unary, image, compat, pos_std, bi_std, iterations,
                                               sizes, logits);
}

at::Tensor dense_crf_backward_cpu(const at::Tensor& grad, const at::Tensor& unary,
                                  const at::Tensor& image, const at::Tensor& compat,
                                  c10::ArrayRef<double> pos_std, c10::ArrayRef<double> bi_std,
                                  int64_t iterations, const std::optional<at::Tensor>& sizes,
                                  bool logits) {
  check_cpu(unary);
  return crf::dense_crf_backward<CpuCrfBackend>(grad, unary, image, compat, pos_std, bi_std,
                                                iterations, sizes, logits);
}

}  // namespace
}  // namespace emseg

EMSEG_CPU_LIBRARY_IMPL(m) {
  m.impl("dense_crf", &emseg::dense_crf_cpu);
  m.impl("dense_crf_backward", &emseg::dense_crf_backward_cpu);
}
