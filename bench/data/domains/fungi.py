"""fungi: DF20-Mini stand-in. Mushrooms; class = cap hue x cap shape (flat or domed)."""

from __future__ import annotations

import numpy as np

from bench.data.domains.primitives import Grid, draw_labelled, hsv


def _draw(y: int, rng: np.random.Generator, g: Grid) -> np.ndarray:
    yy, xx = g
    hue, domed = divmod(y, 2)
    img = g.fill(hsv(0.3, 0.5, 0.3))
    cx = rng.uniform(0.4, 0.6)
    img[(np.abs(xx - cx) < 0.07) & (yy > 0.45) & (yy < 0.9)] = 0.9  # stem
    cap = g.ellipse(0.45, cx, 0.3 if domed else 0.15, 0.32)
    img[cap & (yy < 0.47)] = hsv(hue / 5, v=rng.uniform(0.7, 1.0))
    return img


def generate(n: int, rng: np.random.Generator, size: int):
    return draw_labelled(n, rng, size, 10, _draw)
