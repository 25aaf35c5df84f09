"""User faults around training, evaluation and data: each ends in a clear error that names the flag
or the file, and nothing is silently accepted, restarted or lost."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import small_args

import emseg.train as train_mod
from emseg.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from emseg.cli import user_message
from emseg.config import config_from_args
from emseg.data import DataError, VOCSegmentation
from emseg.data.__main__ import main as data_main
from emseg.data.io import parse_voc_xml
from emseg.evaluate import main as evaluate_main
from emseg.metrics import MetricsLog
from emseg.optim import SpikeGuard
from emseg.train import main as train_main

pytestmark = pytest.mark.slow  # training runs: left out of the fast subset (-m "not slow")


@pytest.fixture(scope="module")
def synthetic(small_synthetic):
    return small_synthetic


def copy_of(root: Path, tmp_path: Path) -> Path:
    """A writable copy of a synthetic set (its files, not links)."""
    import shutil

    dst = tmp_path / "voc"
    shutil.copytree(root, dst)
    return dst


def run_cli(module: str, *argv, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, **(env or {})),
        cwd=cwd,
    )


# ---- 1, 12: flags that cannot work are refused up front ---------------------------------------


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--lr", "nan"], "--lr must be a finite number, got nan"),
        (["--lr", "inf"], "--lr must be a finite number, got inf"),
        (["--momentum", "nan"], "--momentum must be a finite number"),
        (["--fg-bias", "nan"], "--fg-bias must be a finite number"),
        (["--crf-bi-w", "inf"], "--crf-bi-w must be a finite number"),
        (["--device", "tpu"], "--device tpu: not a device"),
        (["--train-split", "no_such_split"], "--train-split no_such_split: the synthetic set has the splits"),
        (["--crop-size", "100000"], "--crop-size 100000 with --batch-size 8 needs"),
        (["--crf-pos-xy-std", "0", "--eval-crf"], "--crf-pos-xy-std must be > 0"),
        (["--crf-iterations", "-1"], "--crf-iterations must be >= 0"),
        (["--init", "nowhere.pth"], "--init nowhere.pth"),
        (["--context", "1"], "--context 1"),
        (["--context", "a,b"], "--context a,b"),
        (["--pretrain-iterations", "0"], "--pretrain-iterations"),
        (["--synthetic-pretrain", "0"], "--synthetic-pretrain 0"),
    ],
)
def test_flags_refused_before_training(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        config_from_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_output_dir_naming_a_file(tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(SystemExit):
        config_from_args(["--output-dir", str(f)])
    assert f"--output-dir {f}: exists and is not a folder" in capsys.readouterr().err


def test_unknown_split_of_a_voc_root(synthetic, capsys):
    with pytest.raises(SystemExit):
        config_from_args(["--data-root", str(synthetic), "--val-split", "nope"])
    assert "--val-split nope: no image list for split 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--device", "tpu"], "--device tpu: not a device"),
        (["--crf", "--crf-bi-xy-std", "-1"], "--crf-bi-xy-std must be > 0"),
        (["--crf-pos-w", "nan"], "--crf-pos-w must be a finite number"),
    ],
)
def test_evaluate_flags(trained, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate_main(["--checkpoint", str(trained), "--workers", "0", "--no-progress", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


# ---- 1: a loss that stops being finite stops the run, the last good checkpoint stays -----------


def loss_spoiled_at(monkeypatch, bad) -> None:
    """Multiply the training loss of the calls ``bad(n)`` (n counts from 1) by ``factor``."""
    calls = []
    real = train_mod.segmentation_loss

    def spoiled(scores, target, info):
        calls.append(1)
        loss = real(scores, target, info)
        factor = bad(len(calls))
        return loss * factor if factor is not None else loss

    monkeypatch.setattr(train_mod, "segmentation_loss", spoiled)


def test_a_non_finite_loss_rolls_back_with_a_lower_learning_rate(synthetic, tmp_path, monkeypatch):
    loss_spoiled_at(monkeypatch, lambda n: float("nan") if n == 5 else None)
    out = tmp_path / "run"
    summary = train_main(
        small_args(
            synthetic, out, **{"--mode": "full", "--iterations": 8, "--checkpoint-interval": 2, "--log-interval": 3}
        )
    )
    assert summary["rollbacks"] == 1 and summary["skipped_steps"] == 1
    assert (
        "it 5: the loss is not finite; rolled back to the last snapshot with the learning rate x0.5"
        in (out / "train.log").read_text()
    )
    ckpt = load_checkpoint(out / "checkpoint.pth")
    assert ckpt["iteration"] == 8 and ckpt["guard"]["lr_scale"] == 0.5
    assert all(torch.isfinite(p).all() for p in ckpt["model"].values())


def test_a_loss_that_stays_non_finite_stops_the_run(synthetic, tmp_path, monkeypatch):
    loss_spoiled_at(monkeypatch, lambda n: float("nan") if n >= 5 else None)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match="the loss is not finite at iteration 8 after 3 roll-back"):
        train_main(
            small_args(
                synthetic,
                out,
                **{"--mode": "full", "--iterations": 12, "--checkpoint-interval": 2, "--log-interval": 3},
            )
        )
    ckpt = load_checkpoint(out / "checkpoint.pth")
    assert ckpt["iteration"] == 6  # steps 5 and 6 were rolled back: the weights of iteration 4
    assert all(torch.isfinite(p).all() for p in ckpt["model"].values())


def test_a_planted_loss_spike_is_skipped(synthetic, tmp_path, monkeypatch):
    """A loss 1000 times the recent ones (at call 30, after the guard has 25 losses to compare
    with) skips its step: the weights after it are those before it."""
    seen = {}
    real_step = train_mod.train_step

    def watched(run, batch, it):
        if it in (30, 31):
            seen[it] = [p.detach().clone() for p in run.model.parameters()]
        return real_step(run, batch, it)

    monkeypatch.setattr(train_mod, "train_step", watched)
    loss_spoiled_at(monkeypatch, lambda n: 1000.0 if n == 30 else None)
    out = tmp_path / "run"
    summary = train_main(small_args(synthetic, out, **{"--mode": "full", "--iterations": 32}))
    assert summary["skipped_steps"] == 1 and summary["rollbacks"] == 0
    assert "it 30: loss spike" in (out / "train.log").read_text()
    assert all(torch.equal(a, b) for a, b in zip(seen[30], seen[31]))


def test_the_spike_test_needs_both_the_ratio_and_the_absolute_rise():
    """Against a median of 0.2 a spike is above 1.0 (5x); against a median near zero (a run that
    fits its targets exactly) a rise must also reach min_rise, so 0.01 after losses of 1e-5 is
    no spike, while a jump to 1.0 still is."""
    guard = SpikeGuard(factor=5.0, window=10, min_rise=0.05)
    for _ in range(10):
        guard.check(0.2, 1)
    assert not guard.is_spike(0.99) and guard.is_spike(1.01)
    assert guard.is_spike(float("inf")) and guard.is_spike(float("nan"))
    near_zero = SpikeGuard(factor=5.0, window=10, min_rise=0.05)
    for _ in range(10):
        near_zero.check(1e-5, 1)
    assert not near_zero.is_spike(0.01) and not near_zero.is_spike(0.05)
    assert near_zero.is_spike(0.06) and near_zero.is_spike(1.0)
    assert [near_zero.check(0.01, it) for it in range(2, 12)] == ["step"] * 10


def test_log_rows_count_the_clipped_steps_and_the_estep_foreground(synthetic, tmp_path, monkeypatch):
    """The window counters kept on the device reach the log: a clip norm no step stays under clips
    every step of the window, and the E-step's foreground share of the weak images is the one
    recomputed here from its targets."""
    shares = []
    real = train_mod.make_targets

    def counted(mode, scores, batch, *rest):
        target = real(mode, scores, batch, *rest)
        weak = target[~batch["strong"]]
        labelled = weak != 255
        shares.append(((labelled & (weak > 0)).sum().item(), labelled.sum().item()))
        return target

    monkeypatch.setattr(train_mod, "make_targets", counted)
    out = tmp_path / "run"
    train_main(
        small_args(
            synthetic, out, **{"--mode": "em-adapt", "--iterations": 4, "--log-interval": 4, "--clip-grad": 1e-9}
        )
    )
    fg, cells = map(sum, zip(*shares))
    text = (out / "train.log").read_text()
    assert f"E-step foreground {100 * fg / cells:.0f} %" in text and "clipped 4/4" in text


def test_diverging_parameters_are_never_saved(synthetic, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match="not finite"):
        train_main(
            small_args(
                synthetic, out, **{"--mode": "full", "--lr": 1e30, "--checkpoint-interval": 1, "--iterations": 10}
            )
        )
    if (out / "checkpoint.pth").exists():
        ckpt = load_checkpoint(out / "checkpoint.pth")
        assert all(torch.isfinite(p).all() for p in ckpt["model"].values())


# ---- 5, 10: broken annotations and lists ------------------------------------------------------


def edit_xml(root: Path, image_id: str, old: str, new: str) -> Path:
    path = root / "Annotations" / f"{image_id}.xml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def first_box_tag(root: Path, image_id: str, tag: str) -> str:
    text = (root / "Annotations" / f"{image_id}.xml").read_text()
    start = text.index(f"<{tag}>")
    return text[start : text.index(f"</{tag}>", start) + len(tag) + 3]


def test_nan_box_is_a_data_error(synthetic, tmp_path):
    root = copy_of(synthetic, tmp_path)
    path = edit_xml(root, "train_00003", first_box_tag(root, "train_00003", "xmin"), "<xmin>nan</xmin>")
    with pytest.raises(DataError, match=r"train_00003.xml: object 0 .*<xmin> is 'nan', not a finite number"):
        parse_voc_xml(path)
    assert data_main(["check", str(root), "--split", "train_aug"]) == 1
    for mode in ("bbox-rect", "bbox-em-fixed"):
        with pytest.raises(DataError, match="train_00003.xml"):
            train_main(
                small_args(
                    root,
                    tmp_path / mode,
                    **{"--data-root": root, "--mode": mode, "--train-split": "train_aug", "--val-split": "val"},
                )
            )


def test_box_outside_the_image_and_wrong_size(synthetic, tmp_path):
    root = copy_of(synthetic, tmp_path)
    for tag, value in (("xmin", 1000), ("xmax", 1100)):
        edit_xml(root, "train_00001", first_box_tag(root, "train_00001", tag), f"<{tag}>{value}</{tag}>")
    edit_xml(root, "train_00002", "<width>48</width>", "<width>64</width>")
    ds = VOCSegmentation(root, "train_aug", skip_corrupt=True)
    reasons = {image_id: reason for image_id, _, reason in ds.skipped}
    assert "entirely outside the 48x48 image" in reasons["train_00001"]
    assert "<size> says 64x48 but the image is 48x48" in reasons["train_00002"]
    assert len(ds) == 22


def test_empty_list(synthetic, tmp_path, capsys):
    root = copy_of(synthetic, tmp_path)
    (root / "ImageSets" / "Segmentation" / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty.txt: the image list is empty"):
        VOCSegmentation(root, "empty")
    proc = run_cli("emseg.data", "check", root, "--split", "empty")
    assert proc.returncode == 1 and "the image list is empty" in proc.stderr


# ---- 7: sizes that cannot work -----------------------------------------------------------------


def test_batch_larger_than_the_data_set(synthetic, tmp_path):
    with pytest.raises(ValueError, match="--batch-size 100000 is larger than the 24 training images"):
        train_main(small_args(synthetic, tmp_path / "run", **{"--batch-size": 100000, "--mode": "full"}))


# ---- 8, 9: resume is an exact continuation or refused -----------------------------------------


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    train_main(small_args(synthetic, out, **{"--mode": "em-fixed", "--stop-after": 2}))
    return out / "checkpoint.pth"


def test_resume_from_an_empty_dict(synthetic, tmp_path):
    torch.save({}, tmp_path / "e.pth")
    with pytest.raises(CheckpointError, match=r"e.pth: not an emseg training checkpoint \(no 'model'"):
        train_main(small_args(synthetic, tmp_path / "run", **{"--resume": tmp_path / "e.pth"}))


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"--mode": "em-adapt"}, "--mode 'em-fixed' -> 'em-adapt'"),
        ({"--seed": 3}, "--seed 0 -> 3"),
        ({"--iterations": 2}, "--iterations 4 -> 2"),
        ({"--fg-bias": 6.0}, "--fg-bias 4.0 -> 6.0"),
    ],
)
def test_resume_refuses_a_changed_run(synthetic, trained, tmp_path, extra, message):
    with pytest.raises(ValueError, match="resume with the same settings") as exc:
        train_main(small_args(synthetic, tmp_path / "run", **{"--mode": "em-fixed", "--resume": trained, **extra}))
    assert message in str(exc.value)


def test_resume_of_a_finished_run(synthetic, tmp_path):
    out = tmp_path / "run"
    train_main(small_args(synthetic, out, **{"--mode": "full", "--iterations": 2}))
    with pytest.raises(ValueError, match="at iteration 2 of 2: nothing is left to train"):
        train_main(
            small_args(synthetic, out, **{"--mode": "full", "--iterations": 2, "--resume": out / "checkpoint.pth"})
        )


# ---- 11: bad checkpoints and data errors reach the user as one line ---------------------------


def test_bad_checkpoints(trained, tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pth: the file is empty"):
        load_checkpoint(tmp_path / "empty.pth")
    data = trained.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth: not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.pth")
    ckpt = load_checkpoint(trained)
    del ckpt["args"]
    torch.save(ckpt, tmp_path / "no_args.pth")
    with pytest.raises(CheckpointError, match=r"no_args.pth: not an emseg training checkpoint \(no 'args'\)"):
        evaluate_main(["--checkpoint", str(tmp_path / "no_args.pth"), "--workers", "0", "--no-progress"])


def test_cli_errors_are_one_line(trained, synthetic, tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    proc = run_cli("emseg.evaluate", "--checkpoint", tmp_path / "empty.pth")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"python -m emseg.evaluate: error: {tmp_path / 'empty.pth'}: the file is empty, not a checkpoint "
        "(EMSEG_DEBUG=1 shows the traceback)"
    ]
    debug = run_cli("emseg.evaluate", "--checkpoint", tmp_path / "empty.pth", env={"EMSEG_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_data_loader_worker_errors_are_one_line(synthetic, tmp_path):
    """A broken image found by a DataLoader worker: one line naming the file, no traceback."""
    root = copy_of(synthetic, tmp_path)
    (root / "JPEGImages" / "train_00005.jpg").write_bytes(b"not a jpeg")
    argv = small_args(
        root,
        tmp_path / "run",
        **{
            "--data-root": root,
            "--mode": "full",
            "--workers": 1,
            "--iterations": 20,
            "--train-split": "train_aug",
            "--val-split": "val",
        },
    )
    proc = run_cli("emseg.train", *argv, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m emseg.train: error: ") and "train_00005.jpg" in last
    assert "Traceback" not in proc.stderr


def test_user_message_of_a_worker_error():
    worker = RuntimeError(
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1\nemseg.data.io.DataError: /d/a.jpg: cannot decode'
    )
    assert user_message(worker) == "/d/a.jpg: cannot decode"
    bug = RuntimeError("Caught IndexError in DataLoader worker process 0.\nOriginal Traceback ...\nIndexError: x")
    assert user_message(bug) is None and user_message(KeyError("k")) is None


# ---- 13, 14: metrics.csv and checkpoint files across kills and resumes ------------------------


def test_metrics_header_is_on_disk_before_the_first_row(tmp_path):
    killed = (
        "import os, sys; from pathlib import Path; from emseg.metrics import MetricsLog; "
        "log = MetricsLog(Path(sys.argv[1]), enabled=True); os._exit(9)"
    )  # killed before its first row
    assert subprocess.run([sys.executable, "-c", killed, str(tmp_path)], timeout=120).returncode == 9
    log = MetricsLog(tmp_path, enabled=True)
    log.write(iteration=1, loss=0.5, lr=0.1, seconds=1.0)
    log.close()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows == ["iteration,loss,lr,seconds,miou,miou_crf", "1,0.5,0.1,1.0,,"]


def test_metrics_of_a_resumed_run_equal_an_uninterrupted_one(synthetic, tmp_path):
    common = {"--mode": "em-fixed", "--iterations": 8, "--log-interval": 3, "--checkpoint-interval": 100}
    train_main(small_args(synthetic, tmp_path / "straight", **common))
    train_main(small_args(synthetic, tmp_path / "split", **common, **{"--stop-after": 4}))
    with open(tmp_path / "split" / "metrics.csv", "a") as f:  # a row the killed run wrote after its checkpoint
        f.write("6,9.9,0.01,1.0,,\n")
    train_main(
        small_args(synthetic, tmp_path / "split", **common, **{"--resume": tmp_path / "split" / "checkpoint.pth"})
    )

    def rows(run):
        with open(tmp_path / run / "metrics.csv", newline="") as f:
            return list(csv.DictReader(f))

    straight, split = rows("straight"), rows("split")
    assert [(r["iteration"], r["loss"], r["lr"]) for r in split] == [
        (r["iteration"], r["loss"], r["lr"]) for r in straight
    ]
    seconds = [float(r["seconds"]) for r in split if r["seconds"]]
    assert seconds == sorted(seconds) and len(seconds) == 3


def test_stale_temporary_checkpoints_are_removed(tmp_path):
    stale = tmp_path / "checkpoint.pth.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    save_checkpoint({"iteration": 1}, tmp_path / "checkpoint.pth")
    assert not stale.exists() and load_checkpoint(tmp_path / "checkpoint.pth")["iteration"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]
