#pragma once
// Stand-in for __nv_bfloat16 (HIP-CPU has none): bfloat16 bits, bit-compatible with c10::BFloat16,
// converting as CUDA's does (to float exactly, from float rounding to nearest even).
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  uint16_t bits;
  __nv_bfloat16() = default;
  explicit __nv_bfloat16(float value) {
    uint32_t u;
    std::memcpy(&u, &value, sizeof(u));
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
      bits = 0x7FC0;  // NaN
    } else {
      bits = static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }
  }
  operator float() const {
    const uint32_t u = static_cast<uint32_t>(bits) << 16;
    float value;
    std::memcpy(&value, &u, sizeof(value));
    return value;
  }
};
