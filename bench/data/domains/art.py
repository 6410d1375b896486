"""art: ArtBench-10 stand-in. Ten 'styles' of abstract two-colour texture; class = style."""

from __future__ import annotations

import numpy as np

from bench.data.domains.primitives import Grid, draw_labelled, hsv


def _draw(y: int, rng: np.random.Generator, g: Grid) -> np.ndarray:
    yy, xx = g
    size = g.size
    a, b = hsv(rng.uniform()), hsv(rng.uniform())
    f, ph = rng.uniform(2, 4), rng.uniform(0, 2 * np.pi)
    th = rng.uniform(0, np.pi)
    u = np.cos(th) * xx + np.sin(th) * yy
    # Every style is evaluated (two of them draw from rng), then one is picked: the draws of all
    # ten happen for every image, whatever its class, and the pinned bytes depend on that.
    pattern = [
        np.sin(2 * np.pi * f * u + ph) > 0,                           # stripes
        (np.floor(xx * f) + np.floor(yy * f)) % 2 == 0,              # checker
        np.sin(2 * np.pi * f * xx + ph) * np.sin(2 * np.pi * f * yy) > 0.3,  # dots
        u > 0.5,                                                      # colour field
        np.sqrt((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * f % 1 > 0.5,     # concentric
        rng.uniform(size=(size, size)) > 0.5,                         # pointillism
        np.abs(xx - yy) < 0.15,                                       # diagonal
        (xx > 0.3) & (xx < 0.7) & (yy > 0.3) & (yy < 0.7),            # square motif
        np.sin(2 * np.pi * (f * xx + np.sin(2 * np.pi * yy))) > 0,    # waves
        rng.uniform(size=(size // 4, size // 4)).repeat(4, 0).repeat(4, 1) > 0.5,  # blocks
    ][y]
    return np.where(pattern[..., None], a, b)


def generate(n: int, rng: np.random.Generator, size: int):
    return draw_labelled(n, rng, size, 10, _draw, noise=0.02)
