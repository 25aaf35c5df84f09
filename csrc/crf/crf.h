#pragma once
// Dense CRF (Krähenbühl & Koltun, NIPS 2011): the per-pixel mean-field update, written once for the
// CPU and CUDA kernels. Message passing itself is lattice filtering (lattice/lattice.h).
//
// Energy: E(x) = sum_i U_i(x_i) + sum_k sum_{i != j} C_k(x_i, x_j) kbar_k(i, j), with kbar_k the
// symmetric-normalised Gaussian kernel n_k(i) k_k(i, j) n_k(j), n_k = 1 / sqrt(sum_j k_k(i, j)) (as
// Krähenbühl's code's NORMALIZE_SYMMETRIC), k_k evaluated with the permutohedral lattice.
// One parallel mean-field step: Q_i(l) ∝ exp(-U_i(l) - sum_k sum_l' C_k(l, l') S_k(i, l')),
// S_k = n_k F_k(n_k Q), F_k the lattice filtering (the self term i = j included, as in that code).
// The drivers fold n_k into the lattice's splat and slice weights once (lattice build time), so
// S_k is one filtering of Q itself, with no per-iteration scaling and no separate input buffer.
#include "common/macros.h"
#include "lattice/lattice.h"

#include <cmath>
#include <cstdint>
#include <cstring>

