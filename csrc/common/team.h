#pragma once
// A "team" is the set of threads that cooperate on one work item (one image): a CUDA thread block
// on the device, a single thread on the host. Algorithms written against a team (tid, size, sync,
// add) run unchanged on both sides, so the CPU tests exercise the exact code path of the GPU.
#include <cstdint>

#include "common/macros.h"

namespace emseg {

// Host side: one thread does everything, so synchronisation is a no-op and adds need no atomics.
struct SerialTeam {
  int tid = 0;
  int size = 1;
  inline void sync() const {}
  template <typename T>
  inline void add(T* address, T value) const {
    *address += value;
  }
  template <typename T>
  inline void min(T* address, T value) const {
    if (value < *address) *address = value;
  }
};

#if defined(__CUDACC__)
struct BlockTeam {
  int tid;
  int size;
  __device__ BlockTeam() : tid(static_cast<int>(threadIdx.x)), size(static_cast<int>(blockDim.x)) {}
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  template <typename T>
  __device__ __forceinline__ void add(T* address, T value) const {
    atomicAdd(address, value);
  }
  template <typename T>
  __device__ __forceinline__ void min(T* address, T value) const {
    atomicMin(address, value);
  }
};
#endif

// Orders doubles as unsigned integers (negative values flipped entirely, positives get the sign
// bit set) so a radix select can work on bits; -inf and +inf order correctly.
EMSEG_HD uint64_t ordered_key(double value) {
  union {
    double d;
    uint64_t u;
  } bits;
  bits.d = value;
  return (bits.u >> 63) ? ~bits.u : (bits.u | 0x8000000000000000ULL);
}

EMSEG_HD double key_to_double(uint64_t key) {
  union {
    double d;
    uint64_t u;
  } bits;
  bits.u = (key >> 63) ? (key & 0x7FFFFFFFFFFFFFFFULL) : ~key;
  return bits.d;
}

// Scratch a radix select needs in memory the whole team sees (shared memory on the device).
struct RadixSelectShared {
  uint32_t histogram[256];
  uint64_t prefix;
  uint64_t mask;
  int64_t rank;
};

// The `rank`-th smallest (0-based) of `n` keys, exactly: eight passes, each fixing one byte of the
// answer from a histogram of the keys that still match the bytes fixed so far. O(8 n) reads and no
// extra memory, unlike a sort; all team members return the same value.
template <typename Team>
EMSEG_HD uint64_t radix_select(const uint64_t* keys, int64_t n, int64_t rank, RadixSelectShared* sh,
                               const Team& team) {
  team.sync();  // the previous user of the scratch is done with it
  if (team.tid == 0) {
    sh->prefix = 0;
    sh->mask = 0;
    sh->rank = rank;
  }
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int d = team.tid; d < 256; d += team.size) sh->histogram[d] = 0;
    team.sync();
    const uint64_t prefix = sh->prefix;
    const uint64_t mask = sh->mask;
    for (int64_t i = team.tid; i < n; i += team.size) {
      const uint64_t key = keys[i];
      if ((key & mask) == prefix) team.add(&sh->histogram[(key >> shift) & 0xFF], 1u);
    }
    team.sync();
    if (team.tid == 0) {
      int64_t below = 0;
      for (int d = 0; d < 256; ++d) {
        const int64_t count = sh->histogram[d];
        if (below + count > sh->rank) {
          sh->prefix |= static_cast<uint64_t>(d) << shift;
          sh->mask |= 0xFFULL << shift;
          sh->rank -= below;
          break;
        }
        below += count;
      }
    }
    team.sync();
  }
  const uint64_t result = sh->prefix;
  team.sync();  // everyone has read the result before the scratch can be reused
  return result;
}

}  // namespace emseg
