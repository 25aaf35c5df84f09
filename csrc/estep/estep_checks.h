#pragma once
// Input checks of the E-step operators, shared by the CPU and CUDA bindings.
#include "common/checks.h"

namespace emseg {
namespace estep {

// Metadata now; the finite-value check is queued on `values` (the caller runs it).
inline void check_scores(const at::Tensor& scores, const char* op, ValueChecks& values) {
  const std::string name = std::string(op) + ": scores";
  check_dim(scores, name.c_str(), 4, "[N, C, H, W]");
  check_float(scores, name.c_str());
  TORCH_CHECK(scores.size(1) >= 1, name, " must have at least one class (C >= 1), got shape ",
              shape_str(scores));
  values.finite(scores, name);
}

inline void check_present(const at::Tensor& present, const at::Tensor& scores, const char* op) {
  const std::string name = std::string(op) + ": present";
  check_dim(present, name.c_str(), 2, "[N, C]");
  check_dtype(present, name.c_str(), at::kBool);
  check_same_device(present, name.c_str(), scores, "scores");
  TORCH_CHECK(present.size(0) == scores.size(0) && present.size(1) == scores.size(1), name,
              " must have shape [N, C] = [", scores.size(0), ", ", scores.size(1),
              "] to match scores, got ", shape_str(present));
}

inline void check_bias(double value, const char* op, const char* arg) {
  TORCH_CHECK(std::isfinite(value), op, ": ", arg, " must be a finite number, got ", value);
}

inline void check_portion(double value, const char* op, const char* arg) {
  TORCH_CHECK(value >= 0.0 && value <= 1.0, op, ": ", arg, " must be in [0, 1], got ", value);
}

// Every check of each op, in the order both backends' bindings run them: shapes, dtypes, devices
// and arguments first, then the value checks in one device-to-host read.
inline void validate_em_fixed(const at::Tensor& scores, const at::Tensor& present, double fg_bias,
                              double bg_bias) {
  ValueChecks values;
  check_scores(scores, "em_fixed", values);
  check_present(present, scores, "em_fixed");
  check_bias(fg_bias, "em_fixed", "fg_bias");
  check_bias(bg_bias, "em_fixed", "bg_bias");
  values.run();
}

inline void validate_em_adapt(const at::Tensor& scores, const at::Tensor& present,
                              double fg_portion, double bg_portion, int64_t max_iter) {
  ValueChecks values;
  check_scores(scores, "em_adapt", values);
  check_present(present, scores, "em_adapt");
  check_portion(fg_portion, "em_adapt", "fg_portion");
  check_portion(bg_portion, "em_adapt", "bg_portion");
  TORCH_CHECK(max_iter >= 1, "em_adapt: max_iter must be >= 1, got ", max_iter);
  values.run();
}

}  // namespace estep
}  // namespace emseg
