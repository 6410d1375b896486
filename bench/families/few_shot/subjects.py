"""Procedural personalisation subjects for the tiny few-shot profile (DreamBooth's subjects).

A subject is ONE object with a look the tiny text-to-image source never saw (the layouts it was
pre-trained on, bench/data/layouts.py, paint every object in one flat colour): a checkered ball,
a striped box, a dotted cone. Its images show that same object (same pattern, colours and
proportions) in different scenes (ground, sky, horizon, position, scale), as DreamBooth's 4-6
photos of one backpack do. The class word (`ball`, `box`, `cone`) is in the source vocabulary, so
the class prompt means something to the pre-trained model and prior preservation has a class.
"""

from __future__ import annotations

import numpy as np

from bench.data.domains.primitives import grid, hsv
from bench.data.layouts import GROUNDS, SKIES

# look -> (class word, two colours as hsv triples)
LOOKS = {
    "checker": ("ball", (0.15, 0.9, 0.95), (0.0, 0.0, 0.1)),
    "striped": ("box", (0.85, 0.8, 0.9), (0.0, 0.0, 0.95)),
    "dotted": ("cone", (0.5, 0.9, 0.95), (0.65, 0.8, 0.35)),
}


def _pattern(look: str, yy, xx, cy, cx, r) -> np.ndarray:
    """The two-colour pattern on the object, in its own coordinates (it moves and scales with it)."""
    u, v = (xx - cx) / r, (yy - cy) / r
    if look == "checker":
        return (np.floor(u * 2.5) + np.floor(v * 2.5)) % 2 == 0
    if look == "striped":
        return np.floor((u + v) * 3.0) % 2 == 0
    return ((u * 3.0) % 1.0 - 0.5) ** 2 + ((v * 3.0) % 1.0 - 0.5) ** 2 < 0.08


def render_subject(look: str, n: int, seed: int, size: int) -> np.ndarray:
    """`n` images (uint8, n x size x size x 3) of the subject with look `look`, each in its own scene."""
    if look not in LOOKS:
        raise ValueError(f"unknown subject look {look!r} (known: {', '.join(LOOKS)})")
    kind, c1, c2 = LOOKS[look]
    rng = np.random.default_rng([seed, list(LOOKS).index(look)])
    yy, xx = grid(size)
    out = []
    for _ in range(n):
        horizon = rng.uniform(0.3, 0.45)
        sh, ss, sv = SKIES[rng.choice(list(SKIES))]
        gh, gs, gv = GROUNDS[rng.choice(list(GROUNDS))]
        ground = yy >= horizon
        img = np.where(ground[..., None], hsv(gh, gs, gv) * (0.7 + 0.3 * yy[..., None]),
                       hsv(sh, ss, sv) * (1 - 0.3 * yy[..., None]))
        foot = rng.uniform(0.75, 0.95)
        r = rng.uniform(0.2, 0.26)
        cx = rng.uniform(0.3, 0.7)
        if kind == "ball":
            cy = foot - r
            mask = ((yy - cy) ** 2 + (xx - cx) ** 2) < r**2
        elif kind == "box":
            cy = foot - 0.8 * r
            mask = (np.abs(xx - cx) < r) & (yy > foot - 1.6 * r) & (yy < foot)
        else:
            height = 2.2 * r
            cy = foot - height / 2
            mask = (yy > foot - height) & (yy < foot) & (np.abs(xx - cx) < r * (yy - (foot - height)) / height)
        paint = np.where(_pattern(look, yy, xx, cy, cx, r)[..., None], hsv(*c1), hsv(*c2))
        img = np.where(mask[..., None], paint, img) + rng.normal(0, 0.02, img.shape)
        out.append((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    return np.stack(out)


def class_word(look: str) -> str:
    return LOOKS[look][0]
