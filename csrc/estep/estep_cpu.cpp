// CPU kernels of the E-step operators: one pixel (em_fixed) or one image (em_adapt) per task of
// at::parallel_for, each running the shared per-element code of estep.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/library.h"

#include <algorithm>
#include <vector>

#include "common/interrupt.h"
#include "estep/estep.h"
#include "estep/estep_checks.h"

namespace emseg {
namespace estep {
namespace {

// em_fixed walks a tile of pixels class by class: each class plane is read contiguously and the
// tile's running argmax stays in L1, so the inner loop vectorises. One pass over the scores
// (C * sizeof(scalar_t) bytes read and 8 written per pixel). Same bias and tie rule as the
// per-pixel em_fixed_pixel that the CUDA kernel runs.
constexpr int64_t kTile = 256;

template <typename scalar_t>
void em_fixed_tile(const scalar_t* scores, int64_t plane, int64_t num_classes, const bool* present,
                   double fg_bias, double bg_bias, bool suppress_absent, int64_t count,
                   int64_t* labels) {
  using acc_t = typename AccType<scalar_t>::type;
  acc_t best[kTile];
  int32_t best_class[kTile];
  const acc_t fg = static_cast<acc_t>(fg_bias), bg = static_cast<acc_t>(bg_bias);
  for (int64_t j = 0; j < count; ++j) {
    best[j] = static_cast<acc_t>(scores[j]) + bg;
    best_class[j] = 0;
  }
  for (int32_t c = 1; c < num_classes; ++c) {
    acc_t bias;
    if (!em_fixed_bias(c, present, fg, bg, suppress_absent, &bias)) continue;
    const scalar_t* plane_scores = scores + c * plane;
    for (int64_t j = 0; j < count; ++j) {
      keep_max(static_cast<acc_t>(plane_scores[j]) + bias, c, &best[j], &best_class[j]);
    }
  }
  for (int64_t j = 0; j < count; ++j) labels[j] = best_class[j];
}

at::Tensor em_fixed_cpu(const at::Tensor& scores_in, const at::Tensor& present_in, double fg_bias,
                        double bg_bias, bool suppress_absent) {
  validate_em_fixed(scores_in, present_in, fg_bias, bg_bias);
  const at::Tensor scores = scores_in.contiguous();
  const at::Tensor present = present_in.contiguous();
  const int64_t n = scores.size(0), c = scores.size(1), h = scores.size(2), w = scores.size(3);
  const int64_t pixels = h * w;
  at::Tensor labels = at::empty({n, h, w}, scores.options().dtype(at::kLong));
  if (labels.numel() == 0) return labels;
  const bool* present_ptr = present.data_ptr<bool>();
  int64_t* out = labels.data_ptr<int64_t>();
  const int64_t tiles_per_image = ceil_div(pixels, kTile);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "em_fixed_cpu", [&] {
    const scalar_t* s = scores.data_ptr<scalar_t>();
    at::parallel_for(0, n * tiles_per_image, 16, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t image = t / tiles_per_image, first = (t - image * tiles_per_image) * kTile;
        const int64_t count = std::min(kTile, pixels - first);
        em_fixed_tile(s + image * c * pixels + first, pixels, c, present_ptr + image * c, fg_bias,
                      bg_bias, suppress_absent, count, out + image * pixels + first);
      }
    });
  });
  return labels;
}

std::tuple<at::Tensor, at::Tensor> em_adapt_cpu(const at::Tensor& scores_in,
                                                const at::Tensor& present_in, double fg_portion,
                                                double bg_portion, int64_t max_iter) {
  validate_em_adapt(scores_in, present_in, fg_portion, bg_portion, max_iter);
  const at::Tensor scores = scores_in.contiguous();
  const at::Tensor present = present_in.contiguous();
  const int64_t n = scores.size(0), c = scores.size(1), h = scores.size(2), w = scores.size(3);
  const int64_t pixels = h * w;
  at::Tensor labels = at::empty({n, h, w}, scores.options().dtype(at::kLong));
  at::Tensor biases = at::empty({n, c}, scores.options().dtype(at::kDouble));
  if (n == 0) return {labels, biases};
  const bool* present_ptr = present.data_ptr<bool>();
  int64_t* label_ptr = labels.data_ptr<int64_t>();
  double* bias_ptr = biases.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "em_adapt_cpu", [&] {
    const scalar_t* s = scores.data_ptr<scalar_t>();
    // One image at a time, so that Ctrl-C stops the batch after the images in flight.
    parallel_items_interruptible(n, [&](int64_t image) {
      std::vector<uint64_t> keys(pixels);
      std::vector<int64_t> state(2 * c);
      AdaptShared shared;
      const SerialTeam team;
      em_adapt_image(s + image * c * pixels, present_ptr + image * c, c, pixels, fg_portion,
                     bg_portion, max_iter, bias_ptr + image * c, keys.data(), state.data(),
                     label_ptr + image * pixels, &shared, team);
    });
  });
  return {labels, biases};
}

}  // namespace

EMSEG_CPU_LIBRARY_IMPL(m) {
  m.impl("em_fixed", &em_fixed_cpu);
  m.impl("em_adapt", &em_adapt_cpu);
}

}  // namespace estep
}  // namespace emseg
