#pragma once
// Ctrl-C in long native loops. The ops run with the GIL released, so Python's SIGINT handler only
// marks the signal; these poll it (taking the GIL, at most every 50 ms per thread) and stop.
// The RuntimeError they raise carries kInterruptedMessage; emseg/ops/_common.py raises
// KeyboardInterrupt in its place. Only the thread that called the op polls (Python runs handlers on
// the main thread).
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace emseg {

constexpr const char* kInterruptedMessage = "emseg: interrupted (a signal handler raised, e.g. Ctrl-C)";

// Whether a Python signal handler raised since the last poll (its exception is then cleared).
bool interrupt_requested();

// Between steps of a loop on the calling thread: throws when interrupted.
inline void check_interrupt() { TORCH_CHECK(!interrupt_requested(), kInterruptedMessage); }

// f(i) for i in [0, n) on the intra-op threads, items handed out one at a time; the calling thread
// polls between its items, and on an interrupt every thread stops at its next item and this throws.
template <typename F>
void parallel_items_interruptible(int64_t n, const F& f) {
  if (n <= 0) return;
  std::atomic<int64_t> next{0};
  std::atomic<bool> stop{false};
  const int64_t workers = std::min<int64_t>(n, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    const bool polls = at::get_thread_num() == 0;  // the calling thread
    for (int64_t i = next.fetch_add(1); i < n && !stop.load(); i = next.fetch_add(1)) {
      f(i);
      if (polls && interrupt_requested()) stop.store(true);
    }
  });
  TORCH_CHECK(!stop.load(), kInterruptedMessage);
}

}  // namespace emseg
