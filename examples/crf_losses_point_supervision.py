"""Dense-CRF losses trained end to end from point labels, on the synthetic set (CPU, ~1-2 min).

Each training image keeps the labels of a few random pixels only (``--points``, about 1 % of a
64x64 image). Three copies of the small DeepLab model start from the same weights and see the same
batches:

- ``plain``: cross-entropy of the network's (upsampled) scores on the labelled pixels;
- ``crf-loss``: plus a dense-CRF regularised loss (Tang et al., ECCV 2018): the relaxed Potts energy
  ``mean_i sum_l S_il (1 - (K S)_il)`` of the softmax S under the normalised bilateral kernel K,
  evaluated with ``emseg.ops.permutohedral_filter`` and differentiated through it (its adjoint);
- ``crf-rnn``: the scores go through ``emseg.ops.dense_crf`` (``unary_kind="logits"``, a few
  mean-field iterations), and the loss is the negative log of the CRF's marginals Q on the labelled
  pixels, plus the plain loss: the gradient reaches the network through the unrolled mean-field
  iterations (``dense_crf``'s backward, CRF-as-RNN).

Prints the validation mIoU of each (the network's argmax, and for ``crf-rnn`` also the CRF's), and
what the CRF layer costs per batch: forward, backward, and the backward's memory.

    python examples/crf_losses_point_supervision.py [--steps 300] [--points 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from emseg.data import IGNORE_INDEX, SYNTHETIC_CLASSES
from emseg.data.synthetic import render_synthetic_image
from emseg.models import DeepLabSmall
from emseg.ops import dense_crf, permutohedral_filter

NUM_CLASSES = len(SYNTHETIC_CLASSES)
# For 64x64 images: the bilateral kernel spans about a third of the image and separates colours
# 10 levels apart (DeepLab's VOC values, 121 / 5, are for 500x375 photos).
CRF_PARAMS = dict(pos_w=3.0, pos_xy_std=3.0, bi_w=5.0, bi_xy_std=20.0, bi_rgb_std=10.0)


def make_set(count: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(count):
        image, mask, _ = render_synthetic_image(rng, size)
        images.append(image)
        masks.append(mask)
    images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # uint8 [N, 3, H, W]
    return images, torch.from_numpy(np.stack(masks)).long()


def point_labels(masks: torch.Tensor, points: int, seed: int) -> torch.Tensor:
    """Keep `points` random labelled pixels per image (object outlines excluded), IGNORE elsewhere."""
    g = torch.Generator().manual_seed(seed)
    out = torch.full_like(masks, IGNORE_INDEX)
    for n in range(masks.shape[0]):
        valid = (masks[n] != IGNORE_INDEX).flatten().nonzero().squeeze(1)
        keep = valid[torch.randperm(valid.numel(), generator=g)[:points]]
        out[n].view(-1)[keep] = masks[n].view(-1)[keep]
    return out


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() - 127.5) / 64.0


def scores(model, images):
    logits = model(normalise(images))
    return F.interpolate(logits, size=images.shape[2:], mode="bilinear", align_corners=False)


def crf_marginals(logits, images, iterations):
    return dense_crf(logits, images, iterations=iterations, unary_kind="logits", **CRF_PARAMS)


def bilateral_features(images: torch.Tensor) -> torch.Tensor:
    """[N, P, 5] positions / bi_xy_std and colours / bi_rgb_std, the bilateral kernel's features."""
    n, _, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([xs, ys], -1).reshape(1, h * w, 2).float().expand(n, -1, -1) / CRF_PARAMS["bi_xy_std"]
    rgb = images.permute(0, 2, 3, 1).reshape(n, h * w, 3).float() / CRF_PARAMS["bi_rgb_std"]
    return torch.cat([pos, rgb], 2).contiguous()


