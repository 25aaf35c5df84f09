#pragma once
// The dense-CRF plan and driver, written once for both backends: per image, the energies in the
// chunked layout, one lattice per active kernel, their symmetric normalisation, the buffers, the
// mean-field iterations and their reverse (the gradient with respect to the unary). A backend
// supplies the hooks (CpuCrfBackend in crf_cpu.cpp, CudaCrfBackend in crf_cuda.cpp):
//
//   using Lattice = ...;                                     // built once per kernel and image
//   // one lattice per feature tensor ([P, d] float32, contiguous), in order
//   static std::vector<Lattice> build(const std::vector<at::Tensor>& features);
//   static int64_t vertices(const Lattice&);
//   // the layout conversions of chunked_energies_torch and write_plain_torch (below)
//   static at::Tensor chunked_energies(const at::Tensor& unary_region, bool logits, int W, int64_t C);
//   static void write_plain(const at::Tensor& chunks, at::Tensor plain);
//   static void scale_points(Lattice&, const at::Tensor& n);  // weights of point i times n[i]
//   // count lattices, each filtering C chunks of width W (lattice.h) from in[s] to out[s] with
//   // scratch[s] (2 C (M_s + 1) W floats); adjoint: the transposed filter.
//   static void filter(const Lattice* const* lat, int count, const float* const* in,
//                      float* const* out, float* const* scratch, int W, int64_t C, bool adjoint);
//   static void symmetric_norm(const float* response, int64_t P, float* norm);
//   static void mean_field(const MeanFieldArgs&, int W);       // crf::mean_field_pixel<W>, all i
//   static void mean_field_grad(const MeanFieldGradArgs&, int W);  // crf::mean_field_pixel_grad<W>
//   static void for_each_image(int64_t N, const F& f);       // f(n) for every image n, any order
//   // Optional row layout for inference (kRows): the lanes of a pixel's row, or 0 for none, and
//   // one mean-field step in it (filterings and update together; num_kernels = 0: Q_0).
//   static constexpr bool kRows;
//   static int row_width(int64_t L, bool all_kernels_diagonal);
//   static void mean_field_rows(const MeanFieldArgs&, const Lattice* const* lat, float* const* scratch, int width);
//
// Memory, P pixels, L labels (C W = L rounded up to 4 or 8), K active kernels, M_k vertices:
// forward 8 P C W (U, Q) + K (4 P C W + 8 C (M_k + 1) W) bytes besides the lattices, or in a
// backend's row layout (R lanes) 8 P R + K 12 (M_k + 1) R (no message arrays); the
// backward keeps every iteration's marginals, (T + 1) 4 P C W bytes for T iterations, and
// (2 + K) more [P, C W] buffers (it recomputes the forward rather than having the forward store
// them, so inference pays nothing for differentiability).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <optional>
#include <vector>

#include "common/interrupt.h"
#include "crf/crf.h"
#include "crf/crf_checks.h"
#include "crf/crf_features.h"
#include "lattice/lattice.h"

