"""scenes: SUN397 stand-in. Horizon scenes; class = sky colour x ground colour."""

from __future__ import annotations

import numpy as np

from bench.data.domains.primitives import Grid, draw_labelled, hsv


def _draw(y: int, rng: np.random.Generator, g: Grid) -> np.ndarray:
    yy, xx = g
    sky, ground = divmod(y, 3)
    horizon = rng.uniform(0.35, 0.65) + 0.1 * np.sin(2 * np.pi * (xx * rng.uniform(0.5, 2) + rng.uniform()))
    top = hsv(0.55 + 0.1 * sky, 0.6, 0.9) * (1 - 0.4 * yy[..., None])
    bottom = hsv(0.1 + 0.15 * ground, 0.7, 0.55) * (0.6 + 0.4 * yy[..., None])
    return np.where((yy < horizon)[..., None], top, bottom)


def generate(n: int, rng: np.random.Generator, size: int):
    return draw_labelled(n, rng, size, 12, _draw, noise=0.04)
