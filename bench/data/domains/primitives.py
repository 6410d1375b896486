"""Drawing primitives shared by the procedural domains.

Committed results are keyed by the exact bytes each domain produces (tests/test_data_domains.py
pins them), and those bytes follow from the order of the draws on one seeded numpy Generator and
from the float arithmetic. So the helpers here factor out only code that draws nothing, or draws
in the order every domain always did: `draw_labelled` draws all labels first, then per image
whatever the domain's `draw` asks for, then that image's finishing noise. Changing the order of
draws, or how an expression groups its float operations, here or in a domain, moves the bytes.
"""

from __future__ import annotations

import colorsys
from typing import Callable, NamedTuple

import numpy as np

# name -> fn(n, rng, size) -> (uint8 images (n, size, size, 3), int64 labels (n,))
GeneratorFn = Callable[[int, np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


class Grid(NamedTuple):
    """Pixel-centre coordinates in (0, 1), float32 (size, size): `yy` runs down, `xx` right.
    Unpacks as `yy, xx = g`; masks below are boolean (size, size)."""

    yy: np.ndarray
    xx: np.ndarray

    @property
    def size(self) -> int:
        return self.yy.shape[0]

    def fill(self, colour) -> np.ndarray:
        """A writable (size, size, 3) float image of one colour."""
        return np.broadcast_to(colour, (self.size, self.size, 3)).copy()

    def disk(self, cy, cx, r):
        return (self.yy - cy) ** 2 + (self.xx - cx) ** 2 < r**2

    def ellipse(self, cy, cx, ry, rx):
        return ((self.yy - cy) / ry) ** 2 + ((self.xx - cx) / rx) ** 2 < 1


# Each domain's per-image painter: (label, rng, grid) -> float image (size, size, 3) in ~[0, 1].
Draw = Callable[[int, np.random.Generator, Grid], np.ndarray]


def grid(size: int) -> Grid:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return Grid((yy + 0.5) / size, (xx + 0.5) / size)


def hsv(h: float, s: float = 0.85, v: float = 0.95) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def shape_mask(kind: int, yy, xx, cy, cx, r, angle=0.0):
    """One of eight shapes (0 disk, 1 square, 2 triangle, 3 cross, 4 ring, 5 and 6 bars,
    7 diamond) of radius `r` centred at (cy, cx), rotated by `angle`."""
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    ry, rx = c * dy - s * dx, s * dy + c * dx
    if kind == 0:  # disk
        return (dy**2 + dx**2) < r**2
    if kind == 1:  # square
        return (np.abs(ry) < r * 0.85) & (np.abs(rx) < r * 0.85)
    if kind == 2:  # triangle
        return (ry < r * 0.7) & (ry > -r * 0.9 + 1.8 * np.abs(rx))
    if kind == 3:  # cross
        return ((np.abs(ry) < r * 0.3) & (np.abs(rx) < r)) | ((np.abs(rx) < r * 0.3) & (np.abs(ry) < r))
    if kind == 4:  # ring
        d = np.sqrt(dy**2 + dx**2)
        return (d < r) & (d > r * 0.55)
    if kind == 5:  # horizontal bar
        return (np.abs(ry) < r * 0.35) & (np.abs(rx) < r * 1.1)
    if kind == 6:  # vertical bar
        return (np.abs(rx) < r * 0.35) & (np.abs(ry) < r * 1.1)
    return (np.abs(ry) + np.abs(rx)) < r  # diamond


def finish(img: np.ndarray, rng: np.random.Generator, noise: float = 0.03) -> np.ndarray:
    """Add Gaussian pixel noise, clip to [0, 1] and round to uint8."""
    img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def draw_labelled(n: int, rng: np.random.Generator, size: int, num_classes: int, draw: Draw,
                  noise: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """The loop every domain shares: draw n labels uniformly from [0, num_classes), then paint
    each image with `draw(label, rng, grid)` and `finish` it with `noise`. A domain that picks
    from a pool (digits) passes the pool size and maps the returned indices to labels itself."""
    g = grid(size)
    labels = rng.integers(0, num_classes, n)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, y in enumerate(labels):
        out[i] = finish(draw(int(y), rng, g), rng, noise)
    return out, labels
