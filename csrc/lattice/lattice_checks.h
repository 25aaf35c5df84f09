#pragma once
// Validation of permutohedral_filter's inputs, shared by the CPU and CUDA bindings.
#include <algorithm>

#include "common/checks.h"
#include "lattice/lattice.h"

namespace emseg {

inline void check_permutohedral_inputs(const at::Tensor& values, const at::Tensor& features) {
  TORCH_CHECK(values.dim() == 2 || values.dim() == 3,
              "values must be a 2-D [P, V] or 3-D [N, P, V] tensor, got shape ", shape_str(values));
  TORCH_CHECK(features.dim() == values.dim(), "features must have the same number of dimensions as "
              "values ([P, D] for [P, V] values, [N, P, D] for [N, P, V]), got shape ",
              shape_str(features), " for values of shape ", shape_str(values));
  check_dtype(values, "values", at::kFloat);
  check_dtype(features, "features", at::kFloat);
  check_same_device(features, "features", values, "values");
  for (int64_t i = 0; i + 1 < values.dim(); ++i) {
    TORCH_CHECK(features.size(i) == values.size(i), "features.shape[", i, "] must equal values.shape[",
                i, "] (", values.size(i), "), got features of shape ", shape_str(features));
  }
  const int64_t d = features.size(-1);
  TORCH_CHECK(d >= 1 && d <= lattice::kMaxDim, "features.shape[-1] (the feature dimension D) must be "
              "between 1 and ", lattice::kMaxDim, ", got ", d);
  const int64_t P = values.size(-2);
  TORCH_CHECK(P * (d + 1) < (int64_t(1) << 30), "too many points for one lattice: P * (D + 1) must "
              "be below 2^30, got P = ", P, ", D = ", d);
  // Values last, in one device-to-host read.
  ValueChecks checks;
  // The embedding runs in float32: lattice coordinates (about (D+1) |f|) must stay exact integers.
  const double limit = double(1 << 22) / double(d + 1);
  checks.finite(features, "features", [limit](double lo, double hi) {
    const double amax = std::max(-lo, hi);
    TORCH_CHECK(amax < limit, "features must have |f| below ", limit, " (features are positions "
                "or colours divided by a standard deviation), got max |f| = ", amax);
  });
  checks.finite(values, "values");
  checks.run();
}

}  // namespace emseg
