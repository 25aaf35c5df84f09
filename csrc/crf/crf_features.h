#pragma once
// Torch-facing helper shared by the CPU and CUDA bindings of dense_crf.
#include <ATen/ATen.h>

#include <vector>

namespace emseg {

// Features of one image's valid region [h, w]: [P, 2] positions or [P, 5] positions + colours,
// each divided by its standard deviation (pixel (x, y) -> (x / sx, y / sy, r / sr, ...)).
inline at::Tensor crf_features(const at::Tensor& image_n, int64_t h, int64_t w, c10::ArrayRef<double> std,
                               bool colour) {
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(image_n.device());
  at::Tensor xs = at::arange(w, opts).view({1, w}).expand({h, w});
  at::Tensor ys = at::arange(h, opts).view({h, 1}).expand({h, w});
  std::vector<at::Tensor> cols = {xs / static_cast<float>(std[0]), ys / static_cast<float>(std[1])};
  if (colour) {
    at::Tensor img = image_n.slice(1, 0, h).slice(2, 0, w).to(at::kFloat);
    for (int c = 0; c < 3; ++c) cols.push_back(img[c] / static_cast<float>(std[2 + c]));
  }
  return at::stack(cols, -1).reshape({h * w, static_cast<int64_t>(cols.size())}).contiguous();
}

}  // namespace emseg
