// CPU kernels of the E-step operators: one pixel (em_fixed) or one image (em_adapt) per task of
// at::parallel_for, each running the shared per-element code of estep.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "estep/estep.h"
#include "estep/validate.h"

namespace emseg {
namespace estep {
namespace {

constexpr int64_t kPixelGrain = 8192;

at::Tensor em_fixed_cpu(const at::Tensor& scores_in, const at::Tensor& present_in, double fg_bias,
                        double bg_bias, bool suppress_absent) {
  check_scores(scores_in, "em_fixed");
  check_present(present_in, scores_in, "em_fixed");
  check_bias(fg_bias, "em_fixed", "fg_bias");
  check_bias(bg_bias, "em_fixed", "bg_bias");
  const at::Tensor scores = scores_in.contiguous();
  const at::Tensor present = present_in.contiguous();
  const int64_t n = scores.size(0), c = scores.size(1), h = scores.size(2), w = scores.size(3);
  const int64_t pixels = h * w;
  at::Tensor labels = at::empty({n, h, w}, scores.options().dtype(at::kLong));
  if (labels.numel() == 0) return labels;
  const bool* present_ptr = present.data_ptr<bool>();
  int64_t* out = labels.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "em_fixed_cpu", [&] {
    using acc_t = typename AccType<scalar_t>::type;
    const scalar_t* s = scores.data_ptr<scalar_t>();
    at::parallel_for(0, n * pixels, kPixelGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t image = i / pixels, m = i - image * pixels;
        out[i] = em_fixed_pixel(s + image * c * pixels + m, pixels, c, present_ptr + image * c,
                                static_cast<acc_t>(fg_bias), static_cast<acc_t>(bg_bias),
                                suppress_absent);
      }
    });
  });
  return labels;
}

std::tuple<at::Tensor, at::Tensor> em_adapt_cpu(const at::Tensor& scores_in,
                                                const at::Tensor& present_in, double fg_portion,
                                                double bg_portion, int64_t max_sweeps) {
  check_scores(scores_in, "em_adapt");
  check_present(present_in, scores_in, "em_adapt");
  check_portion(fg_portion, "em_adapt", "fg_portion");
  check_portion(bg_portion, "em_adapt", "bg_portion");
  TORCH_CHECK(max_sweeps >= 1, "em_adapt: max_sweeps must be >= 1, got ", max_sweeps);
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
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      std::vector<uint64_t> keys(pixels);
      AdaptShared shared;
      const SerialTeam team;
      for (int64_t image = begin; image < end; ++image) {
        em_adapt_image(s + image * c * pixels, present_ptr + image * c, c, pixels, fg_portion,
                       bg_portion, max_sweeps, bias_ptr + image * c, keys.data(),
                       label_ptr + image * pixels, &shared, team);
      }
    });
  });
  return {labels, biases};
}

}  // namespace

TORCH_LIBRARY_IMPL(emseg, CPU, m) {
  m.impl("em_fixed", &em_fixed_cpu);
  m.impl("em_adapt", &em_adapt_cpu);
}

}  // namespace estep
}  // namespace emseg
