"""cars: Stanford Cars stand-in. A car (body, cabin, wheels); class = body hue x body length."""

from __future__ import annotations

import numpy as np

from bench.data.domains.primitives import Grid, draw_labelled, hsv


def _draw(y: int, rng: np.random.Generator, g: Grid) -> np.ndarray:
    yy, xx = g
    hue, long = divmod(y, 2)
    img = g.fill(hsv(0.0, 0.0, 0.6))
    img[yy > 0.75] = 0.3  # road
    cx, half = rng.uniform(0.45, 0.55), 0.42 if long else 0.3
    img[(np.abs(xx - cx) < half) & (yy > 0.5) & (yy < 0.72)] = hsv(hue / 5)
    img[(np.abs(xx - cx) < half * 0.55) & (yy > 0.36) & (yy <= 0.5)] = hsv(hue / 5, 0.4, 0.9)
    for wx in (cx - half * 0.6, cx + half * 0.6):
        img[g.disk(0.74, wx, 0.09)] = 0.05
    return img


def generate(n: int, rng: np.random.Generator, size: int):
    return draw_labelled(n, rng, size, 10, _draw)
