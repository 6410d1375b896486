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


def _scene(rng) -> dict:
    """One scene: horizon, sky and ground, and where (foot, cx) and how big (r) the object stands."""
    return {"horizon": rng.uniform(0.3, 0.45), "sky": SKIES[rng.choice(list(SKIES))],
            "ground": GROUNDS[rng.choice(list(GROUNDS))], "foot": rng.uniform(0.75, 0.95),
            "r": rng.uniform(0.2, 0.26), "cx": rng.uniform(0.3, 0.7)}


def _draw(look: str | None, scene: dict, rng, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The scene with the subject of look `look` in it (None: the empty scene), and its mask."""
    yy, xx = grid(size)
    (sh, ss, sv), (gh, gs, gv) = scene["sky"], scene["ground"]
    ground = yy >= scene["horizon"]
    img = np.where(ground[..., None], hsv(gh, gs, gv) * (0.7 + 0.3 * yy[..., None]),
                   hsv(sh, ss, sv) * (1 - 0.3 * yy[..., None]))
    foot, r, cx = scene["foot"], scene["r"], scene["cx"]
    mask = np.zeros(yy.shape, dtype=bool)
    if look is not None:
        kind, c1, c2 = LOOKS[look]
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
        img = np.where(mask[..., None], paint, img)
    img = img + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), mask


def render_subject(look: str, n: int, seed: int, size: int, masks: bool = False):
    """`n` images (uint8, n x size x size x 3) of the subject with look `look`, each in its own scene;
    with `masks`, also the subject's masks (n x size x size, bool)."""
    if look not in LOOKS:
        raise ValueError(f"unknown subject look {look!r} (known: {', '.join(LOOKS)})")
    rng = np.random.default_rng([seed, list(LOOKS).index(look)])
    out, where = [], []
    for _ in range(n):
        img, mask = _draw(look, _scene(rng), rng, size)
        out.append(img)
        where.append(mask)
    return (np.stack(out), np.stack(where)) if masks else np.stack(out)


def render_scenes(looks: list[str | None], n: int, seed: int, size: int) -> np.ndarray:
    """For each of `n` scenes (their own seed), the scene with each of `looks` in it at the same
    place (None: the scene without a subject): uint8 (len(looks), n, size, size, 3)."""
    rng = np.random.default_rng([seed, 1000])
    scenes = [_scene(rng) for _ in range(n)]
    return np.stack([np.stack([_draw(look, sc, np.random.default_rng([seed, k, 7]), size)[0]
                               for k, sc in enumerate(scenes)]) for look in looks])


def subject_boxes(masks: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Square boxes (top, left, bottom, right) as fractions of the image, around each mask's
    bounding box, `margin` of its longer side added on every side: where the subject is."""
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        h, w = m.shape
        y0, y1, x0, x1 = ys.min() / h, (ys.max() + 1) / h, xs.min() / w, (xs.max() + 1) / w
        side = max(y1 - y0, x1 - x0) * (1 + 2 * margin)
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        out.append([cy - side / 2, cx - side / 2, cy + side / 2, cx + side / 2])
    return np.asarray(out, dtype=np.float32)


def class_word(look: str) -> str:
    return LOOKS[look][0]
