#pragma once
// Input validation shared by every binding. Each check names the argument and what was expected,
// so a user reads the fix from the message alone.
#include <torch/library.h>
#include <ATen/ATen.h>

#include <ATen/DeviceAccelerator.h>
#include <unistd.h>

#include <cmath>
#include <initializer_list>
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

// Bytes of memory of a device: the machine's physical memory for the CPU, else what its allocator
// reports as the device's total (0 when it cannot tell).
inline double device_memory_bytes(const at::Device& device) {
  if (device.is_cpu()) return double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
  try {
    return double(at::getDeviceAllocator(device.type())->getMemoryInfo(device.index()).second);
  } catch (const c10::Error&) {
    return 0;
  }
}

// An output whose shape comes from arguments: refuse one that cannot fit before allocating it (the
// allocator's message names a byte count, not the argument that asked for it).
inline void check_output_fits(std::initializer_list<int64_t> shape, at::ScalarType dtype,
                              const at::Device& device, const char* op, const char* layout) {
  std::string dims;
  int64_t bytes = int64_t(c10::elementSize(dtype));
  bool overflow = false;
  for (const int64_t d : shape) {
    dims += (dims.empty() ? "" : ", ") + std::to_string(d);
    overflow = overflow || __builtin_mul_overflow(bytes, d, &bytes);
  }
  TORCH_CHECK(!overflow, op, ": the output ", layout, " = [", dims, "] (", dtype,
              ") has more bytes than int64 can count");
  const double gib = double(int64_t(1) << 30), memory = device_memory_bytes(device);
  TORCH_CHECK(memory <= 0 || double(bytes) <= memory, op, ": the output ", layout, " = [", dims,
              "] (", dtype, ") needs ", double(bytes) / gib, " GiB, more than the ", memory / gib,
              " GiB of memory of ", device);
}

}  // namespace emseg
