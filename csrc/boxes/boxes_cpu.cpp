// CPU kernels of the box operators: one pixel per iteration of at::parallel_for, running the
// shared per-pixel code of boxes.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "boxes/boxes.h"
#include "boxes/validate.h"
#include "estep/estep.h"
#include "estep/validate.h"

namespace emseg {
namespace boxes {
namespace {

constexpr int64_t kPixelGrain = 8192;

at::Tensor boxes_to_labels_cpu(const at::Tensor& boxes_in, int64_t height, int64_t width,
                               int64_t fill) {
  check_boxes(boxes_in, "boxes_to_labels", -1);
  check_output_size(height, width, "boxes_to_labels");
  const at::Tensor boxes = boxes_in.contiguous();
  const int64_t n = boxes.size(0), num_boxes = boxes.size(1), pixels = height * width;
  at::Tensor labels = at::empty({n, height, width}, boxes.options().dtype(at::kLong));
  if (labels.numel() == 0) return labels;
  int64_t* out = labels.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "boxes_to_labels_cpu", [&] {
    const scalar_t* b = boxes.data_ptr<scalar_t>();
    at::parallel_for(0, n * pixels, kPixelGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t image = i / pixels, m = i - image * pixels;
        out[i] = rect_label(b + image * num_boxes * kBoxFields, num_boxes, m / width, m % width, fill);
      }
    });
  });
  return labels;
}

at::Tensor bbox_em_fixed_cpu(const at::Tensor& scores_in, const at::Tensor& boxes_in,
                             double fg_bias, double bg_bias, bool suppress_absent) {
  estep::check_scores(scores_in, "bbox_em_fixed");
  check_boxes(boxes_in, "bbox_em_fixed", scores_in.size(1));
  check_same_device(boxes_in, "bbox_em_fixed: boxes", scores_in, "scores");
  TORCH_CHECK(boxes_in.size(0) == scores_in.size(0), "bbox_em_fixed: boxes.shape[0] must equal N = ",
              scores_in.size(0), " (the batch size of scores), got shape ", shape_str(boxes_in));
  estep::check_bias(fg_bias, "bbox_em_fixed", "fg_bias");
  estep::check_bias(bg_bias, "bbox_em_fixed", "bg_bias");
  const at::Tensor scores = scores_in.contiguous();
  const at::Tensor boxes = boxes_in.contiguous();
  const int64_t n = scores.size(0), c = scores.size(1), h = scores.size(2), w = scores.size(3);
  const int64_t pixels = h * w, num_boxes = boxes.size(1);
  at::Tensor labels = at::empty({n, h, w}, scores.options().dtype(at::kLong));
  if (labels.numel() == 0) return labels;
  int64_t* out = labels.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "bbox_em_fixed_cpu_boxes", [&] {
    using box_t = scalar_t;
    const box_t* b = boxes.data_ptr<box_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "bbox_em_fixed_cpu", [&] {
      using acc_t = typename estep::AccType<scalar_t>::type;
      const scalar_t* s = scores.data_ptr<scalar_t>();
      at::parallel_for(0, n * pixels, kPixelGrain, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const int64_t image = i / pixels, m = i - image * pixels;
          out[i] = bbox_em_fixed_pixel(s + image * c * pixels + m, pixels, c,
                                       b + image * num_boxes * kBoxFields, num_boxes, m / w, m % w,
                                       static_cast<acc_t>(fg_bias), static_cast<acc_t>(bg_bias),
                                       suppress_absent);
        }
      });
    });
  });
  return labels;
}

}  // namespace

TORCH_LIBRARY_IMPL(emseg, CPU, m) {
  m.impl("boxes_to_labels", &boxes_to_labels_cpu);
  m.impl("bbox_em_fixed", &bbox_em_fixed_cpu);
}

}  // namespace boxes
}  // namespace emseg
