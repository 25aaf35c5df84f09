// CPU dense-CRF mean-field inference and its gradient: the CPU hooks of the shared driver
// (crf_driver.h). What stays here is what the CPU does its own way: lattices built and filtered by
// CpuLattice, filterings as one task per (kernel, chunk), the per-pixel loops compiled twice
// (baseline and AVX2 + FMA) and picked at run time.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>

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

struct CpuCrfBackend {
  using Lattice = lattice::CpuLattice;

  static Lattice build(const at::Tensor& f) {
    return Lattice(f.data_ptr<float>(), f.size(0), static_cast<int>(f.size(1)));
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
    for (int64_t i = 0; i < P; ++i) norm[i] = crf::symmetric_norm(response[i]);
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
