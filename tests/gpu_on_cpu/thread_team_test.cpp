// Every team algorithm of csrc (radix_select, team_count_label, em_adapt_image) run by a ThreadTeam
// of 1 to 512 threads against the host's SerialTeam, which the CPU ops use: results must be
// identical (the team adds and minima are of integers, so no rounding can differ). Built plain and
// with -fsanitize=thread by .ci/gpu_on_cpu.sh.
//
//   thread_team_test [THREADS...]      # default 1 2 3 7 32 64 128 512; exit 1 on any mismatch
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "common/team.h"
#include "estep/estep.h"
#include "thread_team.h"

namespace {

using emseg::RadixSelectShared;
using emseg::SerialTeam;
using emseg::estep::AdaptShared;
using emseg::testing::run_team;
using emseg::testing::ThreadTeam;

int failures = 0;

void expect(bool ok, const char* what, int threads, int trial) {
  if (!ok) {
    std::printf("FAIL %s: %d threads, trial %d\n", what, threads, trial);
    ++failures;
  }
}

// Keys with many duplicates and both signs, as the E-step's thresholds have.
std::vector<uint64_t> random_keys(std::mt19937_64& rng, int64_t n) {
  std::uniform_int_distribution<int> pick(0, 3);
  std::normal_distribution<double> normal(0.0, 3.0);
  std::vector<uint64_t> keys(n);
  for (auto& k : keys) {
    const int kind = pick(rng);
    const double v = kind == 0 ? 1.5 : kind == 1 ? -std::floor(normal(rng)) : normal(rng);
    k = emseg::ordered_key(v);
  }
  return keys;
}

void test_radix_select(int threads, std::mt19937_64& rng) {
  for (int trial = 0; trial < 6; ++trial) {
    const int64_t n = std::uniform_int_distribution<int64_t>(1, 3000)(rng);
    const std::vector<uint64_t> keys = random_keys(rng, n);
    const std::vector<int64_t> ranks = {0, n - 1,
                                        std::uniform_int_distribution<int64_t>(0, n - 1)(rng)};
    std::vector<uint64_t> want;
    for (int64_t rank : ranks) {
      std::vector<uint64_t> sorted = keys;
      std::nth_element(sorted.begin(), sorted.begin() + rank, sorted.end());
      want.push_back(sorted[rank]);
    }
    // Back-to-back selections on the same scratch, with no synchronisation of the caller's in
    // between, as the radix select promises to allow.
    RadixSelectShared sh;
    std::vector<std::vector<uint64_t>> got(threads);
    run_team(threads, [&](const ThreadTeam& team) {
      for (int64_t rank : ranks) {
        got[team.tid].push_back(emseg::radix_select(keys.data(), n, rank, &sh, team));
      }
    });
    bool all = true;
    for (const auto& g : got) all = all && g == want;
    expect(all, "radix_select (every member returns the rank-th key)", threads, trial);
  }
}

void test_count_label(int threads, std::mt19937_64& rng) {
  for (int trial = 0; trial < 4; ++trial) {
    const int64_t n = std::uniform_int_distribution<int64_t>(1, 5000)(rng);
    std::vector<int64_t> labels(n);
    for (auto& l : labels) l = std::uniform_int_distribution<int64_t>(0, 4)(rng);
    std::vector<int64_t> want;
    for (int64_t label = 0; label < 5; ++label) {
      want.push_back(std::count(labels.begin(), labels.end(), label));
    }
    // Back-to-back counts on the same scratch, as label_and_deficit makes them.
    AdaptShared sh;
    std::vector<std::vector<int64_t>> got(threads);
    run_team(threads, [&](const ThreadTeam& team) {
      for (int64_t label = 0; label < 5; ++label) {
        got[team.tid].push_back(emseg::estep::team_count_label(labels.data(), n, label, &sh, team));
      }
    });
    bool all = true;
    for (const auto& g : got) all = all && g == want;
    expect(all, "team_count_label", threads, trial);
  }
}

struct AdaptResult {
  std::vector<double> bias;
  std::vector<int64_t> labels;
};

template <typename RunImage>
AdaptResult adapt(const std::vector<float>& scores, const std::vector<char>& present, int64_t C,
                  int64_t M, const RunImage& run_image) {
  AdaptResult r{std::vector<double>(C), std::vector<int64_t>(M)};
  std::vector<uint64_t> keys(M);
  std::vector<int64_t> state(2 * C);
  AdaptShared sh;
  run_image([&](const auto& team) {
    emseg::estep::em_adapt_image(scores.data(), reinterpret_cast<const bool*>(present.data()), C, M,
                                 0.2, 0.4, 100000, r.bias.data(), keys.data(), state.data(),
                                 r.labels.data(), &sh, team);
  });
  return r;
}

void test_em_adapt(int threads, std::mt19937_64& rng) {
  const int trials = threads >= 128 ? 3 : 8;
  for (int trial = 0; trial < trials; ++trial) {
    const int64_t C = std::uniform_int_distribution<int64_t>(1, 8)(rng);
    const int64_t M = std::uniform_int_distribution<int64_t>(1, trial == 0 ? 4 : 600)(rng);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    std::vector<float> scores(C * M);
    // Some images with tied scores: the solver's stall path.
    const bool ties = trial % 3 == 2;
    for (auto& s : scores) s = ties ? std::round(normal(rng)) : normal(rng);
    std::vector<char> present(C);
    for (auto& p : present) p = std::uniform_int_distribution<int>(0, 2)(rng) == 0;
    const AdaptResult serial = adapt(scores, present, C, M, [](const auto& f) { f(SerialTeam{}); });
    const AdaptResult team = adapt(scores, present, C, M, [threads](const auto& f) {
      run_team(threads, [&](const ThreadTeam& t) { f(t); });
    });
    expect(serial.bias == team.bias && serial.labels == team.labels,
           "em_adapt_image (biases and labels equal SerialTeam's)", threads, trial);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::atoi(argv[i]));
  if (sizes.empty()) sizes = {1, 2, 3, 7, 32, 64, 128, 512};
  for (int threads : sizes) {
    std::mt19937_64 rng(1000 + threads);
    test_radix_select(threads, rng);
    test_count_label(threads, rng);
    test_em_adapt(threads, rng);
    std::printf("ThreadTeam of %3d threads: radix_select, team_count_label, em_adapt_image %s\n",
                threads, failures ? "MISMATCH" : "identical to SerialTeam");
    std::fflush(stdout);
  }
  return failures ? 1 : 0;
}
