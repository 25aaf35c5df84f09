#pragma once
// Input validation shared by every binding. Each check names the argument and what was expected,
// so a user reads the fix from the message alone.
#include <torch/library.h>
#include <ATen/ATen.h>

#include <ATen/DeviceAccelerator.h>
#include <unistd.h>

#include <cmath>
#include <functional>
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

// Value checks of one op call, gathered so that one read brings every result to the host: on a
// CUDA tensor each read is a device-to-host copy that stalls the host until the device catches up,
// so an op pays one such sync for all of its value checks instead of one per check. add() queues
// a tensor computed on the inputs' device (its values arrive as doubles); run() does the single
// read and calls each queued check in order. Integers up to 2^53 arrive exactly.
class ValueChecks {
 public:
  template <typename F>
  void add(const at::Tensor& values, F&& check) {
    at::Tensor v = values.reshape({-1}).to(at::kDouble);
    // All on the first tensor's device, so the read is one copy (host-to-device copies of
    // CPU-side values do not stall the host).
    if (!values_.empty()) v = v.to(values_.front().device());
    values_.push_back(std::move(v));
    checks_.emplace_back(std::forward<F>(check));
  }

  // NaN or infinite values would make every comparison in the kernels meaningless; reject them.
  // One min/max pass: NaN propagates through both and infinities are the extremes. (isfinite(t)
  // .all() first writes a bool tensor as large as t: 10x slower on a [20, 21, 321, 321] batch.)
  // `extremes`, when given, receives (min, max) for further checks.
  void finite(const at::Tensor& t, std::string name,
              std::function<void(double, double)> extremes = {}) {
    if (t.numel() == 0) return;
    const auto mm = at::aminmax(t);
    add(at::stack({std::get<0>(mm), std::get<1>(mm)}),
        [name = std::move(name), extremes](const double* v) {
      TORCH_CHECK(std::isfinite(v[0]) && std::isfinite(v[1]), name,
                  " contains NaN or infinite values; expected finite numbers");
      if (extremes) extremes(v[0], v[1]);
    });
  }

  void run() {
    if (values_.empty()) return;
    const at::Tensor host = at::cat(values_).cpu();
    const double* v = host.data_ptr<double>();
    for (size_t i = 0; i < checks_.size(); ++i) {
      checks_[i](v);
      v += values_[i].numel();
    }
    values_.clear();
    checks_.clear();
  }

 private:
  std::vector<at::Tensor> values_;
  std::vector<std::function<void(const double*)>> checks_;
};

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
