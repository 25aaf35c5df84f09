#pragma once
// Input checks of the E-step operators, shared by the CPU and CUDA bindings.
#include "common/checks.h"

namespace emseg {
namespace estep {

inline void check_scores(const at::Tensor& scores, const char* op) {
  const std::string name = std::string(op) + ": scores";
  check_dim(scores, name.c_str(), 4, "[N, C, H, W]");
  check_float(scores, name.c_str());
  TORCH_CHECK(scores.size(1) >= 1, name, " must have at least one class (C >= 1), got shape ",
              shape_str(scores));
  check_finite(scores, name.c_str());
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

}  // namespace estep
}  // namespace emseg
