"""The synthetic set's drawing: each class's colour and texture, its outline, and the cluttered
backgrounds (:mod:`emseg.data.synthetic` places them)."""

from __future__ import annotations

import math

import cv2
import numpy as np

_RED, _BLUE, _GREEN, _YELLOW = (200, 45, 40), (45, 75, 205), (40, 160, 65), (220, 195, 45)
# class -> (base colour, texture)
STYLE = {
    1: (_RED, "plain"),
    2: (_BLUE, "stripes"),
    3: (_GREEN, "dots"),
    4: (_RED, "stripes"),
    5: (_BLUE, "plain"),
    6: (_YELLOW, "checker"),
}
TEXTURES = ("plain", "stripes", "dots", "checker")


def jitter_colour(rng: np.random.Generator, base: tuple[int, int, int]) -> np.ndarray:
    colour = np.asarray(base, dtype=np.float32) * rng.uniform(0.75, 1.15) + rng.normal(0, 14, 3)
    return np.clip(colour, 0, 255)


def texture(rng: np.random.Generator, kind: str, colour: np.ndarray, size: int) -> np.ndarray:
    """A ``[size, size, 3]`` float texture in the given colour family."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    second = colour * rng.uniform(0.35, 0.55) if rng.random() < 0.6 else np.clip(colour * 0.4 + 150, 0, 255)
    if kind == "plain":
        pattern = np.zeros((size, size), dtype=bool)
    elif kind == "stripes":
        period = rng.uniform(4.0, 7.0)
        pattern = np.mod(u, period) < period / 2
    elif kind == "dots":
        period = rng.uniform(5.0, 7.5)
        du, dv = np.mod(u, period) - period / 2, np.mod(v, period) - period / 2
        pattern = du * du + dv * dv < (period * 0.3) ** 2
    elif kind == "checker":
        period = rng.uniform(3.5, 6.0)
        pattern = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    else:
        raise ValueError(kind)
    out = np.where(pattern[..., None], second[None, None, :], colour[None, None, :])
    # a soft shading gradient so flat areas are not perfectly flat
    shade = 1.0 + 0.15 * (u / size - 0.5) * rng.uniform(-1, 1)
    return out * shade[..., None]


def polygon(rng: np.random.Generator, cls: int, cx: float, cy: float, r: float, angle: float) -> list[np.ndarray]:
    """Outline(s) of a class shape; a ring returns its outer and inner circle."""

    def regular(n: int, radius: float, phase: float = 0.0) -> np.ndarray:
        t = angle + phase + np.arange(n) * 2 * math.pi / n
        return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)

    if cls in (1, 5):  # disc, ring: slightly elliptical circles
        aspect = rng.uniform(0.85, 1.15)
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        outer = np.stack(
            [
                cx + r * aspect * np.cos(t) * math.cos(angle) - r * np.sin(t) * math.sin(angle),
                cy + r * aspect * np.cos(t) * math.sin(angle) + r * np.sin(t) * math.cos(angle),
            ],
            axis=1,
        )
        if cls == 1:
            return [outer]
        hole = rng.uniform(0.45, 0.6)
        inner = np.stack([cx + (outer[:, 0] - cx) * hole, cy + (outer[:, 1] - cy) * hole], axis=1)
        return [outer, inner]
    if cls == 2:  # square, a little stretched
        stretch = rng.uniform(0.8, 1.25)
        pts = np.array([[-1, -stretch], [1, -stretch], [1, stretch], [-1, stretch]], dtype=np.float64) * r * 0.75
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        return [pts @ rot.T + (cx, cy)]
    if cls == 3:
        return [regular(3, r)]
    if cls == 4:  # five-pointed star
        outer, inner = regular(5, r), regular(5, r * rng.uniform(0.4, 0.5), math.pi / 5)
        return [np.stack([outer, inner], axis=1).reshape(-1, 2)]
    if cls == 6:  # plus sign
        a = rng.uniform(0.28, 0.4)
        pts = (
            np.array(
                [
                    [-a, -1],
                    [a, -1],
                    [a, -a],
                    [1, -a],
                    [1, a],
                    [a, a],
                    [a, 1],
                    [-a, 1],
                    [-a, a],
                    [-1, a],
                    [-1, -a],
                    [-a, -a],
                ],
                dtype=np.float64,
            )
            * r
        )
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        return [pts @ rot.T + (cx, cy)]
    raise ValueError(cls)


def fill_outlines(size: int, outlines: list[np.ndarray]) -> np.ndarray:
    canvas = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(outlines[0]).astype(np.int32)], 1, lineType=cv2.LINE_8)
    for hole in outlines[1:]:
        cv2.fillPoly(canvas, [np.round(hole).astype(np.int32)], 0, lineType=cv2.LINE_8)
    return canvas.astype(bool)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    t = np.clip(xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1) + 0.5, 0, 1)
    image = c0 * (1 - t[..., None]) + c1 * t[..., None]
    blotch = cv2.resize(rng.normal(0, 1, (6, 6, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    image += blotch * rng.uniform(10, 30)
    palette = [c for c, _ in STYLE.values()]
    for _ in range(int(rng.integers(3, 9))):
        canvas = np.zeros((size, size), dtype=np.uint8)
        kind = rng.integers(4)
        cx, cy = rng.uniform(0, size, 2)
        length = rng.uniform(0.15, 0.45) * size
        angle = rng.uniform(0, 180)
        if kind == 0:  # elongated ellipse
            axes = (int(length / 2), int(length / 2 / rng.uniform(2.5, 5)))
            cv2.ellipse(canvas, (int(cx), int(cy)), axes, angle, 0, 360, 1, -1)
        elif kind == 1:  # bar
            cv2.line(
                canvas,
                (int(cx), int(cy)),
                (int(cx + length * math.cos(angle)), int(cy + length * math.sin(angle))),
                1,
                int(rng.integers(3, 7)),
            )
        elif kind == 2:  # thin line
            cv2.line(
                canvas,
                (int(cx), int(cy)),
                (int(cx + 2 * length * math.cos(angle)), int(cy + 2 * length * math.sin(angle))),
                1,
                1,
            )
        else:  # irregular blob
            n = int(rng.integers(6, 10))
            t = np.sort(rng.uniform(0, 2 * math.pi, n))
            radius = rng.uniform(0.3, 1.0, n) * length / 2
            pts = np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)
            cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
        base = palette[int(rng.integers(len(palette)))] if rng.random() < 0.5 else tuple(rng.uniform(30, 230, 3))
        tex = texture(rng, TEXTURES[int(rng.integers(len(TEXTURES)))], jitter_colour(rng, base), size)
        image = np.where(canvas.astype(bool)[..., None], tex, image)
    return image
