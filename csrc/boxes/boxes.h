#pragma once
// Per-pixel math of the box operators, shared by the CPU and CUDA kernels (torch-free).
// A box row is (x1, y1, x2, y2, class); class < 0 marks padding. A box covers pixel (y, x) when the
// pixel centre lies in the half-open box: x1 <= x + 0.5 < x2 and y1 <= y + 0.5 < y2.
#include <cstdint>

#include "common/macros.h"

namespace emseg {
namespace boxes {

constexpr int kBoxFields = 5;

template <typename scalar_t>
EMSEG_HD bool covers(const scalar_t* box, int64_t y, int64_t x) {
  const scalar_t cx = static_cast<scalar_t>(x) + scalar_t(0.5);
  const scalar_t cy = static_cast<scalar_t>(y) + scalar_t(0.5);
  return box[0] <= cx && cx < box[2] && box[1] <= cy && cy < box[3];
}

template <typename scalar_t>
EMSEG_HD int64_t box_class(const scalar_t* box) {
  return static_cast<int64_t>(box[4]);
}

// Class of the smallest-area box covering the pixel (first listed on equal areas), else `fill`.
template <typename scalar_t>
EMSEG_HD int64_t rect_label(const scalar_t* image_boxes, int64_t num_boxes, int64_t y, int64_t x,
                            int64_t fill) {
  int64_t label = fill;
  bool found = false;
  scalar_t best_area = 0;
  for (int64_t b = 0; b < num_boxes; ++b) {
    const scalar_t* box = image_boxes + b * kBoxFields;
    if (box_class(box) < 0 || !covers(box, y, x)) continue;
    const scalar_t area = (box[2] - box[0]) * (box[3] - box[1]);
    if (!found || area < best_area) {
      found = true;
      best_area = area;
      label = box_class(box);
    }
  }
  return label;
}

// Whether some box of class `label` covers the pixel.
template <typename scalar_t>
EMSEG_HD bool class_covers(const scalar_t* image_boxes, int64_t num_boxes, int64_t label, int64_t y,
                           int64_t x) {
  for (int64_t b = 0; b < num_boxes; ++b) {
    const scalar_t* box = image_boxes + b * kBoxFields;
    if (box_class(box) == label && covers(box, y, x)) return true;
  }
  return false;
}

// Bbox-EM-Fixed at one pixel: background gets bg_bias, each class with a box over the pixel fg_bias,
// others 0 (or no say with suppress_absent). Pixels outside every box are background.
template <typename score_t, typename box_t, typename acc_t>
EMSEG_HD int64_t bbox_em_fixed_pixel(const score_t* scores, int64_t plane, int64_t num_classes,
                                     const box_t* image_boxes, int64_t num_boxes, int64_t y,
                                     int64_t x, acc_t fg_bias, acc_t bg_bias,
                                     bool suppress_absent) {
  bool inside_any = false;
  for (int64_t b = 0; b < num_boxes && !inside_any; ++b) {
    const box_t* box = image_boxes + b * kBoxFields;
    inside_any = box_class(box) >= 0 && covers(box, y, x);
  }
  if (!inside_any) return 0;
  int64_t best = 0;
  acc_t best_value = static_cast<acc_t>(scores[0]) + bg_bias;
  for (int64_t c = 1; c < num_classes; ++c) {
    const bool boosted = class_covers(image_boxes, num_boxes, c, y, x);
    if (!boosted && suppress_absent) continue;
    const acc_t value = static_cast<acc_t>(scores[c * plane]) + (boosted ? fg_bias : acc_t(0));
    if (value > best_value) {
      best_value = value;
      best = c;
    }
  }
  return best;
}

}  // namespace boxes
}  // namespace emseg