namespace emseg {
namespace crf {

constexpr int kMaxKernels = 2;

#if !defined(__CUDA_ARCH__)
// Cephes' expf core for a float or a float vector (the host paths below): n = round(x / ln 2) by
// the 1.5 * 2^23 trick (no SSE4.1 rounding needed), and the polynomial of exp(x - n ln 2).
// exp(x) = result * 2^n.
template <typename V>
inline V exp_mantissa(V x, V* n_out) {
  const V n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const V r = x - n * 0.693359375f + n * 2.12194440e-4f;
  V p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  *n_out = n;
  return p * r * r + r + 1.0f;
}
#endif

// exp(x) to within 2 ulp for x in [-80, 88], 0 below -80 (skipping denormals, whose arithmetic
// is slow on x86 and which no probability needs). Host: Cephes' polynomial in plain arithmetic so
// the W-lane loops below vectorise (libm's expf is a call per element); device: expf.
EMSEG_HD float exp_approx(float x) {
#if defined(__CUDA_ARCH__)
  return x < -80.0f ? 0.0f : expf(x);
#else
  // Comparisons, not fminf/fmaxf: those are library calls that stop the loop vectorising.
  float xc = x < -80.0f ? -80.0f : x;
  xc = xc > 88.0f ? 88.0f : xc;
  float n;
  const float p = exp_mantissa(xc, &n);
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof(scale));
  return x < -80.0f ? 0.0f : p * scale;
#endif
}

#if EMSEG_HOST_SIMD
// exp_approx on a vector of lanes (VF floats, VI ints of the same width).
template <typename VF, typename VI>
inline VF exp_approx_lanes(VF x) {
  const VF lowest = VF{} - 80.0f;
  const VF highest = VF{} + 88.0f;
  VF xc = x < lowest ? lowest : x;
  xc = xc > highest ? highest : xc;
  VF n;
  const VF p = exp_mantissa(xc, &n);
  const VI bits = (__builtin_convertvector(n, VI) + 127) << 23;
  const VF y = p * (VF)bits;  // vector cast: reinterprets the bits
  return x < lowest ? VF{} : y;
}
inline lattice::vf4 exp_approx4(lattice::vf4 x) {
  return exp_approx_lanes<lattice::vf4, lattice::vi4>(x);
}
#endif

// Every [P, L] array below is in the lattice's chunked layout: C = ceil(L / W) chunks [P][W]
// (lattice::chunk_offset). Padding lanes of the unary hold an infinite energy, so their Q is exactly
// 0. The bindings shift each pixel's energies so that the lowest is 0 (Q does not change): with
// messages bounded (check_dense_crf_inputs) the best label's energy then stays finite however large
// the unary, and every other label's is at most infinite, whose exp is exactly 0.
struct MeanFieldArgs {
  int64_t P;
  int64_t L;
  int64_t C;
  int num_kernels;                    // active kernels (0 at initialisation: Q = softmax(-U))
  const float* unary;                 // energies
  const float* sliced[kMaxKernels];   // S_k, the normalised lattice filtering of Q
  const float* compat[kMaxKernels];   // [L, L] row-major, C_k(l, l'), when not diagonal
  const float* diag[kMaxKernels];     // [C * W] C_k(l, l) (padding 0), when diagonal
  float* q;                           // out: Q, also the next iteration's lattice input
};

// Energy of padding lanes: exp(-inf - max) is exactly 0 (exp_approx is 0 below -80).
constexpr float kPadEnergy = __builtin_huge_valf();

// Pixel i's negated energy less the diagonal (Potts) kernels' messages, into a.q.
template <int W>
EMSEG_HD void mean_field_diagonal_messages(int64_t i, const MeanFieldArgs& a) {
  const int64_t P = a.P, C = a.C;
#if EMSEG_HOST_SIMD
  using lattice::vf4;
  constexpr int J = W / 4;
  for (int64_t c = 0; c < C; ++c) {
    const int64_t o = (c * P + i) * W;
    vf4* q = reinterpret_cast<vf4*>(a.q + o);
    const vf4* u = reinterpret_cast<const vf4*>(a.unary + o);
    for (int j = 0; j < J; ++j) q[j] = -u[j];
    for (int k = 0; k < a.num_kernels; ++k) {
      if (a.diag[k] == nullptr) continue;
      const vf4* s = reinterpret_cast<const vf4*>(a.sliced[k] + o);
      const vf4* dg = reinterpret_cast<const vf4*>(a.diag[k] + c * W);
      for (int j = 0; j < J; ++j) q[j] -= dg[j] * s[j];
    }
  }
#else
  for (int64_t c = 0; c < C; ++c) {
    const int64_t o = (c * P + i) * W;
    float* q = a.q + o;
    const float* u = a.unary + o;
    for (int t = 0; t < W; ++t) q[t] = -u[t];
    for (int k = 0; k < a.num_kernels; ++k) {
      if (a.diag[k] == nullptr) continue;
      const float* s = a.sliced[k] + o;
      const float* dg = a.diag[k] + c * W;
      for (int t = 0; t < W; ++t) q[t] -= dg[t] * s[t];
    }
  }
#endif
}

// Pixel i's messages of the kernels with a full [L, L] compatibility, subtracted from a.q.
template <int W>
EMSEG_HD void mean_field_matrix_messages(int64_t i, const MeanFieldArgs& a) {
  const int64_t P = a.P, L = a.L;
  for (int k = 0; k < a.num_kernels; ++k) {
    if (a.diag[k] != nullptr) continue;
    const float* s = a.sliced[k];
    const float* cm = a.compat[k];
    for (int64_t l = 0; l < L; ++l) {
      float m = 0.0f;
      for (int64_t t = 0; t < L; ++t) m += cm[l * L + t] * s[lattice::chunk_offset(i, t, P, W)];
      a.q[lattice::chunk_offset(i, l, P, W)] -= m;
    }
  }
}

// Pixel i's a.q replaced by its softmax, shifted by the maximum so exp never overflows.
template <int W>
EMSEG_HD void mean_field_softmax(int64_t i, const MeanFieldArgs& a) {
  const int64_t P = a.P, C = a.C;
#if EMSEG_HOST_SIMD
  using lattice::vf4;
  constexpr int J = W / 4;
#endif
#if EMSEG_HOST_SIMD
  vf4 mxv = lattice::vf4_set(-kPadEnergy);
  for (int64_t c = 0; c < C; ++c) {
    const vf4* q = reinterpret_cast<const vf4*>(a.q + (c * P + i) * W);
    for (int j = 0; j < J; ++j) mxv = q[j] > mxv ? q[j] : mxv;
  }
  float mx = mxv[0];
  for (int t = 1; t < 4; ++t) mx = mxv[t] > mx ? mxv[t] : mx;
  vf4 sumv = lattice::vf4_set(0.0f);
  for (int64_t c = 0; c < C; ++c) {
    vf4* q = reinterpret_cast<vf4*>(a.q + (c * P + i) * W);
    for (int j = 0; j < J; ++j) {
      q[j] = exp_approx4(q[j] - mx);
      sumv += q[j];
    }
  }
  const float inv = 1.0f / (sumv[0] + sumv[1] + sumv[2] + sumv[3]);
  for (int64_t c = 0; c < C; ++c) {
    const int64_t o = (c * P + i) * W;
    vf4* q = reinterpret_cast<vf4*>(a.q + o);
    for (int j = 0; j < J; ++j) q[j] *= inv;
  }
#else
  float mx = -kPadEnergy;
  for (int64_t c = 0; c < C; ++c) {
    const float* q = a.q + (c * P + i) * W;
    for (int t = 0; t < W; ++t) mx = q[t] > mx ? q[t] : mx;
  }
  float sum = 0.0f;
  for (int64_t c = 0; c < C; ++c) {
    float* q = a.q + (c * P + i) * W;
    for (int t = 0; t < W; ++t) {
      q[t] = exp_approx(q[t] - mx);
      sum += q[t];
    }
  }
  const float inv = 1.0f / sum;
  for (int64_t c = 0; c < C; ++c) {
    const int64_t o = (c * P + i) * W;
    float* q = a.q + o;
    for (int t = 0; t < W; ++t) q[t] *= inv;
  }
#endif
}

// Mean-field update of pixel i: its energy with the messages, then its softmax. Per pixel: K C W flops for a diagonal (Potts) compatibility or
// K L^2 for a full one, C W exps; reads (1 + K) C W floats, writes C W. Lane loops have the
// constant trip count W and vectorise on the host.
template <int W>
EMSEG_HD void mean_field_pixel(int64_t i, const MeanFieldArgs& a) {
  mean_field_diagonal_messages<W>(i, a);
  mean_field_matrix_messages<W>(i, a);
  mean_field_softmax<W>(i, a);
}

// One mean-field step backwards (the gradient of mean_field_pixel's softmax and messages), in the
// same layouts. Forward step t >= 1: A_t = -E - sum_k S_k C_k^T, S_k = N_k(Q_{t-1}) with
// N_k = n_k F_k n_k the normalised filtering, Q_t = softmax(A_t); step 0: Q_0 = softmax(-E).
// Given G = dLoss/dQ_t, this writes dA = Q_t (G - <G, Q_t>), adds -dA to dLoss/dE, and the
// transposed filterings' inputs dS_k = -(dA C_k); then dLoss/dQ_{t-1} = sum_k N_k^T(dS_k), which
// the next call (step t-1) gathers from `adjoint`. Padding lanes have Q = 0, hence dA = 0 and no
// gradient.
struct MeanFieldGradArgs {
  int64_t P;
  int64_t L;
  int64_t C;
  int num_kernels;                     // kernels whose messages fed step t (0 for step 0)
  int num_adjoint;                     // kernels whose F_k^T outputs add to G (0 for the last step)
  const float* q;                      // Q_t
  const float* grad_q;                 // dLoss/dQ_t from outside (the output's gradient), or null
  const float* adjoint[kMaxKernels];   // N_k^T(dS_k) of step t+1
  const float* compat[kMaxKernels];    // [L, L] row-major, when not diagonal
  const float* diag[kMaxKernels];      // [C * W] (padding 0), when diagonal
  float* softmax_grad;                 // out: dA (read back for a full compatibility)
  float* grad_energy;                  // in/out: dLoss/dE, summed over the steps
  float* next_in[kMaxKernels];         // out: dS_k, the transposed filterings' inputs
};

EMSEG_HD float upstream_grad(const MeanFieldGradArgs& a, int64_t i, int64_t o) {
  float g = a.grad_q != nullptr ? a.grad_q[o] : 0.0f;
  for (int k = 0; k < a.num_adjoint; ++k) g += a.adjoint[k][o];
  return g;
}

// Per pixel: about (3 + K) C W flops for Potts (plus K L^2 for a full compatibility), no exps;
// reads (2 + K) C W floats and writes (2 + K) C W. Scalar loops on every backend (the backward is
// not the hot path of inference).
template <int W>
EMSEG_HD void mean_field_pixel_grad(int64_t i, const MeanFieldGradArgs& a) {
  const int64_t P = a.P, L = a.L, C = a.C;
  float dot = 0.0f;
  for (int64_t c = 0; c < C; ++c) {
    for (int t = 0; t < W; ++t) {
      const int64_t o = (c * P + i) * W + t;
      dot += upstream_grad(a, i, o) * a.q[o];
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    for (int t = 0; t < W; ++t) {
      const int64_t o = (c * P + i) * W + t;
      const float da = a.q[o] * (upstream_grad(a, i, o) - dot);
      a.softmax_grad[o] = da;
      a.grad_energy[o] -= da;
      for (int k = 0; k < a.num_kernels; ++k) {
        if (a.diag[k] != nullptr) a.next_in[k][o] = -a.diag[k][c * W + t] * da;
      }
    }
  }
  for (int k = 0; k < a.num_kernels; ++k) {
    if (a.diag[k] != nullptr) continue;
    const float* cm = a.compat[k];
    for (int64_t l2 = 0; l2 < L; ++l2) {
      float m = 0.0f;
      for (int64_t l = 0; l < L; ++l) {
        m += cm[l * L + l2] * a.softmax_grad[lattice::chunk_offset(i, l, P, W)];
      }
      a.next_in[k][lattice::chunk_offset(i, l2, P, W)] = -m;
    }
  }
}

// Symmetric normalisation from the lattice response to all-ones (the +1e-20 as in Krähenbühl's code).
EMSEG_HD float symmetric_norm(float response) { return 1.0f / sqrtf(response + 1e-20f); }

}  // namespace crf
}  // namespace emseg
