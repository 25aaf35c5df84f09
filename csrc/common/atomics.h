#pragma once
// Atomics written once for both sides: CUDA atomics on the device, GCC/Clang builtins on the host.
#include "common/macros.h"

namespace emseg {

template <typename T>
EMSEG_HD T atomic_add(T* address, T value) {
#if defined(__CUDA_ARCH__)
  return atomicAdd(address, value);
#else
  return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
#endif
}

// A load that may race with atomic writes to the same address (relaxed: it orders nothing else).
template <typename T>
EMSEG_HD T atomic_load(const T* address) {
#if defined(__CUDA_ARCH__)
  return *const_cast<const volatile T*>(address);
#else
  return __atomic_load_n(address, __ATOMIC_RELAXED);
#endif
}

// Returns the value seen before the call; the swap happens only where it equalled `expected`.
template <typename T>
EMSEG_HD T atomic_cas(T* address, T expected, T desired) {
#if defined(__CUDA_ARCH__)
  return atomicCAS(address, expected, desired);
#else
  __atomic_compare_exchange_n(address, &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  return expected;
#endif
}

}  // namespace emseg
