"""Evaluation and prediction: confusion matrix, IoU table, score upsampling, the two CLIs."""

import math

import numpy as np
import pytest
import torch

from emseg.checkpoint import load_model_from_checkpoint
from emseg.evaluate import evaluate
from emseg.evaluate import main as evaluate_main
from emseg.inference import upsample_scores
from emseg.metrics import ConfusionMatrix
from emseg.train import main as train_main

pytestmark = pytest.mark.slow  # training runs: left out of the fast subset (-m "not slow")


def test_confusion_matrix_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (3, 17, 13), generator=g)
    target[0, :4] = 255
    pred = torch.randint(0, 5, (3, 17, 13), generator=g)
    cm = ConfusionMatrix(5)
    cm.update(target, pred)
    brute = np.zeros((5, 5), dtype=np.int64)
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist()):
        if t != 255:
            brute[t, p] += 1
    assert np.array_equal(cm.mat.numpy(), brute)
    iou = [brute[c, c] / (brute[c].sum() + brute[:, c].sum() - brute[c, c]) for c in range(5)]
    assert cm.miou() == pytest.approx(np.mean(iou))


def test_iou_skips_absent_classes_and_formats_a_table():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]))
    iou = cm.iou()
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(2 / 3) and math.isnan(iou[2])
    assert cm.miou() == pytest.approx((0.5 + 2 / 3) / 2)
    table = cm.table(["background", "cat", "dog"])
    assert "dog" in table and "n/a" in table and "mean IoU" in table and "58.3" in table


def test_upsample_scores_keeps_cells_on_their_pixels():
    scores = torch.randn(2, 3, 4, 5)
    up = upsample_scores(scores, (29, 40), 8)
    assert up.shape == (2, 3, 29, 40)
    torch.testing.assert_close(up[..., ::8, ::8], scores)
    torch.testing.assert_close(up[..., 28, :], up[..., 24, :])  # past the last cell: edge


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    out = base / "run"
    train_main(
        [
            "--no-progress",
            "--synthetic-dir",
            str(base / "syn"),
            "--synthetic-train",
            "32",
            "--synthetic-val",
            "8",
            "--synthetic-test",
            "0",
            "--synthetic-size",
            "48",
            "--crop-size",
            "48",
            "--batch-size",
            "4",
            "--width",
            "8",
            "--workers",
            "0",
            "--mode",
            "full",
            "--iterations",
            "20",
            "--output-dir",
            str(out),
            "--num-pictures",
            "0",
        ]
    )
    return out / "checkpoint.pth", base / "syn"


def test_evaluate_cli(checkpoint, capsys):
    ckpt, _ = checkpoint
    result = evaluate_main(["--checkpoint", str(ckpt), "--workers", "0", "--no-progress"])
    out = capsys.readouterr().out
    assert "mean IoU" in out and "disc" in out
    assert 0.0 <= result["miou"] <= 1.0 and len(result["iou"]) == 7


def test_evaluate_with_a_stand_in_crf(checkpoint):
    """The CRF path: a CRF that returns the unary's own distribution changes nothing."""
    from emseg.data import EvalTransform, VOCSegmentation, collate

    ckpt, root = checkpoint
    model, args = load_model_from_checkpoint(str(ckpt), torch.device("cpu"))
    ds = VOCSegmentation(root, "val", transform=EvalTransform(tuple(args["mean"]), tuple(args["std"])))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate)
    plain, refined = evaluate(
        model,
        loader,
        ds.num_classes,
        torch.device("cpu"),
        crf=lambda unary, image: torch.softmax(-unary, 1),
        progress=False,
    )
    assert torch.equal(plain.mat, refined.mat)


def test_predict_cli(checkpoint, tmp_path):
    import cv2

    from emseg.data.io import read_mask_png
    from emseg.predict import main as predict_main

    ckpt, root = checkpoint
    src = tmp_path / "in"
    src.mkdir()
    for k, f in enumerate(sorted((root / "JPEGImages").glob("*.jpg"))[:2]):
        cv2.imwrite(str(src / f"photo{k}.png"), cv2.imread(str(f)))
    (src / "notes.txt").write_text("not an image")
    written = predict_main(["--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp_path / "out")])
    assert [p.name for p in written] == ["photo0.png", "photo1.png"]
    mask = read_mask_png(written[0])
    assert mask.shape == (48, 48) and mask.max() < 7
    overlay = cv2.imread(str(tmp_path / "out" / "photo0_overlay.jpg"))
    assert overlay.shape[0] == 48 and overlay.shape[1] > 96


@pytest.mark.parametrize(
    "module,argv,message",
    [
        ("evaluate", ["--checkpoint", "/nonexistent.pth"], "no such file"),
        ("evaluate", ["--checkpoint", "x", "--batch-size", "0"], "--batch-size must be >= 1"),
        ("predict", ["--checkpoint", "/nonexistent.pth", "--input", ".", "--output", "o"], "no such file"),
        ("predict", ["--checkpoint", "x", "--input", "/nonexistent/dir", "--output", "o"], "--input /nonexistent/dir"),
    ],
)
def test_cli_bad_flags(module, argv, message, capsys):
    import importlib

    mod = importlib.import_module(f"emseg.{module}")
    with pytest.raises(SystemExit) as exc:
        mod.main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_evaluate_cli_with_the_dense_crf(checkpoint, capsys):
    result = evaluate_main(["--checkpoint", str(checkpoint[0]), "--workers", "0", "--no-progress", "--crf"])
    assert "with dense CRF" in capsys.readouterr().out
    assert 0.0 <= result["miou_crf"] <= 1.0
