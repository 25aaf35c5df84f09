#pragma once
// Validation of dense_crf's inputs, shared by the CPU and CUDA bindings.
#include <c10/util/ArrayRef.h>

#include <cmath>
#include <optional>
#include <vector>

#include "common/checks.h"

namespace emseg {

inline void check_stds(c10::ArrayRef<double> stds, const char* name, size_t expected,
                       const char* layout) {
  TORCH_CHECK(stds.size() == expected, name, " must have ", expected, " entries ", layout, ", got ",
              stds.size());
  for (size_t i = 0; i < stds.size(); ++i) {
    TORCH_CHECK(std::isfinite(stds[i]) && stds[i] > 0, name, "[", i,
                "] must be a positive finite standard deviation, got ", stds[i]);
  }
}

// What the bindings need on the host besides the checks: per-image valid sizes, and which
// pairwise kernels run and how (read with the value checks, in one device-to-host copy).
struct DenseCrfPlan {
  std::vector<int64_t> height, width;  // [N] valid region of each image
  bool active[2];                      // compat[k] not all zero
  bool diagonal[2];                    // compat[k] diagonal (a Potts-like O(L) update)
};

inline DenseCrfPlan check_dense_crf_inputs(const at::Tensor& unary, const at::Tensor& image,
                                         const at::Tensor& compat, c10::ArrayRef<double> pos_std,
                                         c10::ArrayRef<double> bi_std, int64_t iterations,
                                         const std::optional<at::Tensor>& sizes) {
  check_dim(unary, "unary", 4, "[N, L, H, W]");
  check_dtype(unary, "unary", at::kFloat);
  const int64_t N = unary.size(0), L = unary.size(1), H = unary.size(2), W = unary.size(3);
  TORCH_CHECK(L >= 1, "unary must have at least one label (unary.shape[1] = L >= 1), got shape ",
              shape_str(unary));
  check_dim(image, "image", 4, "[N, 3, H, W]");
  check_dtype(image, "image", at::kByte);
  check_same_device(image, "image", unary, "unary");
  check_size(image, "image", 0, N, "unary.shape[0] (N)");
  check_size(image, "image", 1, 3, "3 colour channels");
  check_size(image, "image", 2, H, "unary.shape[2] (H)");
  check_size(image, "image", 3, W, "unary.shape[3] (W)");
  check_dim(compat, "compat", 3, "[2, L, L]");
  check_dtype(compat, "compat", at::kFloat);
  check_size(compat, "compat", 0, 2, "2 (position kernel, bilateral kernel)");
  check_size(compat, "compat", 1, L, "the number of labels L");
  check_size(compat, "compat", 2, L, "the number of labels L");
  check_stds(pos_std, "pos_std", 2, "(x, y)");
  check_stds(bi_std, "bi_std", 5, "(x, y, r, g, b)");
  TORCH_CHECK(iterations >= 0, "iterations must be >= 0, got ", iterations);
  TORCH_CHECK(H * W * 6 < (int64_t(1) << 30), "image too large for one lattice: H * W must be "
              "below ", (int64_t(1) << 30) / 6, ", got ", H * W);
  // Positions in lattice units must stay exact in float32 (see check_permutohedral_inputs).
  const double span = double(std::max(H, W));
  TORCH_CHECK(span / std::min(pos_std[0], pos_std[1]) * 6 < double(1 << 22) &&
                  span / std::min(bi_std[0], bi_std[1]) * 6 < double(1 << 22) &&
                  255.0 / std::min({bi_std[2], bi_std[3], bi_std[4]}) * 6 < double(1 << 22),
              "standard deviations too small for the image size: pixel coordinates divided by "
              "them must stay below ", (1 << 22) / 6);
  // Values last: one read brings back the value checks, the kernel plan and the sizes.
  DenseCrfPlan plan;
  plan.height.assign(N, H);
  plan.width.assign(N, W);
  ValueChecks values;
  values.finite(unary, "unary");
  values.finite(compat, "compat");
  // A message sum_l' C_k(l, l') n_k(i) F_k(i, l') is at most max |C_k| sqrt(P) in size (symmetric
  // normalisation and Cauchy-Schwarz: n_i sum_j w_ij n_j <= sqrt(P) for w >= 0 symmetric). Their
  // sum must stay finite in float32, with room for the lattice's rounding.
  const double root_pixels = std::sqrt(double(H) * double(W));
  values.add(compat.abs().amax({1, 2}).to(at::kDouble).sum(), [root_pixels](const double* v) {
    const double message_bound = v[0] * root_pixels;
    TORCH_CHECK(message_bound < 8.5e37, "compat (the kernel weights pos_w, bi_w times the "
                "compatibility) too large: the mean-field messages, up to sum_k max |compat[k]| * "
                "sqrt(H * W) = ", message_bound, ", must stay below 8.5e37 to be finite in float32");
  });
  for (int k = 0; k < 2; ++k) {
    const at::Tensor ck = compat[k];
    values.add(at::stack({ck.ne(0).any(), (ck - at::diag(at::diag(ck))).eq(0).all()}),
               [&plan, k](const double* v) {
                 plan.active[k] = v[0] != 0;
                 plan.diagonal[k] = v[1] != 0;
               });
  }
  if (sizes.has_value()) {
    const at::Tensor& s = *sizes;
    check_dim(s, "sizes", 2, "[N, 2] (valid height, width per image)");
    check_dtype(s, "sizes", at::kLong);
    check_size(s, "sizes", 0, N, "unary.shape[0] (N)");
    check_size(s, "sizes", 1, 2, "2 (height, width)");
    values.add(s, [&plan, N, H, W](const double* p) {
      for (int64_t n = 0; n < N; ++n) {
        const int64_t h = static_cast<int64_t>(p[2 * n]), w = static_cast<int64_t>(p[2 * n + 1]);
        TORCH_CHECK(h >= 0 && h <= H && w >= 0 && w <= W, "sizes[", n,
                    "] must lie within 0 <= height <= H (", H, ") and 0 <= width <= W (", W,
                    "), got (", h, ", ", w, ")");
        plan.height[n] = h;
        plan.width[n] = w;
      }
    });
  }
  values.run();
  return plan;
}

}  // namespace emseg
