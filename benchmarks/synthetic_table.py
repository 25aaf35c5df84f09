"""The README's results table, measured on the synthetic set with fixed seeds.

    python benchmarks/synthetic_table.py [--out runs/table] [--iterations 1200] [--quick]

Runs every setting in the shape of the paper's tables (full supervision, each weak mode, and
semi-supervised with a few strong-subset sizes, plus "strong only" on the same subsets), each as
its own ``python -m emseg.train`` process with the same seed, data and schedule, and prints a
markdown table of validation mIoU (with the dense CRF too when emseg.crf is available). Finished
runs (``summary.json`` present) are reused, so an interrupted table continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# (label, mode, strong subset size or None, strong-only baseline)
SETTINGS = [  # in the order they run: the most telling first
    ("Full supervision (all masks)", "full", None, False),
    ("Bbox-Rect, boxes", "bbox-rect", None, False),
    ("EM-Adapt, image labels", "em-adapt", None, False),
    ("EM-Fixed, image labels", "em-fixed", None, False),
    ("Bbox-EM-Fixed, boxes", "bbox-em-fixed", None, False),
    ("Bbox-Seg, boxes", "bbox-seg", None, False),
    ("Strong only, {n} masks", "full", 20, True),
    ("EM-Fixed semi, {n} strong + image labels", "em-fixed", 20, False),
    ("Bbox-EM-Fixed semi, {n} strong + boxes", "bbox-em-fixed", 20, False),
    ("Strong only, {n} masks", "full", 60, True),
    ("EM-Fixed semi, {n} strong + image labels", "em-fixed", 60, False),
    ("Bbox-EM-Fixed semi, {n} strong + boxes", "bbox-em-fixed", 60, False),
    ("Bbox-Rect semi, {n} strong + boxes", "bbox-rect", 60, False),
    ("EM-Adapt semi, {n} strong + image labels", "em-adapt", 60, False),
]


def run_name(mode: str, strong: int | None, only: bool) -> str:
    return f"{'strong-only' if only else mode}{'' if strong is None else f'-{strong}'}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/table", help="folder for the runs and results.json")
    p.add_argument("--data", default="data/synthetic-voc", help="synthetic data folder (shared by all runs)")
    p.add_argument("--iterations", type=int, default=None, help="iterations per run (default: the synthetic preset's)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run")
    p.add_argument("--only", nargs="*", default=None, help="run names to run (default: all)")
    p.add_argument("--crf", action="store_true", help="also evaluate with the dense CRF")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further flags for every python -m emseg.train run")
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for label, mode, strong, only in SETTINGS:
        name = run_name(mode, strong, only)
        if args.only and name not in args.only:
            continue
        run_dir = out / name
        summary_file = run_dir / "summary.json"
        if not summary_file.exists():
            argv = [sys.executable, "-m", "emseg.train", "--synthetic-dir", args.data, "--output-dir", str(run_dir),
                    "--seed", str(args.seed), "--mode", mode, "--no-progress", "--num-pictures", "4",
                    "--label-cache", str(out / "label-cache")]
            if args.iterations:
                argv += ["--iterations", str(args.iterations)]
            if only:
                ids = strong_subset(args.data, strong, args.seed)
                lst = out / f"strong-{strong}.txt"
                lst.write_text("\n".join(sorted(ids)) + "\n")
                argv += ["--train-split", str(lst.resolve())]
            elif strong:
                argv += ["--strong", str(strong)]
            if args.crf:
                argv += ["--eval-crf"]
            argv += args.extra
            t0 = time.time()
            print(f"== {name}: {' '.join(argv[1:])}", flush=True)
            proc = subprocess.run(argv, capture_output=True, text=True)
            (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
            if proc.returncode != 0:
                print(proc.stdout[-2000:] + proc.stderr[-2000:])
                results[name] = {"label": label.format(n=strong), "failed": proc.returncode}
                continue
            print(f"   done in {time.time() - t0:.0f} s", flush=True)
        s = json.loads(summary_file.read_text())
        if args.crf and s.get("miou_crf") is None:
            # a run finished without the CRF: evaluate its checkpoint with it now
            proc = subprocess.run([sys.executable, "-m", "emseg.evaluate", "--checkpoint", s["checkpoint"],
                                   "--crf", "--no-progress", "--workers", "0"], capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stdout[-2000:] + proc.stderr[-2000:])
            else:
                s["miou_crf"] = float(proc.stdout.split("with dense CRF:")[1].split("mean IoU")[1].split()[0]) / 100
                summary_file.write_text(json.dumps(s, indent=1))
        results[name] = {"label": label.format(n=strong), "miou": s["miou"], "miou_crf": s.get("miou_crf"),
                         "train_seconds": s.get("train_seconds")}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(markdown(results))


def strong_subset(data: str, count: int, seed: int) -> set[str]:
    """The same subset ``--strong count --seed seed`` picks (emseg.data.select_strong)."""
    from emseg.data import VOCSegmentation, make_synthetic_voc, select_strong

    make_synthetic_voc(data, 400, 100, 64, seed=seed, progress=False)  # the preset's set

    ds = VOCSegmentation(data, "train_aug", strong_ids=())
    return select_strong(ds.ids, count=count, seed=seed)


def markdown(results: dict) -> str:
    lines = ["| setting | mIoU % | mIoU % with CRF |", "|---|---|---|"]
    for name, r in results.items():
        if "miou" in r:
            crf = f"{100 * r['miou_crf']:.1f}" if r.get("miou_crf") is not None else "n/a"
            lines.append(f"| {r['label']} | {100 * r['miou']:.1f} | {crf} |")
        else:
            lines.append(f"| {r['label']} | {r.get('skipped') or 'failed'} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
