"""Each training mode's targets on a fixed batch, and the geometry between image and score grids."""

import pytest
import torch

from emseg import ops
from emseg.crf import CRFParams, make_crf
from emseg.estep import (
    IGNORE_INDEX,
    MODES,
    EStepConfig,
    box_prior,
    boxes_to_score_coords,
    downsample_mask,
    fixed_bbox_rect,
    fixed_bbox_seg,
    get_mode,
    make_targets,
)

STRIDE = 8
C = 4


def fixed_batch():
    """Two 32x32 images (score grid 4x4): image 0 has class 2 (box on the right half), image 1
    has class 3 (box on the top-left quarter). Masks follow the boxes."""
    mask = torch.zeros(2, 32, 32, dtype=torch.int64)
    mask[0, :, 16:] = 2
    mask[1, :16, :16] = 3
    mask[1, 0, 0] = IGNORE_INDEX
    labels = torch.zeros(2, C, dtype=torch.bool)
    labels[:, 0] = True
    labels[0, 2] = True
    labels[1, 3] = True
    boxes = torch.full((2, 2, 5), -1.0)
    boxes[0, 0] = torch.tensor([16.0, 0.0, 32.0, 32.0, 2.0])
    boxes[1, 0] = torch.tensor([0.0, 0.0, 16.0, 16.0, 3.0])
    boxes[:, 1, :4] = 0.0  # padding row: class -1, empty
    return {
        "mask": mask,
        "labels": labels,
        "boxes": boxes,
        "strong": torch.tensor([False, False]),
        "image_uint8": torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
    }


def test_modes_table_is_complete():
    assert set(MODES) == {"full", "em-fixed", "em-adapt", "bbox-rect", "bbox-seg", "bbox-em-fixed"}
    for mode in MODES.values():
        assert mode.needs in ("mask", "labels", "boxes")
        assert mode.online is None or mode.fixed is None
        assert (mode.online is None and mode.fixed is None) == (mode.name == "full")
    assert MODES["bbox-seg"].needs_crf and not MODES["bbox-rect"].needs_crf
    with pytest.raises(ValueError, match="unknown mode 'em'.*em-fixed"):
        get_mode("em")


def test_downsample_mask_samples_cell_centres():
    mask = torch.arange(17 * 19).view(1, 17, 19)
    out = downsample_mask(mask, (3, 3), STRIDE)
    assert torch.equal(out, mask[:, ::8, ::8])
    padded = downsample_mask(mask, (4, 4), STRIDE)
    assert torch.equal(padded[:, :3, :3], mask[:, ::8, ::8])
    assert (padded[:, 3] == IGNORE_INDEX).all() and (padded[:, :, 3] == IGNORE_INDEX).all()


