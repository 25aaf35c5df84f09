#pragma once
// HIP-CPU brings its own IEEE binary16 type (half_float::half), bit-compatible with c10::Half.
#include <cuda_runtime.h>
#include <hip/hip_fp16.h>
