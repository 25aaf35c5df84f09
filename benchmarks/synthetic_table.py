"""The README's results table: every setting on the synthetic set, several seeds, mean +- std.

    python benchmarks/synthetic_table.py [--out runs/table] [--seeds 0 1 2] [--jobs 2] [--photo]

Each setting is one ``python -m emseg.train`` process with the project defaults (pretraining
included) and ``--eval-crf``, for every seed; a seed changes the data set, the pretraining, the
network's init, the batches and the strong subset. The pretrained start of each seed is made
first (``python -m emseg.pretrain``), so the runs of that seed share it as every row of the paper
shares ImageNet VGG16. The "from scratch" rows start from random weights (``--init scratch``).
Finished runs (``summary.json``) are reused, so an interrupted table continues where it stopped
(an unfinished run is made again from its start).
Prints a markdown table (mIoU, mIoU with the dense CRF, ratio to full supervision) and writes
``results-synthetic.json``. ``--photo`` runs full supervision, EM-Adapt and EM-Fixed on the
VOC-layout set of photo textures instead (``results-photo.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: (row label, run name, extra flags), in the order they run: the paper's rows first
SETTINGS = [
    ("Full supervision (all masks)", "full", ["--mode", "full"]),
    ("EM-Adapt, image labels", "em-adapt", ["--mode", "em-adapt"]),
    ("EM-Fixed, image labels", "em-fixed", ["--mode", "em-fixed"]),
    ("Bbox-Rect, boxes", "bbox-rect", ["--mode", "bbox-rect"]),
    ("Bbox-Seg, boxes", "bbox-seg", ["--mode", "bbox-seg"]),
    ("Bbox-EM-Fixed, boxes", "bbox-em-fixed", ["--mode", "bbox-em-fixed"]),
    ("EM-Fixed semi, 60 strong + image labels", "em-fixed-60", ["--mode", "em-fixed", "--strong", "60"]),
    ("EM-Adapt semi, 60 strong + image labels", "em-adapt-60", ["--mode", "em-adapt", "--strong", "60"]),
    ("Bbox-Seg semi, 60 strong + boxes", "bbox-seg-60", ["--mode", "bbox-seg", "--strong", "60"]),
    ("Bbox-EM-Fixed semi, 60 strong + boxes", "bbox-em-fixed-60", ["--mode", "bbox-em-fixed", "--strong", "60"]),
    ("Full supervision, from scratch", "full-scratch", ["--mode", "full", "--init", "scratch"]),
    ("EM-Adapt, from scratch", "em-adapt-scratch", ["--mode", "em-adapt", "--init", "scratch"]),
]
#: ``--photo``: the same defaults on the VOC-layout set of photo textures (``--data-root``: the cpu
#: preset, its training images' image labels for the pretraining)
PHOTO_SETTINGS = [
    ("Photo set: full supervision", "photo-full", ["--mode", "full"]),
    ("Photo set: EM-Adapt, image labels", "photo-em-adapt", ["--mode", "em-adapt"]),
    ("Photo set: EM-Fixed, image labels", "photo-em-fixed", ["--mode", "em-fixed"]),
]


def common_flags(out: Path, seed: int, photo: bool) -> list[str]:
    data = ["--data-root", str(out / "photo-voc"), "--train-split", "train_aug"] if photo else [
        "--synthetic-dir", str(out / f"data-seed{seed}")]
    return [*data, "--seed", str(seed), "--no-progress",
            "--label-cache", str(out / "label-cache"), "--pretrain-cache", str(out / "pretrain-cache")]


def run(argv: list[str], log: Path, env: dict) -> int:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(f"FAILED ({proc.returncode}): {' '.join(argv[1:])}\n{(proc.stdout + proc.stderr)[-1500:]}", flush=True)
    return proc.returncode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/table", help="folder for the runs and results.json")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of every setting")
    p.add_argument("--only", nargs="*", default=None, help="run names to run (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (the cores are shared between them)")
    p.add_argument("--photo", action="store_true", help="the photo-texture set's rows instead (python -m emseg.data photo)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further flags for every run")
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.jobs > 1:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    settings = [s for s in (PHOTO_SETTINGS if args.photo else SETTINGS) if not args.only or s[1] in args.only]
    if args.photo:
        from emseg.data.photo import make_photo_voc

        make_photo_voc(out / "photo-voc")
    kind = "photo" if args.photo else "synthetic"
    for seed in args.seeds:  # one pretrained start per seed, before its runs share it
        t0 = time.time()
        if run([sys.executable, "-m", "emseg.pretrain", *common_flags(out, seed, args.photo), *args.extra],
               out / f"pretrain-{kind}-seed{seed}.log", env):
            sys.exit(1)
        print(f"== pretrained start, seed {seed}: {time.time() - t0:.0f} s", flush=True)

    def one(job):
        (label, name, flags), seed = job
        run_dir = out / f"{name}-seed{seed}"
        if (run_dir / "summary.json").exists():
            return
        t0 = time.time()
        # a run without summary.json did not finish: it is made again (--overwrite replaces what it left)
        argv = [sys.executable, "-m", "emseg.train", *common_flags(out, seed, args.photo), "--output-dir", str(run_dir),
                "--overwrite", "--num-pictures", "4", "--eval-crf", *flags, *args.extra]
        if run(argv, out / f"{name}-seed{seed}.log", env) == 0:
            print(f"== {name} seed {seed}: {time.time() - t0:.0f} s", flush=True)

    jobs = [(s, seed) for s in settings for seed in args.seeds]  # row by row: the first rows complete first
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, jobs))

    results = {}
    for label, name, flags in settings:
        runs = []
        for seed in args.seeds:
            summary = out / f"{name}-seed{seed}" / "summary.json"
            if summary.exists():
                runs.append(json.loads(summary.read_text()) | {"seed": seed})
        results[name] = {"label": label, "flags": flags, "runs": runs}
    (out / f"results-{kind}.json").write_text(json.dumps(results, indent=1))
    print(markdown(results, args.seeds, "photo-full" if args.photo else "full"))


def mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def markdown(results: dict, seeds: list[int], full_name: str = "full") -> str:
    full = {r["seed"]: r["miou"] for r in results.get(full_name, {}).get("runs", [])}
    lines = ["| setting | mIoU % | mIoU % with CRF | x full (per seed, then mean) | seeds |", "|---|---|---|---|---|"]
    for r in results.values():
        runs = r["runs"]
        ratios = [x["miou"] / full[x["seed"]] for x in runs if x["seed"] in full]
        ratio = f"{statistics.mean(ratios):.2f}" if ratios else "n/a"
        crf = [x["miou_crf"] for x in runs if x.get("miou_crf") is not None]
        lines.append(f"| {r['label']} | {mean_std([x['miou'] for x in runs])} | {mean_std(crf)} | {ratio} | "
                     f"{len(runs)}/{len(seeds)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
