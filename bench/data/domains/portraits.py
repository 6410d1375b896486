"""portraits: MetFaces stand-in. A painted portrait: a warm, muted, side-lit face over dark
clothing on a dark varnished background, with blotchy paint texture and a vignette; class =
background tone (brown or olive) x hair (black, auburn, grey, white cap). Pose, light, palette
and texture vary per image."""

from __future__ import annotations

import numpy as np

from bench.data.domains.primitives import Grid, draw_labelled, hsv

BACKGROUND = [hsv(0.07, 0.65, 0.32), hsv(0.17, 0.55, 0.3)]
HAIR = [hsv(0.07, 0.5, 0.12), hsv(0.05, 0.65, 0.32), hsv(0.1, 0.2, 0.5), hsv(0.11, 0.1, 0.82)]


def _draw(y: int, rng: np.random.Generator, g: Grid) -> np.ndarray:
    yy, xx = g
    bg, hair = divmod(y, 4)
    img = g.fill(BACKGROUND[bg] * rng.uniform(0.7, 1.1))
    s = rng.uniform(0.85, 1.05)
    cy, cx = rng.uniform(0.42, 0.48), rng.uniform(0.42, 0.58)
    ry, rx = 0.26 * s, 0.2 * s
    img[g.ellipse(1.0, cx, 0.33, 0.45 * s)] = hsv(rng.uniform(), 0.4, rng.uniform(0.06, 0.18))
    img[g.ellipse(cy - 0.05 * s, cx, ry + 0.03, rx + 0.04)] = HAIR[hair] * rng.uniform(0.8, 1.1)
    skin = hsv(rng.uniform(0.05, 0.09), rng.uniform(0.3, 0.45), rng.uniform(0.6, 0.8))
    img[(np.abs(xx - cx) < 0.06 * s) & (yy > cy) & (yy < cy + ry + 0.08)] = skin * 0.8  # neck
    face = g.ellipse(cy, cx, ry, rx) & (yy > cy - 0.55 * ry)
    light = 1 - 0.25 * rng.choice([-1, 1]) * (xx - cx) / rx  # lit from one side
    img[face] = skin * light[face][:, None]
    for ex in (cx - 0.08 * s, cx + 0.08 * s):
        img[g.disk(cy - 0.03, ex, 0.045)] = skin * 0.45
    c = rng.normal(0, 1, (9, 9)).astype(np.float32)  # paint blotches: bilinear 8x8 noise
    i, j = (yy * 8).astype(int), (xx * 8).astype(int)
    a, b = yy * 8 - i, xx * 8 - j
    tex = ((c[i, j] * (1 - a) + c[i + 1, j] * a) * (1 - b)
           + (c[i, j + 1] * (1 - a) + c[i + 1, j + 1] * a) * b)
    img *= (1 + 0.1 * tex)[..., None]
    img *= np.clip(1 - 1.3 * ((yy - 0.45) ** 2 + (xx - 0.5) ** 2), 0, 1)[..., None]  # vignette
    return img * np.array([1.0, 0.95, 0.8], np.float32)  # yellowed varnish


def generate(n: int, rng: np.random.Generator, size: int):
    return draw_labelled(n, rng, size, 8, _draw, noise=0.02)
