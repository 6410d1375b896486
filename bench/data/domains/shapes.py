"""source-shapes: the tiny pre-training domain the committed tiny backbone was trained on.

64 classes = 8 shapes x 8 hues on textured backgrounds, so the eight transfer domains share
low-level statistics with it without sharing classes.
"""

from __future__ import annotations

import numpy as np

from bench.data.domains.primitives import Grid, draw_labelled, hsv, shape_mask


def _draw(y: int, rng: np.random.Generator, g: Grid) -> np.ndarray:
    yy, xx = g
    shape, hue = divmod(y, 8)
    bg = rng.uniform(0.05, 0.35) * np.ones(3, np.float32) + rng.uniform(-0.05, 0.05, 3).astype(np.float32)
    img = g.fill(bg)
    img += (0.08 * np.sin(2 * np.pi * (rng.uniform(1, 3) * xx + rng.uniform(0, 1))))[..., None]
    m = shape_mask(shape, yy, xx, rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65),
                   rng.uniform(0.22, 0.34), rng.uniform(-0.3, 0.3))
    img[m] = hsv(hue / 8 + rng.uniform(-0.02, 0.02), v=rng.uniform(0.8, 1.0))
    return img


def generate(n: int, rng: np.random.Generator, size: int):
    return draw_labelled(n, rng, size, 64, _draw)