namespace emseg {
namespace crf {

// Layout conversions in torch ops, for any device (CudaCrfBackend's hooks and the backward; the
// CPU's inference has fused loops). [P, L] pixels by label -> chunked [C][P][W], padding lanes
// set to `pad`, and back to [L, h, w].
inline at::Tensor pixels_to_chunks(const at::Tensor& pixels_by_label, int64_t C, int W,
                                   float pad = 0.0f) {
  const int64_t P = pixels_by_label.size(0), L = pixels_by_label.size(1);
  at::Tensor x = at::full({P, C * W}, pad, pixels_by_label.options());
  x.slice(1, 0, L).copy_(pixels_by_label);
  return x.view({P, C, W}).permute({1, 0, 2}).contiguous();
}
inline at::Tensor chunks_to_plain(const at::Tensor& chunks, int64_t L, int64_t h, int64_t w) {
  const int64_t P = chunks.size(1);
  return chunks.permute({1, 0, 2}).reshape({P, -1}).slice(1, 0, L).t().reshape({L, h, w});
}

// The energies of unary_region [L, h, w] in the chunked layout: E = unary, or -unary for logits,
// each pixel's lowest shifted to 0, padding lanes kPadEnergy (see crf.h).
inline at::Tensor chunked_energies_torch(const at::Tensor& unary_region, bool logits, int W,
                                         int64_t C) {
  const int64_t L = unary_region.size(0), P = unary_region.size(1) * unary_region.size(2);
  const at::Tensor u = unary_region.reshape({L, P}).t();
  const at::Tensor energy = logits ? u.neg() : u;
  return pixels_to_chunks(energy - energy.amin(1, /*keepdim=*/true), C, W, kPadEnergy);
}

// Chunked [C][P][W] -> plain ([L, h, w], any strides).
inline void write_plain_torch(const at::Tensor& chunks, at::Tensor plain) {
  plain.copy_(chunks_to_plain(chunks, plain.size(0), plain.size(1), plain.size(2)));
}

template <class B>
class CrfImage {
 public:
  // unary_n [L, H, W] and image_n [3, H, W] of one image (the plan's checks done), compat [2, L, L]
  // contiguous on the same device; the CRF runs on the top-left h x w region.
  CrfImage(const DenseCrfPlan& plan, const at::Tensor& unary_n, const at::Tensor& image_n,
           const at::Tensor& compat, c10::ArrayRef<double> pos_std, c10::ArrayRef<double> bi_std,
           int64_t iterations, int64_t h, int64_t w, bool logits, bool for_inference)
      : L_(unary_n.size(0)), h_(h), w_(w), P_(h * w) {
    const auto fopts = unary_n.options().dtype(at::kFloat);
    bool all_diagonal = true;
    for (int k = 0; k < kMaxKernels; ++k) all_diagonal &= !plan.active[k] || plan.diagonal[k];
    const int row_width = for_inference ? B::row_width(L_, all_diagonal) : 0;
    rows_ = row_width > 0;
    W_ = rows_ ? row_width : lattice::chunk_width(L_);
    C_ = (L_ + W_ - 1) / W_;
    // Energies in the chunked layout, the lowest of each pixel shifted to 0; padding lanes get an
    // infinite energy (Q = 0 there). See crf.h.
    unary_ = B::chunked_energies(region(unary_n), logits, W_, C_);
    args_.P = P_;
    args_.L = L_;
    args_.C = C_;
    args_.unary = unary_.data_ptr<float>();

    std::vector<at::Tensor> features;
    for (int k = 0; k < kMaxKernels && iterations > 0; ++k) {
      if (!plan.active[k]) continue;
      features.push_back(k == 0 ? crf_features(image_n, h, w, pos_std, false)
                                : crf_features(image_n, h, w, bi_std, true));
      compat_.push_back(compat[k]);
      if (plan.diagonal[k]) {
        diag_.push_back(at::zeros({C_ * W_}, fopts));
        diag_.back().slice(0, 0, L_).copy_(at::diag(compat[k]));
      } else {
        diag_.emplace_back();
      }
    }
    lat_ = B::build(features);
    features.clear();
    used_ = static_cast<int>(lat_.size());
    iterations_ = used_ > 0 ? iterations : 0;

    // Symmetric normalisation: every lattice's response to all-ones (one W = 4 chunk, lane 0).
    at::Tensor ones = at::zeros({P_, 4}, fopts);
    ones.select(1, 0).fill_(1.0f);
    std::vector<at::Tensor> response, scratch;
    for (int s = 0; s < used_; ++s) {
      response.push_back(at::empty({P_, 4}, fopts));
      scratch.push_back(at::empty({2 * (B::vertices(lat_[s]) + 1) * 4}, fopts));
    }
    const float* ones_in[kMaxKernels] = {ones.data_ptr<float>(), ones.data_ptr<float>()};
    filter(ones_in, response, scratch, 4, 1, false);
    for (int s = 0; s < used_; ++s) {
      at::Tensor norm = at::empty({P_}, fopts);
      B::symmetric_norm(response[s].select(1, 0).contiguous().data_ptr<float>(), P_,
                        norm.data_ptr<float>());
      B::scale_points(lat_[s], norm);  // the lattice now filters n F n (crf.h)
      sliced_.push_back(rows_ ? at::Tensor() : at::empty({C_, P_, W_}, fopts));
      // Two vertex buffers per chunk, three in the row layout (CpuLattice::blurred_rows).
      scratch_.push_back(at::empty({(rows_ ? 3 : 2) * C_ * (B::vertices(lat_[s]) + 1) * W_}, fopts));
      args_.sliced[s] = rows_ ? nullptr : sliced_[s].data_ptr<float>();
      args_.compat[s] = compat_[s].data_ptr<float>();
      args_.diag[s] = diag_[s].defined() ? diag_[s].data_ptr<float>() : nullptr;
    }
  }

