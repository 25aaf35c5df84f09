"""emseg's dense CRF against pydensecrf2, interleaved: one pydensecrf2 call after each emseg call,
so both see the same machine (on a shared or virtual machine the speed drifts from minute to
minute, and pytest-benchmark times one implementation's rounds after the other's). The workloads
and the label check are bench_crf.py's.

    python benchmarks/crf_speedup.py [--rounds 8] [--threads 2] [--scales 1 2 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import bench_crf
import numpy as np
import torch


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="timed calls of each (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for emseg")
    parser.add_argument(
        "--scales", type=int, nargs="+", default=bench_crf.SCALES, help="pixel counts as multiples of 500x375"
    )
    args = parser.parse_args(argv)
    if bench_crf.dcrf is None:
        raise SystemExit("pydensecrf2 is not installed (pip install pydensecrf2)")
    torch.set_num_threads(args.threads)
    for scale in args.scales:
        h, w, u, im = bench_crf.emseg_inputs("cpu", scale)
        image, unary = bench_crf.inputs(h, w)
        ratios, ours, theirs = [], [], []
        for r in range(args.rounds + 1):
            start = time.perf_counter()
            q = bench_crf.emseg_crf(u, im)[0].reshape(bench_crf.LABELS, -1).numpy()
            mid = time.perf_counter()
            reference = bench_crf.run_pydensecrf(image, unary)
            end = time.perf_counter()
            if r > 0:  # the first round warms up
                ours.append(mid - start)
                theirs.append(end - mid)
                ratios.append((end - mid) / (mid - start))
        agreement = float((q.argmax(0) == reference.argmax(0)).mean())
        print(
            f"{w}x{h}: emseg {statistics.median(ours):.3f} s ({args.threads} threads), "
            f"pydensecrf2 {statistics.median(theirs):.3f} s, median per-round speed-up "
            f"{statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}), "
            f"argmax agreement {agreement:.4f}, max |dQ| {np.abs(q - reference).max():.1e}"
        )


if __name__ == "__main__":
    main()
