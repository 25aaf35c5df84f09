#pragma once
// Input validation shared by every binding. Each check names the argument and what was expected,
// so a user reads the fix from the message alone.
#include <torch/library.h>
#include <ATen/ATen.h>

#include <cmath>
#include <string>
#include <vector>

namespace emseg {

inline std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(t.size(i));
  }
  return s + "]";
}

inline void check_dim(const at::Tensor& t, const char* name, int64_t dim, const char* layout) {
  TORCH_CHECK(t.dim() == dim, name, " must be a ", dim, "-D tensor ", layout, ", got shape ",
              shape_str(t));
}

inline void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), name,
              " must be a floating-point tensor (float32, float64, float16 or bfloat16), got ",
              t.scalar_type());
}

inline void check_dtype(const at::Tensor& t, const char* name, at::ScalarType expected) {
  TORCH_CHECK(t.scalar_type() == expected, name, " must have dtype ", expected, ", got ",
              t.scalar_type());
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref,
                              const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), name, " must be on the same device as ", ref_name,
              " (", ref.device(), "), got ", t.device());
}

inline void check_size(const at::Tensor& t, const char* name, int64_t dim, int64_t expected,
                       const char* what) {
  TORCH_CHECK(t.size(dim) == expected, name, ".shape[", dim, "] must equal ", what, " (", expected,
              "), got shape ", shape_str(t));
}

// NaN or infinite inputs would make every comparison below meaningless; reject them up front.
// One min/max pass: NaN propagates through both and infinities are the extremes. (isfinite(t).all()
// first writes a bool tensor as large as t: 10x slower on a [20, 21, 321, 321] batch, more than the
// E-step kernels themselves.)
inline void check_finite(const at::Tensor& t, const char* name) {
  if (t.numel() == 0) return;
  const auto extremes = at::aminmax(t);
  const at::Tensor both = at::stack({std::get<0>(extremes), std::get<1>(extremes)}).to(at::kDouble).cpu();
  const double* v = both.data_ptr<double>();
  TORCH_CHECK(std::isfinite(v[0]) && std::isfinite(v[1]), name,
              " contains NaN or infinite values; expected finite numbers");
}

inline void check_range(double value, const char* name, double lo, double hi, const char* expect) {
  TORCH_CHECK(value >= lo && value <= hi, name, " must be ", expect, ", got ", value);
}

}  // namespace emseg
