"""faces: CelebA stand-in. A centred frontal face (skin ellipse, hair on top, two eyes, a mouth)
on a plain background; class = hair colour (5) x hair length (short or long). Skin tone,
background colour, face position and scale vary per image."""

from __future__ import annotations

import numpy as np

from bench.data.domains.primitives import Grid, draw_labelled, hsv

# black, brown, blond, red, grey
HAIR = [hsv(0.0, 0.0, 0.1), hsv(0.07, 0.7, 0.35), hsv(0.12, 0.6, 0.85), hsv(0.04, 0.8, 0.6),
        hsv(0.0, 0.0, 0.7)]


def _draw(y: int, rng: np.random.Generator, g: Grid) -> np.ndarray:
    yy, xx = g
    colour, long_hair = divmod(y, 2)
    img = g.fill(hsv(rng.uniform(), rng.uniform(0.1, 0.5), rng.uniform(0.5, 0.95)))
    s = rng.uniform(0.85, 1.1)
    cy, cx = rng.uniform(0.5, 0.58), rng.uniform(0.42, 0.58)
    ry, rx = 0.32 * s, 0.24 * s
    hair = HAIR[colour] * rng.uniform(0.8, 1.1)
    img[g.ellipse(cy - 0.08 * s, cx, ry, rx + 0.05)] = hair  # crown
    if long_hair:
        img[(np.abs(xx - cx) < rx + 0.07) & (yy > cy - 0.1) & (yy < cy + ry + 0.1)] = hair
    face = g.ellipse(cy, cx, ry, rx) & (yy > cy - 0.45 * ry)  # fringe covers the forehead
    img[face] = hsv(rng.uniform(0.04, 0.09), rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.95))
    for ex in (cx - 0.1 * s, cx + 0.1 * s):
        img[g.disk(cy - 0.04 * s, ex, 0.06 * s)] = 0.1
    img[(np.abs(yy - cy - 0.16 * s) < 0.035) & (np.abs(xx - cx) < 0.08 * s)] = hsv(0.98, 0.6, 0.55)
    return img


def generate(n: int, rng: np.random.Generator, size: int):
    return draw_labelled(n, rng, size, 10, _draw)
