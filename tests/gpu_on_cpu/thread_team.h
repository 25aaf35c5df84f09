#pragma once
// A host team of N std::threads for testing the team algorithms of csrc/common/team.h: the same
// interface as the device's BlockTeam (tid, size, sync, add, min), with a std::barrier for sync
// and GCC atomics for add and min, so the algorithms run with real concurrency on the CPU and
// ThreadSanitizer sees every missing synchronisation as a data race.
#include <barrier>
#include <cstdint>
#include <thread>
#include <vector>

namespace emseg {
namespace testing {

struct ThreadTeam {
  int tid;
  int size;
  std::barrier<>* barrier;

  void sync() const { barrier->arrive_and_wait(); }
  template <typename T>
  void add(T* address, T value) const {
    __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
  }
  template <typename T>
  void min(T* address, T value) const {
    T seen = __atomic_load_n(address, __ATOMIC_RELAXED);
    while (value < seen && !__atomic_compare_exchange_n(address, &seen, value, true,
                                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
  }
};

// Runs body(team) on `threads` threads at once, as a CUDA block of that many threads runs a kernel.
template <typename Body>
void run_team(int threads, const Body& body) {
  std::barrier<> barrier(threads);
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] { body(ThreadTeam{t, threads, &barrier}); });
  }
  for (auto& thread : pool) thread.join();
}

}  // namespace testing
}  // namespace emseg
