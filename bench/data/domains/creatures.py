"""creatures: Pokemon stand-in. A saturated blob creature (body ellipse, pale belly, big eyes)
with appendages on a white background; class = appendage kind (pointed ears, round ears, horns,
back spikes) x body shape (wide or tall). Hue, accent colour, size and position vary per image."""

from __future__ import annotations

import numpy as np

from bench.data.domains.primitives import Grid, draw_labelled, hsv, shape_mask


def _draw(y: int, rng: np.random.Generator, g: Grid) -> np.ndarray:
    yy, xx = g
    kind, tall = divmod(y, 2)
    img = g.fill(np.full(3, rng.uniform(0.94, 1.0), np.float32))
    hue, s = rng.uniform(), rng.uniform(0.85, 1.1)
    accent = hsv(hue + rng.uniform(0.3, 0.7), 0.9, 0.85)
    cy, cx = rng.uniform(0.56, 0.64), rng.uniform(0.42, 0.58)
    ry, rx = (0.3 * s, 0.22 * s) if tall else (0.24 * s, 0.31 * s)
    top = cy - 0.85 * ry
    if kind == 3:  # a row of spikes along the back
        for dx in (-0.5, 0.0, 0.5):
            img[shape_mask(2, yy, xx, top, cx + dx * rx, 0.12 * s)] = accent
    else:  # a pair: pointed ears, round ears, horns
        for side in (-1, 1):
            ex = cx + side * 0.6 * rx
            m = [shape_mask(2, yy, xx, top - 0.04, ex, 0.13 * s, -0.3 * side),
                 g.disk(top, ex, 0.1 * s),
                 shape_mask(6, yy, xx, top - 0.06, ex, 0.12 * s, 0.4 * side)][kind]
            img[m] = accent
    img[g.ellipse(cy, cx, ry, rx)] = hsv(hue, 0.9, 0.95)
    img[g.ellipse(cy + 0.5 * ry, cx, 0.45 * ry, 0.6 * rx)] = hsv(hue, 0.35, 1.0)  # belly
    for ex in (cx - 0.45 * rx, cx + 0.45 * rx):
        img[g.disk(cy - 0.2 * ry, ex, 0.09 * s)] = 1.0
        img[g.disk(cy - 0.2 * ry, ex, 0.055 * s)] = 0.05
    return img


def generate(n: int, rng: np.random.Generator, size: int):
    return draw_labelled(n, rng, size, 8, _draw)
