"""birds: CUB-200 stand-in. A bird (body ellipse + head) on a branch; class = body hue x head hue."""

from __future__ import annotations

import numpy as np

from bench.data.domains.primitives import Grid, draw_labelled, hsv


def _draw(y: int, rng: np.random.Generator, g: Grid) -> np.ndarray:
    yy, xx = g
    body, head = divmod(y, 3)
    img = g.fill(hsv(0.55, 0.25, 0.85))
    img[np.abs(yy - 0.8) < 0.04] = hsv(0.08, 0.6, 0.35)  # branch
    cy, cx = rng.uniform(0.5, 0.6), rng.uniform(0.4, 0.6)
    img[g.ellipse(cy, cx, 0.16, 0.26)] = hsv(body / 4)
    hx = cx + (0.22 if rng.uniform() < 0.5 else -0.22)
    # Not g.disk(cy - 0.14, ...): (yy - cy + 0.14) rounds differently, and the bytes are pinned.
    img[(yy - cy + 0.14) ** 2 + (xx - hx) ** 2 < 0.1**2] = hsv(0.15 + head / 3, v=0.7)
    return img


def generate(n: int, rng: np.random.Generator, size: int):
    return draw_labelled(n, rng, size, 12, _draw)
