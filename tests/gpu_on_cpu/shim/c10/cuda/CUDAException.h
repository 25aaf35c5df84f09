#pragma once
// Error checks of the CUDA bindings, for the HIP-CPU build. On a GPU, torch ops the bindings run
// between launches are ordered after the kernels by the stream; here torch ops run on the calling
// thread at once while HIP-CPU runs kernels on its own threads, so each check first waits for the
// launched kernels (every launch in the bindings is followed by one).
#include <c10/util/Exception.h>
#include <cuda_runtime.h>

#define C10_CUDA_CHECK(EXPR)                                                                  \
  do {                                                                                        \
    const hipError_t emseg_launch_error = (EXPR);                                             \
    const hipError_t emseg_sync_error = hipDeviceSynchronize();                               \
    TORCH_CHECK(emseg_launch_error == hipSuccess && emseg_sync_error == hipSuccess,           \
                "HIP-CPU error: ", hipGetErrorString(emseg_launch_error), " / ",              \
                hipGetErrorString(emseg_sync_error));                                         \
  } while (0)

#define C10_CUDA_KERNEL_LAUNCH_CHECK() C10_CUDA_CHECK(hipGetLastError())
