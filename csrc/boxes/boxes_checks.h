#pragma once
// Input checks of the box operators, shared by the CPU and CUDA bindings.
#include "common/checks.h"
#include "estep/estep_checks.h"

namespace emseg {
namespace boxes {

// boxes: float [N, B, 5] with finite coordinates and integral classes in [-1, num_classes).
// num_classes < 0 means no upper bound on the class id. Metadata now; the value checks are queued
// on `values` (the caller runs them).
inline void check_boxes(const at::Tensor& boxes, const char* op, int64_t num_classes,
                        ValueChecks& values) {
  const std::string name = std::string(op) + ": boxes";
  check_dim(boxes, name.c_str(), 3, "[N, B, 5] of (x1, y1, x2, y2, class)");
  TORCH_CHECK(boxes.size(2) == 5, name, " must have shape [N, B, 5] of (x1, y1, x2, y2, class), got ",
              shape_str(boxes));
  TORCH_CHECK(boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", boxes.scalar_type());
  if (boxes.numel() == 0) return;
  values.finite(boxes, name);
  const at::Tensor classes = boxes.select(2, 4);
  const auto range = at::aminmax(classes);
  values.add(at::stack({classes.eq(classes.floor()).all().to(classes.scalar_type()),
                        std::get<0>(range), std::get<1>(range)}),
             [name, num_classes](const double* v) {
               TORCH_CHECK(v[0] != 0, name, "[..., 4] (class) must hold whole numbers");
               TORCH_CHECK(v[1] >= -1, name,
                           "[..., 4] (class) must be >= -1 (-1 marks padding), got ", v[1]);
               TORCH_CHECK(num_classes < 0 || v[2] < num_classes, name,
                           "[..., 4] (class) must be < C = ", num_classes,
                           " (the number of score channels), got ", v[2]);
               // The kernels convert the class to int64; beyond that range the conversion is undefined.
               TORCH_CHECK(v[2] < 9223372036854775808.0, name,
                           "[..., 4] (class) must be < 2^63 (an int64 label), got ", v[2]);
             });
}

inline void check_output_size(int64_t height, int64_t width, const char* op) {
  TORCH_CHECK(height >= 0 && width >= 0, op, ": height and width must be >= 0, got height=", height,
              ", width=", width);
}

// Every check of each op, in the order both backends' bindings run them.
inline void validate_boxes_to_labels(const at::Tensor& boxes, int64_t height, int64_t width) {
  ValueChecks values;
  check_boxes(boxes, "boxes_to_labels", -1, values);
  check_output_size(height, width, "boxes_to_labels");
  values.run();
  check_output_fits({boxes.size(0), height, width}, at::kLong, boxes.device(), "boxes_to_labels",
                    "[N, height, width]");
}

inline void validate_bbox_em_fixed(const at::Tensor& scores, const at::Tensor& boxes,
                                   double fg_bias, double bg_bias) {
  ValueChecks values;
  estep::check_scores(scores, "bbox_em_fixed", values);
  // Device first: the value checks of both tensors are read back together.
  check_same_device(boxes, "bbox_em_fixed: boxes", scores, "scores");
  check_boxes(boxes, "bbox_em_fixed", scores.size(1), values);
  TORCH_CHECK(boxes.size(0) == scores.size(0), "bbox_em_fixed: boxes.shape[0] must equal N = ",
              scores.size(0), " (the batch size of scores), got shape ", shape_str(boxes));
  estep::check_bias(fg_bias, "bbox_em_fixed", "fg_bias");
  estep::check_bias(bg_bias, "bbox_em_fixed", "bg_bias");
  values.run();
}

}  // namespace boxes
}  // namespace emseg
