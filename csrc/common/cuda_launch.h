#pragma once
// Launch-configuration helpers of the torch-free CUDA kernels.
#include <cstdint>

#include "common/macros.h"

namespace emseg {

constexpr int kThreadsPerBlock = 256;
// Grid-stride loops cover the rest; this many blocks fill any current GPU several times over.
constexpr int64_t kMaxBlocks = 65535;

inline unsigned int elementwise_blocks(int64_t count) {
  const int64_t blocks = ceil_div<int64_t>(count, kThreadsPerBlock);
  return static_cast<unsigned int>(blocks < kMaxBlocks ? (blocks > 0 ? blocks : 1) : kMaxBlocks);
}

}  // namespace emseg