def test_box_score_coords_cover_the_sampled_pixels():
    """A box covers score cell (i, j) exactly when it covers image pixel (8i, 8j)."""
    g = torch.Generator().manual_seed(0)
    n, b, H, W = 4, 5, 45, 38
    xy = torch.rand(n, b, 4, generator=g) * torch.tensor([W, H, W, H]) * 1.2 - 3
    xy = torch.stack(
        [
            xy[..., [0, 2]].min(-1).values,
            xy[..., [1, 3]].min(-1).values,
            xy[..., [0, 2]].max(-1).values,
            xy[..., [1, 3]].max(-1).values,
        ],
        -1,
    )
    xy = xy.round()  # integer corners, as VOC boxes
    cls = torch.randint(1, 6, (n, b, 1), generator=g).float()
    boxes = torch.cat([xy, cls], -1).contiguous()
    full = ops.boxes_to_labels(boxes, H, W, 0)
    h, w = -(-H // STRIDE), -(-W // STRIDE)
    small = ops.boxes_to_labels(boxes_to_score_coords(boxes, STRIDE).contiguous(), h, w, 0)
    assert torch.equal(small, full[:, ::STRIDE, ::STRIDE])


def test_full_mode_targets_are_the_downsampled_masks():
    batch = fixed_batch()
    scores = torch.randn(2, C, 4, 4)
    t = make_targets(get_mode("full"), scores, batch, EStepConfig(), STRIDE)
    assert torch.equal(t, batch["mask"][:, ::8, ::8])


def test_em_fixed_targets():
    batch = fixed_batch()
    scores = torch.zeros(2, C, 4, 4)
    scores[:, 0, :, :2] = 4.0  # left half: background 4 + 3 beats foreground 0 + 5
    scores[:, 1] = 1.5  # absent class 1: 1.5 + 0 loses everywhere
    t = make_targets(get_mode("em-fixed"), scores, batch, EStepConfig(), STRIDE)
    expected = torch.zeros(2, 4, 4, dtype=torch.int64)
    expected[0, :, 2:] = 2
    expected[1, :, 2:] = 3
    assert torch.equal(t, expected)
    # without the biases' help (b_fg = b_bg) background wins its half and ties go to class 0
    t = make_targets(get_mode("em-fixed"), scores, batch, EStepConfig(fg_bias=3.0), STRIDE)
    assert (t[:, :, :2] == 0).all()


def test_em_adapt_targets_meet_the_shares():
    batch = fixed_batch()
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(2, C, 10, 10, generator=g)
    scores[:, 0] += 5.0  # background dominates before the adaptive biases
    t = make_targets(get_mode("em-adapt"), scores, batch, EStepConfig(), STRIDE)
    for k, cls in ((0, 2), (1, 3)):
        values = set(t[k].unique().tolist())
        assert values <= {0, cls}
        assert (t[k] == cls).sum() >= 20
        assert (t[k] == 0).sum() >= 40


def test_bbox_em_fixed_targets():
    batch = fixed_batch()
    scores = torch.zeros(2, C, 4, 4)
    t = make_targets(get_mode("bbox-em-fixed"), scores, batch, EStepConfig(), STRIDE)
    expected = torch.zeros(2, 4, 4, dtype=torch.int64)
    expected[0, :, 2:] = 2
    expected[1, :2, :2] = 3
    assert torch.equal(t, expected)


@pytest.mark.parametrize("mode", ["em-fixed", "em-adapt", "bbox-em-fixed", "bbox-rect", "bbox-seg"])
def test_strong_images_use_their_masks(mode):
    batch = fixed_batch()
    batch["strong"] = torch.tensor([True, False])
    scores = torch.randn(2, C, 4, 4)
    t = make_targets(get_mode(mode), scores, batch, EStepConfig(), STRIDE)
    assert torch.equal(t[0], batch["mask"][0, ::8, ::8])
    if MODES[mode].online is None:  # fixed-label modes read cached labels through "mask"
        assert torch.equal(t[1], batch["mask"][1, ::8, ::8])


def test_estep_sees_no_gradient_and_float32():
    batch = fixed_batch()
    scores = torch.randn(2, C, 4, 4, dtype=torch.float16).requires_grad_()
    t = make_targets(get_mode("em-fixed"), scores, batch, EStepConfig(), STRIDE)
    assert t.dtype == torch.int64 and not t.requires_grad


def test_bbox_rect_fixed_labels():
    batch = fixed_batch()
    labels = fixed_bbox_rect(batch["boxes"][0], batch["image_uint8"][0], C, EStepConfig())
    assert torch.equal(labels, batch["mask"][0])


def test_box_prior():
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0, 2.0], [10.0, 10.0, 30.0, 30.0, 3.0], [0, 0, 0, 0, -1]])
    prob, ids, centre = box_prior(boxes, 32, 32, EStepConfig(seg_box_prob=0.6))
    assert ids.tolist() == [0, 2, 3]
    assert torch.allclose(prob.sum(0), torch.ones(32, 32))
    assert prob[0, 31, 31] == 1.0  # outside every box
    assert prob[1, 2, 2] == pytest.approx(0.6) and prob[0, 2, 2] == pytest.approx(0.4)
    assert prob[1, 15, 15] == pytest.approx(0.3) and prob[2, 15, 15] == pytest.approx(0.3)
    assert centre[10, 10] == 2 and prob[1, 10, 10] == 1.0  # centre of box 1 (area 20% -> ~9x9)
    assert centre[0, 0] == -1


def identity_crf(unary, image):
    """Stand-in CRF: returns the unary's own distribution (no pairwise terms)."""
    return torch.softmax(-unary, dim=1)


def background_crf(unary, image):
    """Stand-in CRF that pushes every pixel to the first label (background)."""
    q = torch.zeros_like(unary)
    q[:, 0] = 1.0
    return q


