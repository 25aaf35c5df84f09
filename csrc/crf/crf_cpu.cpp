// CPU dense-CRF mean-field inference on permutohedral lattices.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "common/interrupt.h"
#include "common/library.h"
#include "crf/crf.h"
#include "crf/crf_checks.h"
#include "crf/crf_features.h"
#include "lattice/lattice_cpu.h"

namespace emseg {
namespace {

// The per-pixel update over a range of pixels, compiled for the baseline and for AVX2 + FMA.
template <int W>
void mean_field_range(int64_t lo, int64_t hi, const crf::MeanFieldArgs& args) {
  for (int64_t i = lo; i < hi; ++i) crf::mean_field_pixel<W>(i, args);
}

template <int W>
EMSEG_AVX2_TARGET void mean_field_range_avx2(int64_t lo, int64_t hi,
                                             const crf::MeanFieldArgs& args) {
  for (int64_t i = lo; i < hi; ++i) crf::mean_field_pixel<W>(i, args);
}

template <int W>
void mean_field_update(int64_t P, const crf::MeanFieldArgs& args) {
  const bool avx2 = lattice::cpu_has_avx2();
  lattice::parallel_blocks(P, 1024, [&](int64_t lo, int64_t hi) {
    if (avx2) {
      mean_field_range_avx2<W>(lo, hi, args);
    } else {
      mean_field_range<W>(lo, hi, args);
    }
  });
}

at::Tensor dense_crf_cpu(const at::Tensor& unary_in, const at::Tensor& image_in,
                         const at::Tensor& compat_in, c10::ArrayRef<double> pos_std,
                         c10::ArrayRef<double> bi_std, int64_t iterations,
                         const std::optional<at::Tensor>& sizes, bool logits) {
  TORCH_CHECK(unary_in.device().is_cpu(), "unary must be a CPU tensor for the CPU kernel, got ",
              unary_in.device());
  const DenseCrfPlan plan =
      check_dense_crf_inputs(unary_in, image_in, compat_in, pos_std, bi_std, iterations, sizes);
  const int64_t N = unary_in.size(0), L = unary_in.size(1), H = unary_in.size(2),
                Wd = unary_in.size(3);
  const at::Tensor unary = unary_in.contiguous();
  const at::Tensor compat = compat_in.cpu().contiguous();
  at::Tensor out = at::zeros_like(unary, at::MemoryFormat::Contiguous);

  const int W = lattice::chunk_width(L);
  const int64_t C = (L + W - 1) / W;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t h = plan.height[n], w = plan.width[n];
    const int64_t P = h * w;
    if (P == 0) continue;
    const auto fopts = unary_in.options().dtype(at::kFloat);
    // Energies straight from [L, H, W] into the chunked [C][P][W] layout the update reads, one pass.
    at::Tensor U = at::empty({C, P, W}, fopts);
    {
      const float* ub = unary.data_ptr<float>() + n * L * H * Wd;
      float* ud = U.data_ptr<float>();
      const float sign = logits ? -1.0f : 1.0f;
      lattice::parallel_blocks(h, 16, [&](int64_t y0, int64_t y1) {
        for (int64_t y = y0; y < y1; ++y) {
          for (int64_t x = 0; x < w; ++x) {
            const int64_t i = y * w + x;
            float lowest = crf::kPadEnergy;  // shift: the lowest energy becomes 0 (see crf.h)
            for (int64_t l = 0; l < L; ++l) lowest = std::min(lowest, sign * ub[(l * H + y) * Wd + x]);
            for (int64_t l = 0; l < C * W; ++l) {
              ud[lattice::chunk_offset(i, l, P, W)] =
                  l < L ? sign * ub[(l * H + y) * Wd + x] - lowest : crf::kPadEnergy;
            }
          }
        }
      });
    }

    crf::MeanFieldArgs args{};
    args.P = P;
    args.L = L;
    args.C = C;
    args.unary = U.data_ptr<float>();
    at::Tensor Q = at::zeros({C, P, W}, fopts);
    args.q = Q.data_ptr<float>();

    // Build each active kernel's lattice once (each build split over the threads); every
    // iteration below reuses them.
    int kernels[crf::kMaxKernels];
    int used = 0;
    for (int k = 0; k < crf::kMaxKernels; ++k) {
      if (plan.active[k] && iterations > 0) kernels[used++] = k;
    }
    std::unique_ptr<lattice::CpuLattice> lat[crf::kMaxKernels];
    for (int s = 0; s < used; ++s) {
      const int k = kernels[s];
      const at::Tensor f = k == 0 ? crf_features(image_in[n], h, w, pos_std, false)
                                  : crf_features(image_in[n], h, w, bi_std, true);
      lat[s] = std::make_unique<lattice::CpuLattice>(f.data_ptr<float>(), P, int(f.size(1)));
    }

    at::Tensor norm[crf::kMaxKernels], next_in[crf::kMaxKernels], sliced[crf::kMaxKernels],
        scratch[crf::kMaxKernels], diag[crf::kMaxKernels];
    // Symmetric normalisation: the response to all-ones, one W=4 chunk per kernel (lane 0 used).
    at::Tensor ones = at::zeros({P, 4}, fopts);
    ones.select(1, 0).fill_(1.0f);
    at::Tensor response[crf::kMaxKernels], norm_scratch[crf::kMaxKernels];
    for (int s = 0; s < used; ++s) {
      response[s] = at::empty({P, 4}, fopts);
      norm_scratch[s] = at::empty({2, lat[s]->num_vertices() + 1, 4}, fopts);
    }
    for (int s = 0; s < used; ++s) {
      float* a = norm_scratch[s].data_ptr<float>();
      lat[s]->filter_chunk<4>(ones.data_ptr<float>(), response[s].data_ptr<float>(), a,
                              a + (lat[s]->num_vertices() + 1) * 4, /*inner_parallel=*/true);
    }
    for (int s = 0; s < used; ++s) {
      const int k = kernels[s];
      norm[s] = at::empty({P}, fopts);
      float* nk = norm[s].data_ptr<float>();
      const float* r = response[s].data_ptr<float>();
      for (int64_t i = 0; i < P; ++i) nk[i] = crf::symmetric_norm(r[4 * i]);
      next_in[s] = at::zeros({C, P, W}, fopts);
      sliced[s] = at::empty({C, P, W}, fopts);
      scratch[s] = at::empty({C, 2, lat[s]->num_vertices() + 1, W}, fopts);
      args.sliced[s] = sliced[s].data_ptr<float>();
      args.norm[s] = nk;
      args.compat[s] = compat[k].data_ptr<float>();
      if (plan.diagonal[k]) {
        diag[s] = at::zeros({C * W}, fopts);
        diag[s].slice(0, 0, L).copy_(at::diag(compat[k]));
        args.diag[s] = diag[s].data_ptr<float>();
      }
      args.next_in[s] = next_in[s].data_ptr<float>();
    }

    auto update = [&](int num_kernels) {
      args.num_kernels = num_kernels;
      if (W == 4) {
        mean_field_update<4>(P, args);
      } else {
        mean_field_update<8>(P, args);
      }
    };
    // One filtering task per (kernel, chunk); each runs all its passes without synchronising.
    const int64_t tasks = used * C;
    const bool inner = tasks < at::get_num_threads();
    auto filter_task = [&](int64_t t) {
      const int64_t s = t / C, c = t % C;
      const int64_t M1 = lat[s]->num_vertices() + 1;
      float* a = scratch[s].data_ptr<float>() + c * 2 * M1 * W;
      const float* in = next_in[s].data_ptr<float>() + c * P * W;
      float* o = sliced[s].data_ptr<float>() + c * P * W;
      if (W == 4) {
        lat[s]->filter_chunk<4>(in, o, a, a + M1 * W, inner);
      } else {
        lat[s]->filter_chunk<8>(in, o, a, a + M1 * W, inner);
      }
    };

    update(0);  // Q = softmax(-U) and the first lattice inputs n_k Q
    for (int64_t it = 0; it < iterations && used > 0; ++it) {
      check_interrupt();
      if (inner) {
        for (int64_t t = 0; t < tasks; ++t) filter_task(t);
      } else {
        lattice::run_tasks(tasks, filter_task);
      }
      update(used);
    }
    {
      const float* qd = Q.data_ptr<float>();
      float* ob = out.data_ptr<float>() + n * L * H * Wd;
      lattice::parallel_blocks(h, 16, [&](int64_t y0, int64_t y1) {
        for (int64_t y = y0; y < y1; ++y) {
          for (int64_t l = 0; l < L; ++l) {
            for (int64_t x = 0; x < w; ++x) {
              ob[(l * H + y) * Wd + x] = qd[lattice::chunk_offset(y * w + x, l, P, W)];
            }
          }
        }
      });
    }
  }
  return out;
}

}  // namespace
}  // namespace emseg

EMSEG_CPU_LIBRARY_IMPL(m) { m.impl("dense_crf", &emseg::dense_crf_cpu); }