  // The marginals Q_T in the chunked layout; with `history`, every Q_t (t = 0..T) is kept there.
  at::Tensor forward(std::vector<at::Tensor>* history = nullptr) {
    at::Tensor q = at::empty({C_, P_, W_}, unary_.options());
    args_.q = q.data_ptr<float>();
    if constexpr (B::kRows) {
      if (rows_) {
        TORCH_INTERNAL_ASSERT(history == nullptr, "the row layout keeps no history");
        forward_rows();
        return q;
      }
    }
    args_.num_kernels = 0;  // Q_0 = softmax(-U)
    B::mean_field(args_, W_);
    for (int64_t it = 0; it < iterations_; ++it) {
      poll_interrupt();
      // Every kernel filters Q; the update then overwrites Q (or, keeping the history, a new one).
      const float* in[kMaxKernels] = {args_.q, args_.q};
      filter(in, sliced_, scratch_, W_, C_, false);
      if (history != nullptr) {
        history->push_back(q);
        q = at::empty_like(q);
        args_.q = q.data_ptr<float>();
      }
      args_.num_kernels = used_;
      B::mean_field(args_, W_);
    }
    if (history != nullptr) history->push_back(q);
    return q;
  }

  // dLoss/dE (chunked) for dLoss/dQ_T = grad (chunked): the forward again, keeping its marginals,
  // then the steps in reverse, each with the transposed filterings.
  at::Tensor backward(const at::Tensor& grad) {
    std::vector<at::Tensor> history;
    forward(&history);
    at::Tensor grad_energy = at::zeros_like(grad);
    at::Tensor softmax_grad = at::empty_like(grad);
    std::vector<at::Tensor> next_in;
    const float* in[kMaxKernels] = {nullptr, nullptr};
    MeanFieldGradArgs g{};
    g.P = P_;
    g.L = L_;
    g.C = C_;
    g.softmax_grad = softmax_grad.data_ptr<float>();
    g.grad_energy = grad_energy.data_ptr<float>();
    for (int s = 0; s < used_; ++s) {
      next_in.push_back(at::zeros_like(grad));  // padding lanes stay 0
      in[s] = next_in[s].data_ptr<float>();
      g.adjoint[s] = sliced_[s].data_ptr<float>();
      g.compat[s] = args_.compat[s];
      g.diag[s] = args_.diag[s];
      g.next_in[s] = next_in[s].data_ptr<float>();
    }
    for (int64_t t = iterations_; t >= 0; --t) {
      poll_interrupt();
      g.q = history[t].data_ptr<float>();
      g.grad_q = t == iterations_ ? grad.data_ptr<float>() : nullptr;
      g.num_adjoint = t == iterations_ ? 0 : used_;
      g.num_kernels = t > 0 ? used_ : 0;
      B::mean_field_grad(g, W_);
      history[t] = at::Tensor();  // no longer needed
      if (t > 0) filter(in, sliced_, scratch_, W_, C_, true);
    }
    return grad_energy;
  }

  // Q_T, the marginals, written into `plain` ([L, h, w], any strides).
  void write_marginals(const at::Tensor& q, at::Tensor plain) const {
    B::write_plain(q, plain);
  }

  // A region of [L, H, W] -> chunked, and chunked -> [L, h, w].
  at::Tensor region_to_chunks(const at::Tensor& plain) const {
    return pixels_to_chunks(region(plain).reshape({L_, P_}).t(), C_, W_);
  }
  at::Tensor to_plain(const at::Tensor& chunks) const { return chunks_to_plain(chunks, L_, h_, w_); }
  at::Tensor region(const at::Tensor& plain) const { return plain.slice(1, 0, h_).slice(2, 0, w_); }

 private:
  // Inference in the backend's row layout (C_ = 1, W_ lanes): each iteration filters Q with every
  // kernel and updates it in one B::mean_field_rows, which fuses the last pass of the filterings
  // with the update, so no message array is written.
  void forward_rows() {
    const typename B::Lattice* lat[kMaxKernels];
    float* sc[kMaxKernels];
    for (int s = 0; s < used_; ++s) {
      lat[s] = &lat_[s];
      sc[s] = scratch_[s].data_ptr<float>();
    }
    args_.num_kernels = 0;  // Q_0 = softmax(-U)
    B::mean_field_rows(args_, lat, sc, W_);
    for (int64_t it = 0; it < iterations_; ++it) {
      poll_interrupt();
      args_.num_kernels = used_;
      B::mean_field_rows(args_, lat, sc, W_);
    }
  }

  // Between iterations, on the thread that called the op (images run on the intra-op threads
  // poll in for_each_image instead).
  static void poll_interrupt() {
    if (!at::in_parallel_region()) check_interrupt();
  }

