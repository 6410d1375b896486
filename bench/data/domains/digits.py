"""digits: Caltech-101 stand-in. scikit-learn's real handwritten digits (8x8, 10 classes),
upscaled, tinted and placed on a random background: the one domain with real, not drawn, shapes.

It picks images from a pool rather than drawing labels, so the label is the picked digit's.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from bench.data.domains.primitives import Grid, draw_labelled, hsv


@functools.lru_cache(maxsize=1)
def _sk_digits():
    from sklearn.datasets import load_digits  # lazy: only this domain needs scikit-learn

    return load_digits()


def _draw(j: int, rng: np.random.Generator, g: Grid) -> np.ndarray:
    glyph = np.asarray(Image.fromarray((_sk_digits().images[j] / 16 * 255).astype(np.uint8)).resize(
        (g.size, g.size), Image.BILINEAR), np.float32)[..., None] / 255
    bg = rng.uniform(0.0, 0.3, 3).astype(np.float32)
    fg = hsv(rng.uniform(), v=1.0)
    return bg * (1 - glyph) + fg * glyph


def generate(n: int, rng: np.random.Generator, size: int):
    digits = _sk_digits()
    images, pick = draw_labelled(n, rng, size, len(digits.target), _draw, noise=0.02)
    return images, digits.target[pick].astype(np.int64)
