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

// Blocks of `threads` covering n items one per thread (at least one block, so an empty launch is
// still well-formed).
inline unsigned int blocks_for(int64_t n, int threads) {
  return static_cast<unsigned int>(ceil_div<int64_t>(n > 0 ? n : 1, threads));
}

// The most blocks a launch may have along y (and z); x allows 2^31 - 1.
constexpr unsigned int kMaxGridY = 65535;

}  // namespace emseg
