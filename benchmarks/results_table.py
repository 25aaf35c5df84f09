"""The README's results tables: every mode with the project defaults, several seeds, each run
beside the start it began from.

    python benchmarks/results_table.py [--out runs/table] [--seeds 0 1 2] [--jobs 2]
    python benchmarks/results_table.py --data-root ROOT --train-split train --val-split val [--name NAME]

Without ``--data-root``: the built-in synthetic set of each seed (a seed changes the data set, the
pretraining, the network's init, the batches and the strong subset), reported on its ``test``
split (the settings were chosen on ``val``). With ``--data-root``: that VOC-layout set (the ``cpu``
preset, its own pretraining on the training list's image labels), reported on ``--val-split``.

Each row is one ``python -m emseg.train`` process per seed with the defaults and ``--eval-crf``.
The pretrained start of each seed is made first (``python -m emseg.pretrain``), so the runs of a
seed share it as every row of the paper shares ImageNet VGG16; every run evaluates that start
before its first step (the "start" row, and the "- start" and "x start" columns). The "from scratch"
rows start from random weights (``--init scratch``). Finished runs (``summary.json``) are reused,
so an interrupted table continues where it stopped. Prints a markdown table and writes
``results-NAME.json``.
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
#: runs needed by the columns (full supervision for "x full")
FULL = "full"


def common_flags(args: argparse.Namespace, out: Path, seed: int) -> list[str]:
    if args.data_root:
        data = ["--data-root", args.data_root, "--train-split", args.train_split, "--val-split", args.val_split]
    else:
        data = ["--synthetic-dir", str(out / f"data-seed{seed}"), "--val-split", args.val_split]
    return [
        *data,
        "--seed",
        str(seed),
        "--no-progress",
        "--label-cache",
        str(out / "label-cache"),
        "--pretrain-cache",
        str(out / "pretrain-cache"),
    ]


def run(argv: list[str], log: Path, env: dict) -> int:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(f"FAILED ({proc.returncode}): {' '.join(argv[1:])}\n{(proc.stdout + proc.stderr)[-1500:]}", flush=True)
    return proc.returncode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="folder for the runs and results-NAME.json (default runs/table-NAME)")
    p.add_argument(
        "--data-root", default=None, help="a VOC-layout set (default: the built-in synthetic set of each seed)"
    )
    p.add_argument("--train-split", default="train_aug", help="with --data-root: the training list")
    p.add_argument(
        "--val-split",
        default=None,
        help="the split reported on (default: test on the built-in set, val with --data-root)",
    )
    p.add_argument("--name", default=None, help="the table's name (default: builtin, or the data root's folder name)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of every setting")
    p.add_argument("--only", nargs="*", default=None, help="run names to run (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (the cores are shared between them)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further flags for every run")
    args = p.parse_args()
    args.val_split = args.val_split or ("val" if args.data_root else "test")
    name = args.name or (Path(args.data_root).name if args.data_root else "builtin")
    out = Path(args.out or f"runs/table-{name}")
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.jobs > 1:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    settings = [s for s in SETTINGS if not args.only or s[1] in args.only]
    for seed in args.seeds:  # one pretrained start per seed, before its runs share it
        t0 = time.time()
        if run(
            [sys.executable, "-m", "emseg.pretrain", *common_flags(args, out, seed), *args.extra],
            out / f"pretrain-seed{seed}.log",
            env,
        ):
            sys.exit(1)
        print(f"== pretrained start, seed {seed}: {time.time() - t0:.0f} s", flush=True)

    def one(job):
        (label, run_name, flags), seed = job
        run_dir = out / f"{run_name}-seed{seed}"
        if (run_dir / "summary.json").exists():
            return
        t0 = time.time()
        # a run without summary.json did not finish: it is made again (--overwrite replaces what it left)
        argv = [
            sys.executable,
            "-m",
            "emseg.train",
            *common_flags(args, out, seed),
            "--output-dir",
            str(run_dir),
            "--overwrite",
            "--num-pictures",
            "4",
            "--eval-crf",
            *flags,
            *args.extra,
        ]
        if run(argv, out / f"{run_name}-seed{seed}.log", env) == 0:
            print(f"== {run_name} seed {seed}: {time.time() - t0:.0f} s", flush=True)

    jobs = [(s, seed) for s in settings for seed in args.seeds]  # row by row: the first rows complete first
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, jobs))

    results = {}
    for label, run_name, flags in settings:
        runs = []
        for seed in args.seeds:
            summary = out / f"{run_name}-seed{seed}" / "summary.json"
            if summary.exists():
                runs.append(json.loads(summary.read_text()) | {"seed": seed})
        results[run_name] = {"label": label, "flags": flags, "runs": runs}
    (out / f"results-{name}.json").write_text(json.dumps(results, indent=1))
    print(f"{name}: {args.val_split} split, seeds {' '.join(map(str, args.seeds))}")
    print(markdown(results, args.seeds))


def mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def markdown(results: dict, seeds: list[int]) -> str:
    """mIoU (mean ± std over seeds), with the CRF, its gain over the start it began from (mean, and
    the smallest over seeds), x start and x full (per seed, then mean). A scratch run's start is
    random weights: it has no start columns."""
    full = {r["seed"]: r["miou"] for r in results.get(FULL, {}).get("runs", [])}
    starts = {}
    for r in results.values():
        for x in r["runs"]:
            if "--init" not in r["flags"] and x.get("start_miou") is not None:
                starts.setdefault(x["seed"], x["start_miou"])
    lines = [
        "| setting | mIoU % | with CRF | - start (mean; min) | x start | x full | seeds |",
        "|---|---|---|---|---|---|---|",
        f"| the start (pretrained, before any step) | {mean_std(list(starts.values()))} | | | | "
        f"{ratio([(starts[s], full[s]) for s in starts if s in full])} | {len(starts)}/{len(seeds)} |",
    ]
    for r in results.values():
        runs = r["runs"]
        crf = [x["miou_crf"] for x in runs if x.get("miou_crf") is not None]
        gain = [x["miou"] - starts[x["seed"]] for x in runs if x["seed"] in starts]
        if "--init" in r["flags"] or not gain:
            gain_text, x_start = "", ""
        else:
            gain_text = f"{100 * statistics.mean(gain):+.1f}; {100 * min(gain):+.1f}"
            x_start = ratio([(x["miou"], starts[x["seed"]]) for x in runs if x["seed"] in starts])
        x_full = ratio([(x["miou"], full[x["seed"]]) for x in runs if x["seed"] in full])
        lines.append(
            f"| {r['label']} | {mean_std([x['miou'] for x in runs])} | {mean_std(crf)} | {gain_text} | "
            f"{x_start} | {x_full} | {len(runs)}/{len(seeds)} |"
        )
    return "\n".join(lines)


def ratio(pairs: list[tuple[float, float]]) -> str:
    values = [a / b for a, b in pairs if b > 0]
    return f"{statistics.mean(values):.2f}" if values else "n/a"


if __name__ == "__main__":
    main()
