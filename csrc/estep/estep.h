#pragma once
// Per-pixel and per-image math of the E-step operators, written once for the CPU and CUDA kernels.
// Torch-free on purpose: the CUDA kernels including it compile with bare nvcc.
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/macros.h"
#include "common/team.h"

namespace emseg {
namespace estep {

// Accumulation type of the biased scores: float for float/half/bfloat16 inputs, double for double.
template <typename scalar_t>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

template <typename scalar_t>
EMSEG_HD double to_double(scalar_t value) {
  return static_cast<double>(static_cast<typename AccType<scalar_t>::type>(value));
}

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// ---- EM-Fixed --------------------------------------------------------------------------------

// argmax_l score_l + phi_l at one pixel; `scores` points at class 0 of the pixel, classes are
// `plane` elements apart. Ties keep the lower class (strict >), matching numpy.argmax.
template <typename scalar_t, typename acc_t>
EMSEG_HD int64_t em_fixed_pixel(const scalar_t* scores, int64_t plane, int64_t num_classes,
                                const bool* present, acc_t fg_bias, acc_t bg_bias,
                                bool suppress_absent) {
  int64_t best = 0;
  acc_t best_value = static_cast<acc_t>(scores[0]) + bg_bias;
  for (int64_t c = 1; c < num_classes; ++c) {
    const bool is_present = present[c];
    if (!is_present && suppress_absent) continue;
    const acc_t value = static_cast<acc_t>(scores[c * plane]) + (is_present ? fg_bias : acc_t(0));
    if (value > best_value) {
      best_value = value;
      best = c;
    }
  }
  return best;
}

// ---- EM-Adapt --------------------------------------------------------------------------------

// Relative slack on M * portion so that float rounding (0.4 * 30 = 12.000000000000002) does not
// add a pixel to a share or push shares that add up to exactly 1 over it.
constexpr double kPortionSlack = 1e-12;

// Pixels a present class must win: ceil(M * portion) when all counts fit in the image; when they
// do not (shares summing past 1, or rounding on tiny images) every count is scaled down to
// floor(M * portion / max(total, 1)), which always fits.
EMSEG_HD int64_t required_pixels(double portion, double total_portion, bool fits, int64_t num_pixels) {
  const double m = static_cast<double>(num_pixels);
  if (fits) return static_cast<int64_t>(ceil(m * portion * (1.0 - kPortionSlack)));
  const double denominator = total_portion > 1.0 ? total_portion : 1.0;
  return static_cast<int64_t>(floor(m * portion / denominator * (1.0 + kPortionSlack)));
}

EMSEG_HD bool reaches(double value, double target, bool strict) {
  return strict ? value > target : value >= target;
}

// Smallest double b with (score + b) >= target (or > target when strict), evaluated in the same
// floating-point arithmetic the labelling uses, so a class given bias b really wins the pixel.
// fl(score + b) is monotone in b, so the answer is found exactly by bisection over the ordered
// bit patterns of doubles; the common case (target - score is already the answer) returns early.
EMSEG_HD double min_bias_to_reach(double score, double target, bool strict) {
  if (target == kNegInf) return kNegInf;
  const double inf = std::numeric_limits<double>::infinity();
  const double guess = target - score;
  const bool guess_reaches = reaches(score + guess, target, strict);
  if (guess_reaches && !reaches(score + nextafter(guess, -inf), target, strict)) return guess;
  // Bracket [failing, passing] around the answer with steps that double from a few ulps.
  double step = (fabs(target) + fabs(score)) * 0x1p-50 + 0x1p-1074;
  double passing = guess, failing = guess;
  if (guess_reaches) {
    do {
      failing = guess - step;
      step *= 2;
    } while (reaches(score + failing, target, strict));
  } else {
    do {
      passing = guess + step;
      step *= 2;
    } while (!reaches(score + passing, target, strict));
  }
  uint64_t lo = ordered_key(failing), hi = ordered_key(passing);
  while (hi - lo > 1) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (reaches(score + key_to_double(mid), target, strict)) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return key_to_double(hi);
}

// The smallest bias with which class `label` wins pixel `m` against the present classes' current
// biases (ties go to the lower class, so it must beat lower classes and at least equal higher ones).
template <typename scalar_t>
EMSEG_HD double win_threshold(const scalar_t* scores, int64_t num_pixels, int64_t num_classes,
                              const bool* present, const double* bias, int64_t m, int64_t label) {
  double best_below = kNegInf;
  double best_above = kNegInf;
  for (int64_t c = 0; c < num_classes; ++c) {
    if (c == label || !(c == 0 || present[c])) continue;
    const double value = to_double(scores[c * num_pixels + m]) + bias[c];
    if (c < label) {
      best_below = value > best_below ? value : best_below;
    } else {
      best_above = value > best_above ? value : best_above;
    }
  }
  const double score = to_double(scores[label * num_pixels + m]);
  const double need_above = min_bias_to_reach(score, best_above, false);
  const double need_below = min_bias_to_reach(score, best_below, true);
  return need_above > need_below ? need_above : need_below;
}

// argmax over the present classes of score + bias, ties to the lower class.
template <typename scalar_t>
EMSEG_HD int64_t adapt_label(const scalar_t* scores, int64_t num_pixels, int64_t num_classes,
                             const bool* present, const double* bias, int64_t m) {
  int64_t best = 0;
  double best_value = to_double(scores[m]) + bias[0];
  for (int64_t c = 1; c < num_classes; ++c) {
    if (!present[c]) continue;
    const double value = to_double(scores[c * num_pixels + m]) + bias[c];
    if (value > best_value) {
      best_value = value;
      best = c;
    }
  }
  return best;
}

struct AdaptShared {
  RadixSelectShared radix;
  int64_t wins;
  int32_t changed;
  int32_t fits;
  double total_portion;
};

// EM-Adapt for one image (scores [C, M], present [C]) by one team. Biases start at 0 and only grow:
// each present class in turn (background first) is raised to the smallest bias at which it wins its
// required pixels, i.e. the k-th smallest of its per-pixel win thresholds (exact radix select).
// Sweeps repeat until one changes nothing. `keys` is scratch for M values.
template <typename scalar_t, typename Team>
EMSEG_HD void em_adapt_image(const scalar_t* scores, const bool* present, int64_t num_classes,
                             int64_t num_pixels, double fg_portion, double bg_portion,
                             int64_t max_sweeps, double* bias, uint64_t* keys, int64_t* labels,
                             AdaptShared* sh, const Team& team) {
  if (team.tid == 0) {
    int64_t present_fg = 0;
    for (int64_t c = 0; c < num_classes; ++c) {
      const bool is_present = c == 0 || present[c];
      bias[c] = is_present ? 0.0 : kNegInf;
      present_fg += (c > 0 && is_present) ? 1 : 0;
    }
    sh->total_portion = bg_portion + static_cast<double>(present_fg) * fg_portion;
    int64_t needed = required_pixels(bg_portion, sh->total_portion, true, num_pixels);
    needed += present_fg * required_pixels(fg_portion, sh->total_portion, true, num_pixels);
    sh->fits = needed <= num_pixels ? 1 : 0;
  }
  team.sync();
  const bool fits = sh->fits != 0;
  const double total_portion = sh->total_portion;

  for (int64_t sweep = 0; sweep < max_sweeps; ++sweep) {
    if (team.tid == 0) sh->changed = 0;
    for (int64_t label = 0; label < num_classes; ++label) {
      if (label > 0 && !present[label]) continue;
      const double portion = label == 0 ? bg_portion : fg_portion;
      const int64_t needed = required_pixels(portion, total_portion, fits, num_pixels);
      if (needed == 0) continue;
      if (team.tid == 0) sh->wins = 0;
      team.sync();
      const double current = bias[label];
      int64_t wins = 0;
      for (int64_t m = team.tid; m < num_pixels; m += team.size) {
        const double threshold =
            win_threshold(scores, num_pixels, num_classes, present, bias, m, label);
        keys[m] = ordered_key(threshold);
        wins += threshold <= current ? 1 : 0;
      }
      team.add(&sh->wins, wins);
      team.sync();
      const bool satisfied = sh->wins >= needed;
      team.sync();  // all have read the total before thread 0 resets it for the next class
      if (satisfied) continue;
      const double raised = key_to_double(radix_select(keys, num_pixels, needed - 1, &sh->radix, team));
      if (team.tid == 0) {
        bias[label] = raised;
        sh->changed = 1;
      }
      team.sync();
    }
    team.sync();
    const bool changed = sh->changed != 0;
    team.sync();  // all have read the flag before thread 0 may clear it for the next sweep
    if (!changed) break;
  }

  for (int64_t m = team.tid; m < num_pixels; m += team.size) {
    labels[m] = adapt_label(scores, num_pixels, num_classes, present, bias, m);
  }
}

}  // namespace estep
}  // namespace emseg
