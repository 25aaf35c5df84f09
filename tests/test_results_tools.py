"""The results tools of benchmarks/: the table's columns and the crop label rule's costs."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import crop_labels  # noqa: E402
import results_table  # noqa: E402


def run(seed, miou, start):
    return {"seed": seed, "miou": miou, "start_miou": start, "miou_crf": miou + 0.01}


def test_table_reports_each_run_beside_its_start():
    results = {
        "full": {"label": "full", "flags": ["--mode", "full"], "runs": [run(0, 0.8, 0.6), run(1, 0.9, 0.5)]},
        "em-adapt": {
            "label": "EM-Adapt",
            "flags": ["--mode", "em-adapt"],
            "runs": [run(0, 0.7, 0.6), run(1, 0.55, 0.5)],
        },
        "full-scratch": {
            "label": "scratch",
            "flags": ["--mode", "full", "--init", "scratch"],
            "runs": [run(0, 0.75, 0.01)],
        },
    }
    lines = results_table.markdown(results, [0, 1]).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == ["setting", "mIoU %", "with CRF", "- start (mean; min)", "x start", "x full", "seeds"]
    rows = {row[0]: row for row in cells[2:]}
    start = rows["the start (pretrained, before any step)"]
    assert start[1] == "55.0 ± 7.1" and start[5] == f"{(0.6 / 0.8 + 0.5 / 0.9) / 2:.2f}"
    em = rows["EM-Adapt"]
    assert em[1] == "62.5 ± 10.6" and em[3] == "+7.5; +5.0"  # +10 and +5 points
    assert em[4] == f"{(0.7 / 0.6 + 0.55 / 0.5) / 2:.2f}" and em[5] == f"{(0.7 / 0.8 + 0.55 / 0.9) / 2:.2f}"
    scratch = rows["scratch"]  # random weights: no start to compare with, and the start row ignores it
    assert scratch[3] == scratch[4] == "" and scratch[6] == "1/2"


def test_keeping_every_label_drops_none_and_the_box_rule_names_none_out_of_view(tmp_path):
    from emseg.data import TrainTransform, make_synthetic_voc

    root = make_synthetic_voc(tmp_path / "syn", num_train=12, num_val=2, image_size=48, seed=2, progress=False)
    small_crops = TrainTransform(24, scale_range=(0.75, 1.25))  # crops cut objects: both rules are tested
    false, dropped, kept = crop_labels.rule_errors(str(root), "train_aug", small_crops, boxes=False, crops=60)
    assert dropped == 0.0 and kept > 0 and 0.0 < false < 1.0
    false_boxes, dropped_boxes, _ = crop_labels.rule_errors(str(root), "train_aug", small_crops, boxes=True, crops=60)
    assert false_boxes < false and dropped_boxes > 0.0