def potts_regulariser(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """mean_i sum_l S_il (1 - (K S)_il), S = softmax(logits), K the normalised bilateral kernel."""
    n, labels, h, w = logits.shape
    s = logits.softmax(1).permute(0, 2, 3, 1).reshape(n, h * w, labels).contiguous()
    smoothed = permutohedral_filter(s, bilateral_features(images), normalize=True)
    return (s * (1 - smoothed)).sum(2).mean()


def miou(pred: torch.Tensor, masks: torch.Tensor) -> float:
    keep = masks != IGNORE_INDEX
    conf = torch.bincount(masks[keep] * NUM_CLASSES + pred[keep], minlength=NUM_CLASSES**2)
    conf = conf.reshape(NUM_CLASSES, NUM_CLASSES).double()
    iou = conf.diag() / (conf.sum(0) + conf.sum(1) - conf.diag()).clamp(min=1)
    return float(iou.mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per model (default 300)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step (default 8)")
    parser.add_argument("--points", type=int, default=40, help="labelled pixels per image (default 40)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--iterations", type=int, default=5, help="mean-field iterations of the CRF layer (default 5)")
    parser.add_argument("--reg-weight", type=float, default=1.0, help="weight of crf-loss's regulariser (default 1)")
    parser.add_argument("--train", type=int, default=96, help="training images (default 96)")
    parser.add_argument("--val", type=int, default=32, help="validation images (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the points and the weights")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train_images, train_masks = make_set(args.train, args.size, args.seed)
    val_images, val_masks = make_set(args.val, args.size, args.seed + 1)
    train_points = point_labels(train_masks, args.points, args.seed)
    print(
        f"{args.train} training images of {args.size}x{args.size}, {args.points} labelled pixels each "
        f"({100 * args.points / args.size**2:.1f} %), {args.val} validation images with full masks"
    )

    models = {"plain": DeepLabSmall(NUM_CLASSES, width=16)}
    models["crf-loss"] = copy.deepcopy(models["plain"])
    models["crf-rnn"] = copy.deepcopy(models["plain"])
    optims = {k: torch.optim.Adam(m.parameters(), lr=3e-3) for k, m in models.items()}
    crf_forward_s = crf_backward_s = 0.0
    g = torch.Generator().manual_seed(args.seed + 2)
    start = time.perf_counter()
    for step in range(args.steps):
        batch = torch.randint(0, args.train, (args.batch_size,), generator=g)
        images, target = train_images[batch], train_points[batch]
        for name, model in models.items():
            logits = scores(model, images)
            loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
            if name == "crf-loss":
                loss = loss + args.reg_weight * potts_regulariser(logits, images)
            if name == "crf-rnn":
                t0 = time.perf_counter()
                q = crf_marginals(logits, images, args.iterations)
                crf_forward_s += time.perf_counter() - t0
                crf_loss = F.nll_loss(q.clamp(min=1e-8).log(), target, ignore_index=IGNORE_INDEX)
                loss = loss + crf_loss
                # Time the CRF's backward on its own: the rest of the graph after it.
                t0 = time.perf_counter()
                (grad_logits,) = torch.autograd.grad(loss, logits)
                crf_backward_s += time.perf_counter() - t0
                optims[name].zero_grad()
                logits.backward(grad_logits)
            else:
                optims[name].zero_grad()
                loss.backward()
            optims[name].step()
        if (step + 1) % 25 == 0:
            print(f"step {step + 1}/{args.steps}  {time.perf_counter() - start:.0f} s")

    with torch.no_grad():
        for name, model in models.items():
            model.eval()
            logits = scores(model, val_images)
            line = f"{name:>8}: validation mIoU {miou(logits.argmax(1), val_masks):.3f} (network argmax)"
            if name == "crf-rnn":
                q = crf_marginals(logits, val_images, args.iterations)
                line += f", {miou(q.argmax(1), val_masks):.3f} (CRF argmax)"
            print(line)

    # The backward recomputes the forward keeping every iteration's marginals (csrc/crf/crf_driver.h):
    # (iterations + 1) float32 [C W, H, W] per image, C W = the labels rounded up to 4 or 8.
    lanes = 4 * -(-NUM_CLASSES // 4) if NUM_CLASSES <= 4 else 8 * -(-NUM_CLASSES // 8)
    stored = (args.iterations + 1) * lanes * args.size**2 * 4
    per = args.steps
    print(
        f"CRF layer per batch of {args.batch_size}: forward {1e3 * crf_forward_s / per:.1f} ms, "
        f"backward {1e3 * crf_backward_s / per:.1f} ms ({crf_backward_s / crf_forward_s:.1f}x the forward); "
        f"the backward keeps {stored / 2**10:.0f} KiB of marginals per image"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
