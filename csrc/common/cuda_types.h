#pragma once
// Torch-side helper of the CUDA bindings: the CUDA type a torch scalar type is handed to the
// torch-free launchers as (at::Half -> __half, at::BFloat16 -> __nv_bfloat16; same bits).
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace emseg {

template <typename T>
struct CudaType {
  using type = T;
};
template <>
struct CudaType<c10::Half> {
  using type = __half;
};
template <>
struct CudaType<c10::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename T>
const typename CudaType<T>::type* cuda_ptr(const at::Tensor& t) {
  static_assert(sizeof(typename CudaType<T>::type) == sizeof(T), "layouts must match");
  return reinterpret_cast<const typename CudaType<T>::type*>(t.data_ptr<T>());
}

}  // namespace emseg