  void filter(const float* const* in, std::vector<at::Tensor>& out, std::vector<at::Tensor>& scratch,
              int W, int64_t C, bool adjoint) const {
    if (used_ == 0) return;
    const typename B::Lattice* lat[kMaxKernels];
    float* o[kMaxKernels];
    float* sc[kMaxKernels];
    for (int s = 0; s < used_; ++s) {
      lat[s] = &lat_[s];
      o[s] = out[s].data_ptr<float>();
      sc[s] = scratch[s].data_ptr<float>();
    }
    B::filter(lat, used_, in, o, sc, W, C, adjoint);
  }

  int64_t L_, h_, w_, P_;
  bool rows_ = false;  // inference in the backend's row layout
  int W_ = 0;
  int64_t C_ = 0;
  int used_ = 0;
  int64_t iterations_ = 0;
  at::Tensor unary_;
  std::vector<typename B::Lattice> lat_;
  std::vector<at::Tensor> compat_, diag_, sliced_, scratch_;
  MeanFieldArgs args_{};
};

// f(crf, n, result) for every image n with pixels, its CrfImage built, writing into `result`, the
// image's valid region of the [N, L, H, W] tensor returned (0 outside those regions).
template <class B, typename F>
at::Tensor for_each_crf_image(const at::Tensor& unary_in, const at::Tensor& image,
                              const at::Tensor& compat_in, c10::ArrayRef<double> pos_std,
                              c10::ArrayRef<double> bi_std, int64_t iterations,
                              const std::optional<at::Tensor>& sizes, bool logits,
                              bool for_inference, const F& f) {
  const DenseCrfPlan plan =
      check_dense_crf_inputs(unary_in, image, compat_in, pos_std, bi_std, iterations, sizes);
  const at::Tensor unary = unary_in.contiguous();
  const at::Tensor compat = compat_in.to(unary.device(), at::kFloat).contiguous();
  at::Tensor out = at::zeros_like(unary, at::MemoryFormat::Contiguous);
  B::for_each_image(unary.size(0), [&](int64_t n) {
    const int64_t h = plan.height[n], w = plan.width[n];
    if (h * w == 0) return;
    CrfImage<B> crf(plan, unary[n], image[n], compat, pos_std, bi_std, iterations, h, w, logits,
                    for_inference);
    f(crf, n, crf.region(out[n]));
  });
  return out;
}

// dense_crf on one backend: the marginals [N, L, H, W], 0 outside each image's valid region.
template <class B>
at::Tensor dense_crf_forward(const at::Tensor& unary, const at::Tensor& image,
                             const at::Tensor& compat, c10::ArrayRef<double> pos_std,
                             c10::ArrayRef<double> bi_std, int64_t iterations,
                             const std::optional<at::Tensor>& sizes, bool logits) {
  return for_each_crf_image<B>(unary, image, compat, pos_std, bi_std, iterations, sizes, logits,
                               /*for_inference=*/true, [](CrfImage<B>& crf, int64_t, at::Tensor result) {
                                 crf.write_marginals(crf.forward(), result);
                               });
}

// dense_crf_backward on one backend: dLoss/dunary [N, L, H, W] for dLoss/dQ = grad, 0 outside
// each image's valid region (Q does not depend on the unary there).
template <class B>
at::Tensor dense_crf_backward(const at::Tensor& grad, const at::Tensor& unary,
                              const at::Tensor& image, const at::Tensor& compat,
                              c10::ArrayRef<double> pos_std, c10::ArrayRef<double> bi_std,
                              int64_t iterations, const std::optional<at::Tensor>& sizes,
                              bool logits) {
  check_dtype(grad, "grad", at::kFloat);
  check_same_device(grad, "grad", unary, "unary");
  TORCH_CHECK(grad.sizes() == unary.sizes(), "grad must have the shape of unary (",
              shape_str(unary), "), got ", shape_str(grad));
  return for_each_crf_image<B>(
      unary, image, compat, pos_std, bi_std, iterations, sizes, logits, /*for_inference=*/false,
      [&](CrfImage<B>& crf, int64_t n, at::Tensor result) {
        const at::Tensor grad_energy = crf.to_plain(crf.backward(crf.region_to_chunks(grad[n])));
        // E = sign * unary (less a per-pixel constant, which Q does not see).
        result.copy_(logits ? grad_energy.neg() : grad_energy);
      });
}

}  // namespace crf
}  // namespace emseg
