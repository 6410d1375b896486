"""flowers: Oxford Flowers stand-in. Radial petals; class = petal count (5 or 8) x hue."""

from __future__ import annotations

import numpy as np

from bench.data.domains.primitives import Grid, draw_labelled, hsv


def _draw(y: int, rng: np.random.Generator, g: Grid) -> np.ndarray:
    yy, xx = g
    petals, hue = divmod(y, 5)
    k = 5 if petals == 0 else 8
    img = g.fill(hsv(0.33, 0.6, 0.35))
    cy, cx = rng.uniform(0.42, 0.58, 2)
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    ang = np.arctan2(yy - cy, xx - cx) + rng.uniform(0, 2 * np.pi)
    img[r < 0.38 * (0.55 + 0.45 * np.abs(np.cos(k / 2 * ang)))] = hsv(hue / 5 + 0.9)
    img[r < 0.1] = hsv(0.14, 0.9, 0.9)  # centre
    return img


def generate(n: int, rng: np.random.Generator, size: int):
    return draw_labelled(n, rng, size, 10, _draw)
