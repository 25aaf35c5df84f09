"""Nothing a user owns is overwritten, nothing stale is served, bad input is named: one test (or a
few) per defect of the second reliability review, numbered as there. The fault-injection runs
(signals, kill -9, concurrent writers, a full disk) are in test_faults.py."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import small_args

import emseg.checkpoint as checkpoint_mod
import emseg.train as train_mod
from emseg import pretrain as P
from emseg.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from emseg.cli import user_message
from emseg.crf import CRFParams
from emseg.data import CocoBoxes, DataError, MissingDataError, VOCSegmentation, collate, make_synthetic_voc
from emseg.data.fixed_labels import fixed_label_root
from emseg.data.image_labels import ImageLabelSet
from emseg.data.io import read_id_list, read_image, read_mask_png
from emseg.data.voc import read_class_names
from emseg.estep import EStepConfig, get_mode
from emseg.evaluate import evaluate
from emseg.evaluate import main as evaluate_main
from emseg.metrics import ConfusionMatrix
from emseg.models import DeepLabLargeFOV, build_model
from emseg.models.deeplab import load_vgg16_weights
from emseg.predict import main as predict_main
from emseg.train import main as train_main

pytestmark = pytest.mark.slow  # training runs: left out of the fast subset (-m "not slow")


TINY = P.PretrainConfig(width=4, size=48, iterations=3, batch_size=4, context=(0, 1))
UNWRITABLE = "/sys/emseg-cannot-write-here"  # nobody, root included, can make a folder in /sys


@pytest.fixture(scope="module")
def trained(small_synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "run"
    train_main(small_args(small_synthetic, out, **{"--mode": "full", "--iterations": 2}))
    return out / "checkpoint.pth"


def copy_of(root: Path, dst: Path) -> Path:
    shutil.copytree(root, dst)
    return dst


def jpg_bytes(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


# ---- 1, 2, 19: predict never overwrites an input, never merges two, skips what it cannot read


def test_1_predict_refuses_to_write_over_its_inputs(trained, small_synthetic, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(small_synthetic / "JPEGImages" / "train_00000.jpg", photos / "photo.jpg")
    cv2.imwrite(str(photos / "shot.png"), np.full((40, 40, 3), 90, np.uint8))
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    with pytest.raises(SystemExit) as exc:
        predict_main(["--checkpoint", str(trained), "--input", str(photos), "--output", str(photos)])
    assert exc.value.code == 2 and "is the --input folder" in capsys.readouterr().err
    # one image as input, its own folder as output: its mask would replace shot.png
    with pytest.raises(ValueError, match=r"would replace the input .*shot.png"):
        predict_main(["--checkpoint", str(trained), "--input", str(photos / "shot.png"), "--output", str(photos)])
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_2_predict_refuses_two_inputs_with_one_output(trained, small_synthetic, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(small_synthetic / "JPEGImages" / "train_00000.jpg", photos / "a.jpg")
    cv2.imwrite(str(photos / "a.png"), np.full((40, 40, 3), 90, np.uint8))
    with pytest.raises(ValueError, match="a.jpg and a.png would both be written as a.png"):
        predict_main(["--checkpoint", str(trained), "--input", str(photos), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_19_predict_skips_what_it_cannot_read_and_writes_the_rest(trained, small_synthetic, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "dir.png").mkdir()  # a folder named like an image
    (photos / "bad.png").write_bytes(b"not an image")
    shutil.copy(small_synthetic / "JPEGImages" / "train_00000.jpg", photos / "good.jpg")
    with pytest.raises(DataError, match=r"bad.png: not a decodable image .*1 of 2 images could not be read"):
        predict_main(["--checkpoint", str(trained), "--input", str(photos), "--output", str(tmp_path / "out")])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png", "good_overlay.jpg"]


# ---- 3: a stop signal during training leaves a resumable checkpoint (real signals: test_faults)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_3_stop_signal_checkpoints_the_current_iteration(small_synthetic, tmp_path, monkeypatch, sig):
    from emseg.stop import Stopped

    real, calls = train_mod.train_step, []
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def step_then_signal(run, batch, it):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), sig)  # arrives inside the iteration: it is finished first
        return real(run, batch, it)

    monkeypatch.setattr(train_mod, "train_step", step_then_signal)
    out = tmp_path / "run"
    with pytest.raises(Stopped) as exc:
        train_main(
            small_args(small_synthetic, out, **{"--mode": "full", "--iterations": 8, "--checkpoint-interval": 5})
        )
    assert exc.value.exit_status == 128 + sig and len(calls) == 3
    assert load_checkpoint(out / "checkpoint.pth")["iteration"] == 3
    message = str(exc.value)
    assert (
        f"{signal.Signals(sig).name} at iteration 3 of 8" in message and f"--resume {out / 'checkpoint.pth'}" in message
    )
    assert message in (out / "train.log").read_text()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # given back


def test_3_the_resume_command_repeats_the_flags(monkeypatch):
    from emseg.outputs import resume_command

    monkeypatch.setattr(
        "sys.argv",
        ["/x/emseg/train.py", "--mode", "full", "--resume", "old.pth", "--overwrite", "--output-dir", "runs/a b"],
    )
    assert resume_command(Path("runs/a b/checkpoint.pth")) == (
        "python -m emseg.train --mode full --output-dir 'runs/a b' --resume 'runs/a b/checkpoint.pth'"
    )
    assert resume_command(Path("c.pth"), world_size=4).startswith("torchrun --nproc_per_node 4 -m emseg.train --mode")


# ---- 4: one run per output folder


def test_4_a_used_output_dir_is_refused_and_links_are_not_followed(small_synthetic, tmp_path):
    out = tmp_path / "run"
    args = small_args(small_synthetic, out, **{"--mode": "full", "--iterations": 2})
    train_main(args)
    before = (out / "checkpoint.pth").read_bytes(), (out / "metrics.csv").read_text()
    with pytest.raises(
        ValueError, match=r"holds a finished run \(summary.json\): continue it with --resume .*--overwrite"
    ):
        train_main(args)
    assert ((out / "checkpoint.pth").read_bytes(), (out / "metrics.csv").read_text()) == before
    victim = tmp_path / "victim.csv"
    victim.write_text("mine\n")
    (out / "metrics.csv").unlink()
    (out / "metrics.csv").symlink_to(victim)
    train_main(args + ["--overwrite"])
    assert victim.read_text() == "mine\n" and not (out / "metrics.csv").is_symlink()
    rows = [r.split(",")[0] for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert rows == ["0", "1", "2", "2"]  # the start, two loss rows and the final mIoU row, not appended to the old ones


def test_4_a_folder_with_only_logs_is_taken_over(small_synthetic, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("iteration,loss,lr,seconds,miou,miou_crf\n1,9.9,0.1,1,,\n")
    (out / "train.log").write_text("a run stopped before its first checkpoint\n")
    (out / "notes.txt").write_text("the user's")
    train_main(small_args(small_synthetic, out, **{"--mode": "full", "--iterations": 2}))
    assert "9.9" not in (out / "metrics.csv").read_text()
    assert "stopped before its first" not in (out / "train.log").read_text()
    assert (out / "notes.txt").read_text() == "the user's"


def test_4_the_default_output_dir_numbers_itself(small_synthetic, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [a for a in small_args(small_synthetic, "unused", **{"--mode": "full", "--iterations": 2})]
    i = args.index("--output-dir")
    del args[i : i + 2]
    first, second = train_main(args), train_main(args)
    assert Path(first["checkpoint"]).parent == Path("runs/demo")
    assert Path(second["checkpoint"]).parent == Path("runs/demo-2")
    assert "runs/demo holds a run; this one writes to runs/demo-2" in capsys.readouterr().out
    # --resume without --output-dir continues in the checkpoint's folder
    train_main(args + ["--iterations", "3", "--stop-after", "1", "--output-dir", "runs/x"])
    train_main(args + ["--iterations", "3", "--resume", "runs/x/checkpoint.pth"])
    assert load_checkpoint("runs/x/checkpoint.pth")["iteration"] == 3 and not Path("runs/demo-3").exists()


# ---- 5: the fixed-label cache follows the files' bytes


def test_5_an_edited_box_gives_new_fixed_labels(small_synthetic, tmp_path):
    root = copy_of(small_synthetic, tmp_path / "voc")
    kwargs = dict(
        estep=EStepConfig(),
        crf_params=CRFParams(),
        crf=None,
        cache_dir=tmp_path / "labels",
        mean=(0.5, 0.5, 0.5),
        std=(0.2, 0.2, 0.2),
        progress=False,
    )
    first = fixed_label_root(get_mode("bbox-rect"), root, "train_aug", set(), **kwargs)
    xml = root / "Annotations" / "train_00000.xml"
    text = xml.read_text()
    start = text.index("<xmax>") + len("<xmax>")
    end = text.index("</xmax>")
    xml.write_text(text[:start] + str(int(text[start:end]) - 2) + text[end:])  # the first box shrinks
    second = fixed_label_root(get_mode("bbox-rect"), root, "train_aug", set(), **kwargs)
    assert first != second
    a, b = (read_mask_png(r / "SegmentationClassAug" / "train_00000.png") for r in (first, second))
    assert (a != b).any()


# ---- 6, 22: id lists and class lists


def test_6_ids_are_taken_whole(small_synthetic, tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("img.1\nimg.2\nmy img\nimg#3\n# a comment\n/JPEGImages/x.1.jpg /SegmentationClassAug/x.1.png\n")
    assert read_id_list(lst) == ["img.1", "img.2", "my img", "img#3", "x.1"]
    root = copy_of(small_synthetic, tmp_path / "voc")
    shutil.copy(root / "JPEGImages" / "train_00000.jpg", root / "JPEGImages" / "img.jpg")
    (root / "ImageSets" / "Segmentation" / "dots.txt").write_text("img.1\n")
    with pytest.raises(MissingDataError, match=r"img.1.jpg: image not found"):  # not img.jpg
        VOCSegmentation(root, "dots")


def test_22_text_lists_are_utf8_with_or_without_a_bom(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_bytes("\ufefftrain_00000\ntrain_00001\n".encode("utf-8"))
    assert read_id_list(lst) == ["train_00000", "train_00001"]
    (tmp_path / "classes.txt").write_bytes("background\nc\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"classes.txt: not UTF-8 text"):
        read_class_names(tmp_path)


def test_9_class_names_differing_in_case_are_refused(tmp_path):
    (tmp_path / "classes.txt").write_text("background\nring\nRing\n")
    with pytest.raises(DataError, match=r"classes.txt: class name 'Ring' and 'ring' differ only in case"):
        read_class_names(tmp_path)


# ---- 7: evaluate's classes


def test_7_evaluate_refuses_a_checkpoint_of_other_classes(trained, small_synthetic, tmp_path):
    root = copy_of(small_synthetic, tmp_path / "voc")
    (root / "classes.txt").write_text("background\ndisc\nsquare\ntriangle\nstar\nring\ncross\nextra\n")
    with pytest.raises(ValueError, match=r"predicts 7 classes .* but .* has 8"):
        evaluate_main(["--checkpoint", str(trained), "--data-root", str(root), "--workers", "0", "--no-progress"])


def test_7_a_prediction_outside_the_classes_is_refused():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="class 3, outside the 3 classes"):
        cm.update(torch.tensor([2, 1]), torch.tensor([2, 3]))  # 3 * 2 + 3 would be booked as (3, 0)
    with pytest.raises(ValueError, match="class 7, outside"):
        cm.update(torch.tensor([2]), torch.tensor([7]))
    assert cm.mat.sum() == 0


# ---- 8, 17, 10, 13, 11: the pretrained start and its cache


@pytest.fixture(scope="module")
def pre_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre") / "set"
    make_synthetic_voc(root, num_train=4, num_val=2, num_pretrain=8, image_size=48, seed=3, progress=False)
    return root


def test_8_a_start_without_the_networks_tensors_is_refused(tmp_path, small_synthetic):
    torch.save({"model": {}}, tmp_path / "empty.pth")
    with pytest.raises(ValueError, match=r"empty.pth: the pretrained network does not fit .*tensors missing"):
        P.load_pretrained(build_model("small", 7, width=4, context=(0, 1)), tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="does not fit"):
        train_main(small_args(small_synthetic, tmp_path / "run", **{"--init": tmp_path / "empty.pth"}))


def test_17_a_broken_or_wrong_cache_entry_is_made_again(pre_root, tmp_path, emseg_log):
    caplog = emseg_log
    cache = tmp_path / "cache"
    path = P.pretrained_start(pre_root, "pretrain", TINY, cache, torch.device("cpu")).path
    good = load_checkpoint(path)
    path.write_bytes(b"garbage")
    assert P.pretrained_start(pre_root, "pretrain", TINY, cache, torch.device("cpu")).path == path
    assert "not a readable checkpoint" in caplog.text and "it is made again" in caplog.text
    assert torch.equal(load_checkpoint(path)["model"]["classifier.weight"], good["model"]["classifier.weight"])
    torch.save({"model": {}, "seconds": 1.0, "config": good["config"]}, path)  # loadable, but no network
    caplog.clear()
    P.pretrained_start(pre_root, "pretrain", TINY, cache, torch.device("cpu")).path
    assert "does not fit" in caplog.text and "cached (it took" not in caplog.text
    assert set(load_checkpoint(path)["model"]) == set(good["model"])


def test_10_the_data_digest_separates_the_files(pre_root, tmp_path):
    root = copy_of(pre_root, tmp_path / "set")
    x, y = (root / "JPEGImages" / f"pretrain_0000{k}.jpg" for k in (0, 1))
    a, b, c = x.read_bytes(), y.read_bytes(), jpg_bytes(np.zeros((8, 8, 3), np.uint8))
    # (A + C, B) against (A, C + B): every file still reads (bytes after an image's end are fine)
    x.write_bytes(a + c), y.write_bytes(b)
    first = ImageLabelSet(root, "pretrain", 48, (0, 0, 0))
    x.write_bytes(a), y.write_bytes(c + b)
    second = ImageLabelSet(root, "pretrain", 48, (0, 0, 0))
    assert (first.labels == second.labels).all() and first.digest != second.digest


def test_13_pretraining_reads_every_layout_the_loader_reads(pre_root, tmp_path):
    root = copy_of(pre_root, tmp_path / "set")
    split = "train_aug"
    want = ImageLabelSet(root, split, 48, (0, 0, 0))
    ids = want.ids
    jpeg = root / "JPEGImages"
    cv2.imwrite(str(jpeg / f"{ids[0]}.png"), cv2.imread(str(jpeg / f"{ids[0]}.jpg")))
    (jpeg / f"{ids[0]}.jpg").unlink()
    (jpeg / f"{ids[1]}.jpg").rename(jpeg / f"{ids[1]}.jpeg")
    (root / "img").mkdir()
    (jpeg / f"{ids[2]}.jpg").rename(root / "img" / f"{ids[2]}.jpg")
    shutil.rmtree(root / "Annotations")  # the masks' classes are the image labels
    got = ImageLabelSet(root, split, 48, (0, 0, 0))
    assert got.ids == ids and (got.labels == want.labels).all()
    assert got.images.shape == (len(ids), 48, 48, 3)


def test_cache_hit_decodes_no_image(pre_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    P.pretrained_start(pre_root, "pretrain", TINY, cache, torch.device("cpu")).path
    import emseg.data.image_labels as il

    monkeypatch.setattr(il, "read_image", lambda path: pytest.fail(f"decoded {path} on a cache hit"))
    P.pretrained_start(pre_root, "pretrain", TINY, cache, torch.device("cpu")).path


@pytest.mark.parametrize("flag", ["--pretrain-cache", "--synthetic-dir", "--output-dir"])
def test_11_folders_that_cannot_be_written_are_refused_up_front(tmp_path, flag, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    base = {
        "--init": "pretrain",
        "--synthetic-pretrain": 8,
        "--pretrain-iterations": 2,
        "--output-dir": tmp_path / "run",
        "--synthetic-dir": tmp_path / "syn",
    }
    monkeypatch.setattr(P, "pretrain", lambda *a, **k: pytest.fail("pretrained before the check"))
    for bad, message in (
        (a_file, "is a file"),
        (a_file / "sub", "is a file, so no folder can be made"),
        (UNWRITABLE, "cannot write there"),
    ):
        with pytest.raises((ValueError, SystemExit)) as exc:
            train_main(small_args(tmp_path / "syn", tmp_path / "run", **{**base, flag: bad}))
        if exc.type is ValueError:
            assert f"{flag} {bad}: " in str(exc.value) and message in str(exc.value)
        assert not (tmp_path / "syn").exists()  # no data was written before


def test_11_predict_output_that_is_a_file(trained, small_synthetic, tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(ValueError, match=r"--output .*out: is a file, expected a folder"):
        predict_main(
            [
                "--checkpoint",
                str(trained),
                "--input",
                str(small_synthetic / "JPEGImages" / "train_00000.jpg"),
                "--output",
                str(tmp_path / "out"),
            ]
        )


def test_11_an_unwritable_cache_is_found_before_pretraining(pre_root, monkeypatch):
    monkeypatch.setattr(P, "pretrain", lambda *a, **k: pytest.fail("pretrained before the check"))
    with pytest.raises(ValueError, match=f"--pretrain-cache {UNWRITABLE}: cannot write there"):
        P.pretrained_start(pre_root, "pretrain", TINY, UNWRITABLE, torch.device("cpu")).path


# ---- 12: writers of one file do not remove each other's temporary files


def test_12_a_live_writers_temporary_file_is_kept(tmp_path):
    import fcntl

    live, dead = tmp_path / "checkpoint.pth.live.tmp", tmp_path / "checkpoint.pth.dead.tmp"
    live.write_bytes(b"being written"), dead.write_bytes(b"left by a killed writer")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a writer holds while it writes
        save_checkpoint({"iteration": 1}, tmp_path / "checkpoint.pth")
        assert live.exists() and not dead.exists()
    assert load_checkpoint(tmp_path / "checkpoint.pth")["iteration"] == 1


def test_12_a_second_run_into_a_locked_folder_is_refused(small_synthetic, tmp_path):
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".emseg-run.lock", "w") as lock:  # what another run writing there holds
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242\n")
        lock.flush()
        with pytest.raises(ValueError, match=rf"--output-dir {out}: another run \(pid 4242\) is writing there"):
            train_main(small_args(small_synthetic, out, **{"--mode": "full", "--iterations": 2}))


# ---- 14: JPEG end and misnamed files


def test_14_jpeg_end_and_misnamed_files(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    data = jpg_bytes(image)
    (tmp_path / "motion.jpg").write_bytes(data + bytes(4096))  # a "motion photo": video after the image
    assert read_image(tmp_path / "motion.jpg").shape == (32, 40, 3)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")
    png = cv2.imencode(".png", image)[1].tobytes()
    (tmp_path / "png.jpg").write_bytes(png)
    assert (read_image(tmp_path / "png.jpg") == image[:, :, ::-1]).all()
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.jpg: empty file \(0 bytes\)"):
        read_image(tmp_path / "empty.jpg")


def test_14_a_thumbnails_end_marker_does_not_hide_a_truncated_image(tmp_path):
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    thumb = jpg_bytes(image[::8, ::8])
    app1 = b"Exif\x00\x00" + thumb  # a thumbnail inside an APP1 segment, with its own FFD9
    data = jpg_bytes(image)
    full = data[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + data[2:]
    (tmp_path / "t.jpg").write_bytes(full[: len(full) - 200])
    with pytest.raises(DataError, match="truncated JPEG"):
        read_image(tmp_path / "t.jpg")
    (tmp_path / "t.jpg").write_bytes(full)
    assert read_image(tmp_path / "t.jpg").shape == (64, 64, 3)


# ---- 15: an interrupted data set write blocks nothing


def test_15_an_interrupted_synthetic_write_is_redone(tmp_path, monkeypatch):
    import emseg.data.synthetic as syn

    real, calls = syn.render_synthetic_image, []

    def broken(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(syn, "render_synthetic_image", broken)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_voc(tmp_path / "syn", 8, 2, 32, progress=False)
    assert not (tmp_path / "syn").exists()
    monkeypatch.setattr(syn, "render_synthetic_image", real)
    make_synthetic_voc(tmp_path / "syn", 8, 2, 32, progress=False)
    make_synthetic_voc(tmp_path / "ref", 8, 2, 32, progress=False)
    files = sorted(p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "syn") for p in (tmp_path / "syn").rglob("*") if p.is_file())
    assert all((tmp_path / "syn" / f).read_bytes() == (tmp_path / "ref" / f).read_bytes() for f in files)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".syn")) == [".syn.lock"]


# ---- 16: +inf unaries in pydensecrf's fused path


def test_16_pydensecrf_takes_an_infinite_unary(monkeypatch):
    import emseg.pydensecrf.densecrf as edcrf
    import emseg.pydensecrf.utils as eutils

    rng = np.random.default_rng(0)
    h, w, labels = 20, 24, 3
    p = np.ascontiguousarray(rng.dirichlet(np.ones(labels), size=h * w).T, np.float32)
    p[0, :50] = 0.0  # zero probabilities: -log 0 = +inf without clipping
    with np.errstate(divide="ignore"):
        unary = eutils.unary_from_softmax(p, clip=None)
    assert np.isposinf(unary).any()
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)

    def run():
        d = edcrf.DenseCRF2D(w, h, labels)
        d.setUnaryEnergy(unary)
        d.addPairwiseGaussian(sxy=3, compat=3)
        d.addPairwiseBilateral(sxy=30, srgb=13, rgbim=image, compat=5)
        return np.array(d.inference(5))

    fused = run()
    monkeypatch.setattr(edcrf.DenseCRF2D, "_fused", lambda self, n: None)  # the step-by-step path
    steps = run()
    assert np.isfinite(fused).all() and (fused[0, :50] == 0).all()
    np.testing.assert_allclose(fused, steps, atol=1e-4)


# ---- 18: a broken validation file is found before training


def test_18_a_broken_validation_file_stops_the_run_before_training(small_synthetic, tmp_path, monkeypatch):
    root = copy_of(small_synthetic, tmp_path / "voc")
    (root / "JPEGImages" / "val_00003.jpg").write_bytes(b"broken")
    monkeypatch.setattr(train_mod, "train_step", lambda *a: pytest.fail("trained before the check"))
    with pytest.raises(DataError, match=r"val_00003.jpg: not a decodable image .*--val-split 'val'"):
        train_main(
            small_args(
                root,
                tmp_path / "run",
                **{"--data-root": root, "--train-split": "train_aug", "--val-split": "val", "--mode": "full"},
            )
        )


# ---- 20, 21: full disks and bad files are named


def test_20_a_full_disk_names_the_checkpoint_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth"
    save_checkpoint({"iteration": 1}, path)
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 100:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(OSError) as exc:
        save_checkpoint({"iteration": 2, "w": torch.zeros(1000)}, path)
    message = user_message(exc.value)
    assert message.startswith(f"cannot write {path}: No space left on device") and "the disk is full" in message
    assert "inline_container" not in message
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]


@pytest.fixture(scope="module")
def largefov():
    return DeepLabLargeFOV(3)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "the file is empty"),
        (b"\x00garbage\xff" * 10, "not a readable checkpoint"),
        ("list", "holds a list, not a VGG16 state_dict"),
        ("tensors", "not a torchvision VGG16 state_dict: missing 'classifier.0.weight'"),
    ],
)
def test_21_a_bad_pretrained_file_is_named(tmp_path, largefov, content, message):
    path = tmp_path / "vgg.pth"
    if content == "list":
        torch.save([1, 2], path)
    elif content == "tensors":
        torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        load_vgg16_weights(largefov, str(path))
    assert message in str(exc.value) and str(path) in user_message(exc.value)


# ---- 23: COCO files


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d["annotations"][0].pop("category_id"), "annotation 0 has no 'category_id'"),
        (lambda d: d["annotations"][0].update(bbox=["1", 2, 3, 4]), "annotation 0 has bbox ['1', 2, 3, 4]"),
        (lambda d: d["annotations"][0].update(bbox=[float("nan"), 2, 3, 4]), "annotation 0 has bbox [nan"),
        (
            lambda d: d["images"].append({"id": 2, "file_name": "sub/a.png"}),
            "images 'a.jpg' and 'sub/a.png' have one stem",
        ),
        (lambda d: d["images"][0].pop("file_name"), "image 0 has no 'file_name'"),
    ],
)
def test_23_coco_faults_are_named(tmp_path, change, message):
    data = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "categories": [{"id": 18, "name": "dog"}],
        "annotations": [{"image_id": 1, "category_id": 18, "bbox": [1, 2, 3, 4]}],
    }
    change(data)
    (tmp_path / "c.json").write_text(json.dumps(data, allow_nan=True))
    with pytest.raises(DataError, match="c.json: " + message.replace("[", r"\[").replace("(", r"\(")):
        CocoBoxes(tmp_path / "c.json")


def test_23_a_category_map_index_outside_the_classes(tmp_path):
    data = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 5, "name": "x"}], "annotations": []}
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="category_map maps to index 40, not a foreground class index 1..20"):
        CocoBoxes(tmp_path / "c.json", category_map={5: 40})


# ---- also seen: permissions, resume on other data, the CRF over padding


def test_checkpoints_get_the_umasks_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint({"iteration": 1}, tmp_path / "c.pth")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.pth").stat().st_mode) == 0o644


def test_resume_on_other_data_is_refused(small_synthetic, tmp_path):
    out = tmp_path / "run"
    train_main(small_args(small_synthetic, out, **{"--mode": "full", "--iterations": 4, "--stop-after": 2}))
    other = copy_of(small_synthetic, tmp_path / "other")  # the same set, one annotation edited
    xml = other / "Annotations" / "train_00004.xml"
    xml.write_text(xml.read_text().replace("</annotation>", "  <!-- edited -->\n</annotation>"))
    with pytest.raises(ValueError, match="the training data differ from the checkpoint's"):
        train_main(small_args(other, out, **{"--mode": "full", "--iterations": 4, "--resume": out / "checkpoint.pth"}))


def test_evaluate_crf_runs_each_image_at_its_own_size(trained, small_synthetic, tmp_path):
    root = copy_of(small_synthetic, tmp_path / "voc")
    small = cv2.imread(str(root / "JPEGImages" / "val_00001.jpg"))[:20, :24]
    cv2.imwrite(str(root / "JPEGImages" / "val_00001.jpg"), small)
    from emseg.data.io import write_mask_png

    mask = read_mask_png(root / "SegmentationClassAug" / "val_00001.png")

    write_mask_png(root / "SegmentationClassAug" / "val_00001.png", mask[:20, :24])
    xml = root / "Annotations" / "val_00001.xml"
    xml.unlink()  # its boxes would reach outside the cut image
    model, _ = checkpoint_mod.load_model_from_checkpoint(trained, torch.device("cpu"))
    ds = torch.utils.data.Subset(VOCSegmentation(root, "val"), [0, 1])
    sizes = []

    def crf(unary, image):
        sizes.append(tuple(unary.shape[-2:]))
        return torch.softmax(-unary, 1)

    cm, cm_crf = evaluate(
        model,
        torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate),
        7,
        torch.device("cpu"),
        crf,
        progress=False,
    )
    assert sizes == [(48, 48), (20, 24)]  # not the small image padded to 48 x 48
    assert (
        cm_crf.mat.sum()
        == cm.mat.sum()
        == 48 * 48
        + 20 * 24
        - int((mask[:20, :24] == 255).sum())
        - int((read_mask_png(root / "SegmentationClassAug" / "val_00000.png") == 255).sum())
    )
    from emseg.evaluate import crf_groups

    assert crf_groups(torch.tensor([[4, 5], [4, 5]]), (4, 5)) == [(slice(None), 4, 5)]  # one size: one call
