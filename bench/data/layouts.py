"""layouts: procedural scenes that come with their exact condition maps (the tiny ControlNet data).

Each scene is a sky over a ground plane that recedes to a horizon, with one to three objects
standing on the ground: balls (hemispherical depth), boxes (flat fronts) and cones (a depth ramp).
Everything a ControlNet condition needs is known by construction:

    segmentation  class per pixel (sky, ground, ball, box, cone), shown in a fixed palette
    depth         inverse depth in [0, 1] (1 = nearest), as MiDaS draws it
    normal        from the depth gradient, RGB-encoded as NormalBAE / ControlNet draw it
    sketch        the outlines of every object and of the horizon (a line drawing, no texture)
    edge          OpenCV Canny (100/200) of the image itself, as ControlNet's canny condition
    caption       "a red ball and a blue box on grass under a blue sky"

The images are shaded and textured (lit balls, ground stripes, noise), so Canny edges differ from
the sketch. The source domain the tiny text-to-image backbone is pre-trained on is the same
generator with another seed: ControlNet training teaches spatial control, not new content.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.data.domains.primitives import grid, hsv

SKY, GROUND, BALL, BOX, CONE = 1, 2, 3, 4, 5
CLASS_NAMES = ("none", "sky", "ground", "ball", "box", "cone")
NUM_CLASSES = len(CLASS_NAMES)
# Segmentation palette (ADE20k-style colour coding of classes), uint8 RGB per class.
PALETTE = np.array([[0, 0, 0], [70, 130, 180], [107, 142, 35], [220, 20, 60], [255, 215, 0], [138, 43, 226]],
                   dtype=np.uint8)
COLOURS = {"red": 0.0, "orange": 0.08, "yellow": 0.15, "green": 0.33, "cyan": 0.5, "blue": 0.62, "purple": 0.78,
           "pink": 0.9}
GROUNDS = {"grass": (0.3, 0.6, 0.55), "sand": (0.11, 0.45, 0.8), "snow": (0.6, 0.05, 0.95), "soil": (0.07, 0.6, 0.4)}
SKIES = {"blue": (0.58, 0.55, 0.95), "grey": (0.6, 0.05, 0.7), "orange": (0.07, 0.6, 0.95)}
OBJECTS = {BALL: "ball", BOX: "box", CONE: "cone"}
# Every word a caption can hold (the tiny tokenizer's vocabulary, in a fixed order).
WORDS = tuple(dict.fromkeys(
    ["a", "and", "on", "under", "sky"] + list(COLOURS) + list(GROUNDS) + list(SKIES) + list(OBJECTS.values())))


@dataclass
class Layouts:
    images: np.ndarray    # uint8 (n, s, s, 3)
    seg: np.ndarray       # uint8 (n, s, s) class ids
    depth: np.ndarray     # float32 (n, s, s) in [0, 1], 1 = near
    sketch: np.ndarray    # bool (n, s, s)
    captions: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def take(self, idx) -> "Layouts":
        idx = np.asarray(idx)
        return Layouts(self.images[idx], self.seg[idx], self.depth[idx], self.sketch[idx],
                       [self.captions[i] for i in idx])


def _scene(rng: np.random.Generator, size: int):
    g = grid(size)
    yy, xx = g
    horizon = rng.uniform(0.3, 0.5)
    sky_name, ground_name = rng.choice(list(SKIES)), rng.choice(list(GROUNDS))
    ground = yy >= horizon
    # Inverse depth: the sky is at infinity (0); the ground comes nearer toward the bottom edge.
    depth = np.where(ground, 0.15 + 0.85 * (yy - horizon) / (1 - horizon), 0.0).astype(np.float32)
    seg = np.where(ground, GROUND, SKY).astype(np.uint8)
    instance = seg.astype(np.int32).copy()
    sh, ss, sv = SKIES[sky_name]
    gh, gs, gv = GROUNDS[ground_name]
    stripes = 0.08 * np.sin(2 * np.pi * (yy - horizon) * rng.uniform(6, 10) / np.maximum(yy - horizon + 0.3, 0.3))
    img = np.where(ground[..., None], hsv(gh, gs, gv) * (0.7 + 0.3 * yy[..., None] + stripes[..., None]),
                   hsv(sh, ss, sv) * (1 - 0.3 * yy[..., None]))
    words = []
    count = rng.integers(1, 4)
    # Far objects first, so nearer ones are painted over them (and occlude them in every map).
    feet = np.sort(rng.uniform(horizon + 0.12, 0.95, count))
    for k, foot in enumerate(feet):
        kind = int(rng.choice(list(OBJECTS)))
        colour = rng.choice(list(COLOURS))
        near = 0.15 + 0.85 * (foot - horizon) / (1 - horizon)
        r = (0.07 + 0.12 * (foot - horizon) / (1 - horizon)) * rng.uniform(0.9, 1.3)
        cx = rng.uniform(0.15, 0.85)
        base = hsv(COLOURS[colour], 0.8, 0.9)
        if kind == BALL:
            cy = foot - r
            d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2
            mask = d2 < 1
            bulge = np.sqrt(np.clip(1 - d2, 0, 1))
            obj_depth = near + 0.1 * bulge
            light = 0.55 + 0.45 * np.clip(bulge - 0.5 * (yy - cy) / r - 0.3 * (xx - cx) / r, 0, 1)
            paint = base * light[..., None]
        elif kind == BOX:
            mask = (np.abs(xx - cx) < r) & (yy > foot - 1.6 * r) & (yy < foot)
            obj_depth = np.full_like(depth, near + 0.05)
            paint = base * (0.75 + 0.25 * (xx[..., None] > cx))
        else:
            height = 2.2 * r
            half = r * (yy - (foot - height)) / height
            mask = (yy > foot - height) & (yy < foot) & (np.abs(xx - cx) < half)
            obj_depth = near + 0.08 * (1 - np.abs(xx - cx) / np.maximum(half, 1e-6))
            paint = base * (0.6 + 0.4 * (xx[..., None] < cx))
        img = np.where(mask[..., None], paint, img)
        depth = np.where(mask, obj_depth, depth).astype(np.float32)
        seg = np.where(mask, kind, seg).astype(np.uint8)
        instance = np.where(mask, 10 + k, instance)
        words.append(f"a {colour} {OBJECTS[kind]}")
    img = img + rng.normal(0, 0.02, img.shape)
    image = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    # The sketch: every boundary between instances (objects, ground, sky), one pixel wide.
    sketch = np.zeros((size, size), bool)
    sketch[:, 1:] |= instance[:, 1:] != instance[:, :-1]
    sketch[1:, :] |= instance[1:, :] != instance[:-1, :]
    caption = " and ".join(words) + f" on {ground_name} under a {sky_name} sky"
    return image, seg, np.clip(depth, 0, 1), sketch, caption


def generate_layouts(n: int, rng: np.random.Generator, size: int) -> Layouts:
    parts = [_scene(rng, size) for _ in range(n)]
    return Layouts(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]),
                   np.stack([p[2] for p in parts]), np.stack([p[3] for p in parts]), [p[4] for p in parts])


# -- condition maps, as images in [0, 1] (n, 3, s, s): what a ControlNet is fed and scored on --------

def canny(images: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """OpenCV Canny on the grey image (ControlNet's canny annotator), bool (n, s, s)."""
    import cv2

    return np.stack([cv2.Canny(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), low, high) > 0 for im in images])


