// embed_points8 (the CPU build's 8-lane embedding, compiled for AVX2 without FMA as lattice_cpu.cpp
// compiles it) against embed_point and hash_key, one point at a time: keys, weights and hashes must
// be the same bits. Inputs:
// uniform features at several magnitudes down to denormal results, with integers, quarter steps
// and signed zeros mixed in (ties of the rounding and of the ranking), in the default floating-
// point mode and with flush-to-zero (torch.set_flush_denormal). Exit status 0 when every case
// agrees.
#include "lattice/lattice.h"

#include <cmath>
#include <xmmintrin.h>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using namespace emseg::lattice;

template <int D>
__attribute__((target("avx2"), flatten)) void embed8(const float* f, const float* scale,
                                                     int32_t* keys, float* bary, uint32_t* hashes) {
  embed_points8<D>(f, scale, keys, bary, hashes);
}

template <int D>
bool agrees(int64_t groups, float magnitude, unsigned seed) {
  const int64_t P = 8 * groups;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-magnitude, magnitude);
  std::vector<float> f(P * D);
  for (int64_t k = 0; k < P * D; ++k) {
    const float x = uniform(rng);
    switch (k % 5) {
      case 1: f[k] = std::round(x); break;
      case 2: f[k] = std::round(4.0f * x) / 4.0f; break;
      case 3: f[k] = (k / 5) % 2 ? -0.0f : 0.0f; break;
      default: f[k] = x;
    }
  }
  float scale[kMaxDim];
  for (int j = 1; j <= D; ++j) scale[j - 1] = embed_scale(j, D);
  const int64_t K = (D + 1) * D;
  std::vector<int32_t> keys_one(P * K), keys_eight(P * K);
  std::vector<float> bary_one(P * (D + 1)), bary_eight(P * (D + 1));
  std::vector<uint32_t> hash_one(P * (D + 1)), hash_eight(P * (D + 1));
  for (int64_t i = 0; i < P; ++i) {
    embed_point<D>(f.data() + i * D, D, scale, keys_one.data() + i * K, bary_one.data() + i * (D + 1));
    for (int r = 0; r <= D; ++r) hash_one[i * (D + 1) + r] = hash_key(keys_one.data() + i * K + r * D, D);
  }
  for (int64_t i = 0; i < P; i += 8) {
    embed8<D>(f.data() + i * D, scale, keys_eight.data() + i * K, bary_eight.data() + i * (D + 1),
              hash_eight.data() + i * (D + 1));
  }
  const bool same = keys_one == keys_eight && hash_one == hash_eight &&
                    std::memcmp(bary_one.data(), bary_eight.data(), bary_one.size() * sizeof(float)) == 0;
  std::printf("d=%2d |f| <= %-8g %lld points: %s\n", D, magnitude, static_cast<long long>(P),
              same ? "same bits" : "DIFFERENT");
  return same;
}

template <int D>
bool all_magnitudes() {
  bool ok = true;
  unsigned seed = 100 * D;
  for (float magnitude : {3.0e-38f, 0.5f, 3.0f, 40.0f, 1000.0f, 1.0e5f}) {
    ok &= agrees<D>(10000, magnitude, ++seed);
  }
  return ok;
}

int main() {
  if (!__builtin_cpu_supports("avx2")) {
    std::printf("no AVX2 on this CPU: the 8-lane embedding is never used here\n");
    return 77;
  }
  bool ok = true;
  for (bool flush : {false, true}) {
    // Flush-to-zero and denormals-are-zero, as torch.set_flush_denormal(True) sets them.
    _mm_setcsr(flush ? _mm_getcsr() | 0x8040 : _mm_getcsr() & ~0x8040u);
    std::printf("flush-to-zero %s\n", flush ? "on" : "off");
    ok &= all_magnitudes<1>() & all_magnitudes<2>() & all_magnitudes<3>() & all_magnitudes<5>() &
          all_magnitudes<8>() & all_magnitudes<16>();
  }
  return ok ? 0 : 1;
}
