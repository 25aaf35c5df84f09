// CPU kernels of the box operators: at::parallel_for over the pixels of the batch, running the
// shared per-pixel code of boxes.h.
//
// Two layout choices keep them memory-bound rather than latency-bound: a chunk walks its pixels as
// (image, y, x) counters instead of dividing every flat index, and bbox_em_fixed first copies a
// tile of pixels' class scores into a small pixel-major buffer (one sequential read per class
// plane), so the per-pixel argmax reads C neighbouring values instead of C cache lines one plane
// (H * W values) apart.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/library.h"

#include <algorithm>
#include <vector>

#include "boxes/boxes.h"
#include "boxes/boxes_checks.h"
#include "estep/estep.h"

namespace emseg {
namespace boxes {
namespace {

constexpr int64_t kPixelGrain = 8192;
// boxes_to_labels spends a few ns per pixel: smaller chunks cost more in thread hand-offs than
// they save (a 20 x 41 x 41 batch runs on one thread).
constexpr int64_t kLabelGrain = 65536;
// Pixels per transposed tile of bbox_em_fixed: 21 classes x 256 x 4 bytes = 21 KiB, about L1.
constexpr int64_t kTilePixels = 256;

// Calls f(flat index, image, pixel index in the image, y, x) for the flat pixels [begin, end) of an
// N x height x width map, in order.
template <typename F>
inline void for_each_pixel(int64_t begin, int64_t end, int64_t height, int64_t width, F&& f) {
  const int64_t pixels = height * width;
  int64_t image = begin / pixels;
  int64_t m = begin - image * pixels;
  int64_t y = m / width, x = m - y * width;
  for (int64_t i = begin; i < end; ++i) {
    f(i, image, m, y, x);
    ++m;
    if (++x == width) {
      x = 0;
      if (++y == height) {
        y = 0;
        m = 0;
        ++image;
      }
    }
  }
}

at::Tensor boxes_to_labels_cpu(const at::Tensor& boxes_in, int64_t height, int64_t width,
                               int64_t fill) {
  validate_boxes_to_labels(boxes_in, height, width);
  const at::Tensor boxes = boxes_in.contiguous();
  const int64_t n = boxes.size(0), num_boxes = boxes.size(1), pixels = height * width;
  at::Tensor labels = at::empty({n, height, width}, boxes.options().dtype(at::kLong));
  if (labels.numel() == 0) return labels;
  int64_t* out = labels.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "boxes_to_labels_cpu", [&] {
    const scalar_t* b = boxes.data_ptr<scalar_t>();
    at::parallel_for(0, n * pixels, kLabelGrain, [&](int64_t begin, int64_t end) {
      for_each_pixel(begin, end, height, width,
                     [&](int64_t i, int64_t image, int64_t, int64_t y, int64_t x) {
                       out[i] = rect_label(b + image * num_boxes * kBoxFields, num_boxes, y, x, fill);
                     });
    });
  });
  return labels;
}

at::Tensor bbox_em_fixed_cpu(const at::Tensor& scores_in, const at::Tensor& boxes_in,
                             double fg_bias, double bg_bias, bool suppress_absent) {
  validate_bbox_em_fixed(scores_in, boxes_in, fg_bias, bg_bias);
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
        std::vector<scalar_t> tile(static_cast<size_t>(kTilePixels * c));
        // Tiles never cross an image, so one tile's pixels are contiguous in every class plane.
        for (int64_t start = begin; start < end;) {
          const int64_t image = start / pixels, m0 = start - image * pixels;
          const int64_t count = std::min({kTilePixels, end - start, pixels - m0});
          const scalar_t* plane0 = s + image * c * pixels + m0;
          for (int64_t k = 0; k < c; ++k) {
            const scalar_t* src = plane0 + k * pixels;
            for (int64_t j = 0; j < count; ++j) tile[j * c + k] = src[j];
          }
          const box_t* image_boxes = b + image * num_boxes * kBoxFields;
          for_each_pixel(start, start + count, h, w,
                         [&](int64_t i, int64_t, int64_t, int64_t y, int64_t x) {
                           out[i] = bbox_em_fixed_pixel(tile.data() + (i - start) * c, 1, c,
                                                        image_boxes, num_boxes, y, x,
                                                        static_cast<acc_t>(fg_bias),
                                                        static_cast<acc_t>(bg_bias), suppress_absent);
                         });
          start += count;
        }
      });
    });
  });
  return labels;
}

}  // namespace

EMSEG_CPU_LIBRARY_IMPL(m) {
  m.impl("boxes_to_labels", &boxes_to_labels_cpu);
  m.impl("bbox_em_fixed", &bbox_em_fixed_cpu);
}

}  // namespace boxes
}  // namespace emseg