def test_bbox_seg_fixed_labels_keep_the_constraints():
    batch = fixed_batch()
    boxes, image = batch["boxes"][1], batch["image_uint8"][1]
    rect = fixed_bbox_rect(boxes, image, C, EStepConfig())
    assert torch.equal(fixed_bbox_seg(boxes, image, C, EStepConfig(), identity_crf), rect)
    seg = fixed_bbox_seg(boxes, image, C, EStepConfig(), background_crf)
    centre = ops.center_prior(boxes[None], 32, 32)[0]
    assert torch.equal(seg, torch.where(centre >= 0, centre, 0))
    assert (seg == 3).sum() > 0


def test_bbox_seg_needs_a_crf():
    batch = fixed_batch()
    with pytest.raises(ValueError, match="dense CRF"):
        fixed_bbox_seg(batch["boxes"][0], batch["image_uint8"][0], C, EStepConfig(), None)


def test_bbox_seg_with_the_dense_crf():
    """With the real dense CRF the box's background-coloured corners leave the object."""
    crf = make_crf(CRFParams(bi_xy_std=16.0, pos_xy_std=1.0))
    yy, xx = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    disc = (yy - 20) ** 2 + (xx - 20) ** 2 <= 11**2
    image = torch.full((3, 40, 40), 120, dtype=torch.uint8)
    image[0][disc], image[1][disc], image[2][disc] = 220, 30, 30
    boxes = torch.tensor([[8.0, 8.0, 32.0, 32.0, 2.0]])
    seg = fixed_bbox_seg(boxes, image, C, EStepConfig(), crf)
    rect = fixed_bbox_rect(boxes, image, C, EStepConfig())
    assert (seg[rect == 0] == 0).all()  # outside the box: background
    assert seg[20, 20] == 2  # the centre area
    assert seg[8, 8] == 0 and seg[31, 31] == 0  # grey corners of the box
    assert (seg[disc] == 2).float().mean() > 0.9


@pytest.mark.parametrize("name", ["em-fixed", "em-adapt", "bbox-em-fixed"])
def test_padding_is_never_a_target(name):
    """A crop padded on its right half (valid False there): no padding cell gets a label, and the
    E-step on the valid half is the E-step of that half alone, shares counted over it."""
    batch = fixed_batch()
    batch["mask"][:] = 0  # the masks of weak images are never read
    scores = torch.randn(2, C, 4, 4, generator=torch.Generator().manual_seed(3))
    scores[:, 2:, :, 2:] += 4.0  # the padding holds the foreground: counted there, it would change the shares
    valid = torch.ones(2, 32, 32, dtype=torch.bool)
    valid[:, :, 16:] = False
    batch["valid"] = valid
    target = make_targets(get_mode(name), scores, batch, EStepConfig(), STRIDE)
    assert (target[:, :, 2:] == IGNORE_INDEX).all()
    half = {k: v for k, v in batch.items() if k != "valid"}
    half["mask"], half["image_uint8"] = batch["mask"][:, :, :16], batch["image_uint8"][:, :, :, :16]
    alone = make_targets(get_mode(name), scores[:, :, :, :2].contiguous(), half, EStepConfig(), STRIDE)
    assert torch.equal(target[:, :, :2], alone)


def test_em_adapt_shares_are_of_the_valid_cells():
    """Image 0 shows background and class 2; 25 of its 100 score cells are valid. At least 20 % of
    those (5, not 20 of the grid) take class 2 and at least 40 % (10) background."""
    labels = torch.zeros(1, C, dtype=torch.bool)
    labels[0, [0, 2]] = True
    scores = torch.zeros(1, C, 10, 10)
    scores[0, 1] = 1.0  # an absent class leads everywhere: EM-Adapt must not give it a cell
    scores[0, 2] = torch.linspace(-2, 0, 100).view(10, 10)
    valid = torch.zeros(1, 80, 80, dtype=torch.bool)
    valid[:, :40, :40] = True
    batch = {
        "mask": torch.zeros(1, 80, 80, dtype=torch.int64),
        "labels": labels,
        "strong": torch.tensor([False]),
        "valid": valid,
    }
    target = make_targets(get_mode("em-adapt"), scores, batch, EStepConfig(), STRIDE)
    inside = target[0, :5, :5]
    assert (target[0, 5:] == IGNORE_INDEX).all() and (target[0, :5, 5:] == IGNORE_INDEX).all()
    # the five highest class-2 scores of the valid cells; counted over the grid, the 20 cells
    # class 2 needs would all be padding and no valid cell would take it
    assert int((inside == 2).sum()) == 5 and int((inside == 0).sum()) == 20
    assert (inside[4] == 2).all()  # the valid block's highest class-2 scores: its last row