def normals_from_depth(depth: np.ndarray, strength: float = 4.0) -> np.ndarray:
    """Surface normals of an inverse-depth map, float (n, 3, s, s) in [0, 1] (x right, y up, z toward
    the viewer; (0.5, 0.5, 1) faces the camera)."""
    size = depth.shape[-1]
    dy, dx = np.gradient(depth * size / strength, axis=(1, 2))
    n = np.stack([-dx, dy, np.ones_like(depth)], 1)
    n = n / np.linalg.norm(n, axis=1, keepdims=True)
    return ((n + 1) / 2).astype(np.float32)


def seg_to_image(seg: np.ndarray) -> np.ndarray:
    return (PALETTE[seg].astype(np.float32) / 255).transpose(0, 3, 1, 2)


def binary_to_image(mask: np.ndarray) -> np.ndarray:
    return np.repeat(mask.astype(np.float32)[:, None], 3, 1)


def condition_maps(name: str, layouts: Layouts) -> np.ndarray:
    """The exact condition `name` of each scene, float32 (n, 3, s, s) in [0, 1]."""
    if name == "edge":
        return binary_to_image(canny(layouts.images))
    if name == "sketch":
        return binary_to_image(layouts.sketch)
    if name == "depth":
        return np.repeat(layouts.depth[:, None], 3, 1)
    if name == "normal":
        return normals_from_depth(layouts.depth)
    if name == "segmentation":
        return seg_to_image(layouts.seg)
    raise KeyError(name)


CONDITIONS = ("edge", "sketch", "depth", "normal", "segmentation")
