"""plates: Food-101 stand-in. A plate holding 'food' dots; class = food hue x portion size."""

from __future__ import annotations

import numpy as np

from bench.data.domains.primitives import Grid, draw_labelled, hsv


def _draw(y: int, rng: np.random.Generator, g: Grid) -> np.ndarray:
    hue, portion = divmod(y, 2)
    img = g.fill(hsv(0.08, 0.3, 0.45))
    cy, cx = rng.uniform(0.45, 0.55, 2)
    img[g.disk(cy, cx, 0.4)] = 0.92
    for _ in range(3 + 4 * portion):
        py, px = cy + rng.normal(0, 0.12), cx + rng.normal(0, 0.12)
        img[g.disk(py, px, rng.uniform(0.05, 0.09))] = hsv(hue / 5 + 0.02, v=0.8)
    return img


def generate(n: int, rng: np.random.Generator, size: int):
    return draw_labelled(n, rng, size, 10, _draw)
