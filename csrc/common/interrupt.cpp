#include "common/interrupt.h"

#include <Python.h>

#include <chrono>

namespace emseg {

bool interrupt_requested() {
  // Taking the GIL can wait for another Python thread's time slice: poll at most every 50 ms.
  thread_local std::chrono::steady_clock::time_point last{};
  const auto now = std::chrono::steady_clock::now();
  if (now - last < std::chrono::milliseconds(50)) return false;
  last = now;
  if (!Py_IsInitialized()) return false;
  const PyGILState_STATE gil = PyGILState_Ensure();
  // Runs the pending handlers (main thread only; elsewhere it returns 0).
  const bool raised = PyErr_CheckSignals() != 0;
  if (raised) PyErr_Clear();  // the caller's RuntimeError stands for it (see interrupt.h)
  PyGILState_Release(gil);
  return raised;
}

}  // namespace emseg
