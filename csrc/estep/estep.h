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

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNegInf = -kInf;

// ---- EM-Fixed --------------------------------------------------------------------------------

// phi_c of EM-Fixed: bg_bias for background, fg_bias for a present class, 0 for an absent one.
// Returns false when class c takes no part in the argmax (absent and suppressed).
template <typename acc_t>
EMSEG_HD bool em_fixed_bias(int64_t c, const bool* present, acc_t fg_bias, acc_t bg_bias,
                            bool suppress_absent, acc_t* bias) {
  if (c == 0) {
    *bias = bg_bias;
    return true;
  }
  if (present[c]) {
    *bias = fg_bias;
    return true;
  }
  *bias = acc_t(0);
  return !suppress_absent;
}

// Running argmax over classes visited in ascending order: strict > keeps the lower class on ties,
// matching numpy.argmax.
template <typename acc_t, typename index_t>
EMSEG_HD void keep_max(acc_t value, index_t c, acc_t* best, index_t* best_class) {
  if (value > *best) {
    *best = value;
    *best_class = c;
  }
}

// argmax_l score_l + phi_l at one pixel; `scores` points at class 0 of the pixel, classes are
// `plane` elements apart.
template <typename scalar_t, typename acc_t>
EMSEG_HD int64_t em_fixed_pixel(const scalar_t* scores, int64_t plane, int64_t num_classes,
                                const bool* present, acc_t fg_bias, acc_t bg_bias,
                                bool suppress_absent) {
  int64_t best_class = 0;
  acc_t best = static_cast<acc_t>(scores[0]) + bg_bias;
  for (int64_t c = 1; c < num_classes; ++c) {
    acc_t bias;
    if (!em_fixed_bias(c, present, fg_bias, bg_bias, suppress_absent, &bias)) continue;
    keep_max(static_cast<acc_t>(scores[c * plane]) + bias, c, &best, &best_class);
  }
  return best_class;
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
  const double guess = target - score;
  const bool guess_reaches = reaches(score + guess, target, strict);
  if (guess_reaches && !reaches(score + nextafter(guess, kNegInf), target, strict)) return guess;
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

// The smallest bias with which class `label` wins pixel `m` against its rivals, the present
// classes other than `label` and outside `raising` (when given), at their current biases. Ties go
// to the lower class, so it must beat lower rivals and at least equal higher ones.
template <typename scalar_t>
EMSEG_HD double min_bias_to_win(const scalar_t* scores, int64_t num_pixels, int64_t num_classes,
                                const bool* present, const double* bias, const int64_t* raising,
                                int64_t m, int64_t label) {
  double best_below = kNegInf;
  double best_above = kNegInf;
  for (int64_t c = 0; c < num_classes; ++c) {
    if (c == label || !(c == 0 || present[c]) || (raising != nullptr && raising[c])) continue;
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

template <typename scalar_t>
EMSEG_HD double win_threshold(const scalar_t* scores, int64_t num_pixels, int64_t num_classes,
                              const bool* present, const double* bias, int64_t m, int64_t label) {
  return min_bias_to_win(scores, num_pixels, num_classes, present, bias, nullptr, m, label);
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
  unsigned long long count;  // team-wide counter (unsigned long long: the type CUDA atomics take)
  unsigned long long first;  // team-wide minimum of a pixel index
  int32_t fits;
  double total_portion;
};

// Per-class solver state kept in team-visible scratch of 2 * C entries: [0, C) the quota state,
// [C, 2C) membership of the set of classes being raised together.
enum QuotaState : int64_t { kShort = -1, kAtQuota = 0, kSpare = 1 };

// Chain steps (per present class) allowed without a new lowest shortfall before the solver
// concludes that the image cannot be split as asked.
constexpr int64_t kStallChains = 64;

// Pixels of `label` in `labels`, summed over the team; every member returns the total.
template <typename Team>
EMSEG_HD int64_t team_count_label(const int64_t* labels, int64_t num_pixels, int64_t label,
                                  AdaptShared* sh, const Team& team) {
  if (team.tid == 0) sh->count = 0;
  team.sync();
  unsigned long long local = 0;
  for (int64_t m = team.tid; m < num_pixels; m += team.size) local += labels[m] == label ? 1 : 0;
  team.add(&sh->count, local);
  team.sync();
  const int64_t total = static_cast<int64_t>(sh->count);
  team.sync();  // all have read the total before it is reset
  return total;
}

// Labels every pixel with the current biases, records each present class's quota state (a class
// that needs no pixels counts as spare: it is never raised, it only gives pixels away) and
// returns the total shortfall.
template <typename scalar_t, typename Team>
EMSEG_HD int64_t label_and_deficit(const scalar_t* scores, const bool* present, int64_t num_classes,
                                   int64_t num_pixels, double fg_portion, double bg_portion,
                                   const double* bias, int64_t* labels, int64_t* state,
                                   AdaptShared* sh, const Team& team) {
  for (int64_t m = team.tid; m < num_pixels; m += team.size) {
    labels[m] = adapt_label(scores, num_pixels, num_classes, present, bias, m);
  }
  team.sync();
  const bool fits = sh->fits != 0;
  int64_t deficit = 0;
  for (int64_t label = 0; label < num_classes; ++label) {
    if (label > 0 && !present[label]) continue;
    const int64_t needed = required_pixels(label == 0 ? bg_portion : fg_portion, sh->total_portion,
                                           fits, num_pixels);
    const int64_t won = team_count_label(labels, num_pixels, label, sh, team);
    if (team.tid == 0) {
      state[label] = (won > needed || needed == 0) ? kSpare : (won < needed ? kShort : kAtQuota);
    }
    deficit += won < needed ? needed - won : 0;
  }
  team.sync();
  return deficit;
}

// Smallest common raise of the classes in `raising` that makes the best of them win pixel m from
// every class outside the set; +inf for pixels the set holds already.
template <typename scalar_t>
EMSEG_HD double capture_raise(const scalar_t* scores, int64_t num_pixels, int64_t num_classes,
                              const bool* present, const double* bias, const int64_t* labels,
                              const int64_t* raising, int64_t m) {
  if (raising[labels[m]]) return kInf;
  int64_t best = -1;
  double best_value = kNegInf;
  for (int64_t c = 0; c < num_classes; ++c) {
    if (!(c == 0 || present[c]) || !raising[c]) continue;
    const double value = to_double(scores[c * num_pixels + m]) + bias[c];
    if (best < 0 || value > best_value) {
      best = c;
      best_value = value;
    }
  }
  return min_bias_to_win(scores, num_pixels, num_classes, present, bias, raising, m, best) -
         bias[best];
}

// EM-Adapt's start, on thread 0: biases 0 for background and the present classes, -inf for the
// absent ones; the portions' total and whether every required pixel count fits in the image.
template <typename Team>
EMSEG_HD void adapt_start(const bool* present, int64_t num_classes, int64_t num_pixels,
                          double fg_portion, double bg_portion, double* bias, AdaptShared* sh,
                          const Team& team) {
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
}

// One sweep of phase 1: each present class in turn (background first) raised to the smallest bias
// at which it wins its required pixels.
template <typename scalar_t, typename Team>
EMSEG_HD void adapt_sweep(const scalar_t* scores, const bool* present, int64_t num_classes,
                          int64_t num_pixels, double fg_portion, double bg_portion, double* bias,
                          uint64_t* keys, AdaptShared* sh, const Team& team) {
  const bool fits = sh->fits != 0;
  const double total_portion = sh->total_portion;
  for (int64_t label = 0; label < num_classes; ++label) {
    if (label > 0 && !present[label]) continue;
    const double portion = label == 0 ? bg_portion : fg_portion;
    const int64_t needed = required_pixels(portion, total_portion, fits, num_pixels);
    if (needed == 0) continue;
    if (team.tid == 0) sh->count = 0;
    team.sync();
    const double current = bias[label];
    unsigned long long wins = 0;
    for (int64_t m = team.tid; m < num_pixels; m += team.size) {
      const double threshold =
          win_threshold(scores, num_pixels, num_classes, present, bias, m, label);
      keys[m] = ordered_key(threshold);
      wins += threshold <= current ? 1 : 0;
    }
    team.add(&sh->count, wins);
    team.sync();
    const bool satisfied = static_cast<int64_t>(sh->count) >= needed;
    team.sync();  // all have read the total before thread 0 resets it for the next class
    if (satisfied) continue;
    const double raised = key_to_double(radix_select(keys, num_pixels, needed - 1, &sh->radix, team));
    if (team.tid == 0) bias[label] = raised;
    team.sync();
  }
}

// One step of a phase-2 chain: the classes in `raising` go up by the smallest raise that wins them
// one more pixel, and the class that pixel came from joins them. Returns 1 when it came from a
// class with spare pixels (the chain is complete), 0 when not, -1 when no pixel is left to win.
template <typename scalar_t, typename Team>
EMSEG_HD int adapt_chain_step(const scalar_t* scores, const bool* present, int64_t num_classes,
                              int64_t num_pixels, double* bias, uint64_t* keys, const int64_t* state,
                              const int64_t* labels, int64_t* raising, AdaptShared* sh,
                              const Team& team) {
  for (int64_t m = team.tid; m < num_pixels; m += team.size) {
    keys[m] = ordered_key(
        capture_raise(scores, num_pixels, num_classes, present, bias, labels, raising, m));
  }
  const uint64_t smallest = radix_select(keys, num_pixels, 0, &sh->radix, team);
  // The set holds every pixel: nothing left to win (only inputs without a solution get here).
  if (key_to_double(smallest) == kInf) return -1;
  // The lowest pixel reaching the smallest raise, so the chain is the same on every backend.
  if (team.tid == 0) sh->first = static_cast<unsigned long long>(num_pixels);
  team.sync();
  for (int64_t m = team.tid; m < num_pixels; m += team.size) {
    if (keys[m] == smallest) {
      team.min(&sh->first, static_cast<unsigned long long>(m));
      break;
    }
  }
  team.sync();
  const int64_t donor = labels[sh->first];
  const bool from_spare = state[donor] == kSpare;
  const double raise = key_to_double(smallest);
  team.sync();
  if (team.tid == 0) {
    for (int64_t c = 0; c < num_classes; ++c) {
      if (raising[c]) bias[c] += raise;
    }
    raising[donor] = 1;
  }
  team.sync();
  return from_spare ? 1 : 0;
}

// EM-Adapt for one image (scores [C, M], present [C]) by one team; see emseg/ops/estep.py em_adapt.
// 1. Sweeps as in DeepLab's adaptive-bias layer, but exact: biases start at 0 and only grow; each
//    present class in turn (background first) is raised to the smallest bias at which it wins its
//    required pixels, the k-th smallest of its per-pixel win thresholds (radix select).
// 2. Sweeps alone can crawl: classes at their quota trade boundary pixels back and forth in ever
//    smaller steps while the class with spare pixels is never reached. Once a sweep leaves the
//    shortfall no smaller, pixels are moved along chains instead: the lowest short class is raised
//    by the smallest amount that wins it one more pixel; if that pixel came from a class at or
//    under its quota, that class joins the set being raised, and so on until a pixel comes from
//    a class with spare pixels (a shortest augmenting chain, as in the Hungarian method).
// `keys` is scratch for M values, `state` for 2 * C; at most `max_iter` sweeps and raises.
template <typename scalar_t, typename Team>
EMSEG_HD void em_adapt_image(const scalar_t* scores, const bool* present, int64_t num_classes,
                             int64_t num_pixels, double fg_portion, double bg_portion,
                             int64_t max_iter, double* bias, uint64_t* keys, int64_t* state,
                             int64_t* labels, AdaptShared* sh, const Team& team) {
  int64_t* raising = state + num_classes;
  adapt_start(present, num_classes, num_pixels, fg_portion, bg_portion, bias, sh, team);
  int64_t iter = 0;
  int64_t deficit = label_and_deficit(scores, present, num_classes, num_pixels, fg_portion,
                                      bg_portion, bias, labels, state, sh, team);
  // Phase 1: sweeps while they shrink the shortfall.
  while (deficit > 0 && iter < max_iter) {
    ++iter;
    adapt_sweep(scores, present, num_classes, num_pixels, fg_portion, bg_portion, bias, keys, sh,
                team);
    const int64_t previous = deficit;
    deficit = label_and_deficit(scores, present, num_classes, num_pixels, fg_portion, bg_portion,
                                bias, labels, state, sh, team);
    if (deficit >= previous) break;
  }
  // Phase 2: augmenting chains, one pixel of shortfall at a time. A chain adds at most one class
  // per step, so a solvable image reaches a new lowest shortfall within a few chains; inputs whose
  // pixels cannot be split (tied scores) stop after kStallChains chains without a new lowest.
  int64_t present_count = 0;
  for (int64_t c = 0; c < num_classes; ++c) present_count += (c == 0 || present[c]) ? 1 : 0;
  const int64_t stall_limit = kStallChains * (present_count + 1);
  int64_t lowest = deficit, since_lowest = 0;
  while (deficit > 0 && iter < max_iter && since_lowest < stall_limit) {
    if (team.tid == 0) {  // the chain starts from the lowest short class
      bool first_short = true;
      for (int64_t c = 0; c < num_classes; ++c) {
        const bool is_short = (c == 0 || present[c]) && state[c] == kShort && first_short;
        raising[c] = is_short ? 1 : 0;
        first_short = first_short && !is_short;
      }
    }
    team.sync();
    bool from_spare = false;
    while (!from_spare && iter < max_iter) {
      ++iter;
      const int step = adapt_chain_step(scores, present, num_classes, num_pixels, bias, keys, state,
                                        labels, raising, sh, team);
      if (step < 0) return;
      from_spare = step > 0;
      deficit = label_and_deficit(scores, present, num_classes, num_pixels, fg_portion, bg_portion,
                                  bias, labels, state, sh, team);
      since_lowest = deficit < lowest ? 0 : since_lowest + 1;
      lowest = deficit < lowest ? deficit : lowest;
    }
  }
}

}  // namespace estep
}  // namespace emseg
