"""Datasets: hub datasets (paper profile) and deterministic synthetic stand-ins (tiny profile).

Both end as the same thing, an `ImageSet` of uint8 images (N, H, W, 3) and int64 labels, so the
trainer and the metrics never know which profile they run. Hub datasets go through
`datasets.load_dataset` (which also serves local `imagefolder` data), are centre-cropped and
resized once (ADM-style, as DiT and Diff-Tuning do), and cached as .npy keyed by everything that
defines their content.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from bench.errors import BenchError, unknown
from bench.paths import cache_dir
from bench.spec import DatasetSpec, HubDataset, SyntheticDataset, canonical_hash


@dataclass
class ImageSet:
    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def sha256(self) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(np.ascontiguousarray(self.labels).astype(np.int64).tobytes())
        return h.hexdigest()

    def tensor(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Images as float in [-1, 1], NCHW."""
        arr = self.images if index is None else self.images[index.numpy()]
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# ----------------------------------------------------------------------------------------------
# Synthetic stand-ins. Each generator draws class-conditional images from a seeded numpy Generator,
# so the same (generator, n, seed, size) always gives the same bytes.

def _grid(size: int):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return (yy + 0.5) / size, (xx + 0.5) / size


def _hsv(h: float, s: float = 0.85, v: float = 0.95) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _shape_mask(kind: int, yy, xx, cy, cx, r, angle=0.0):
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


def _finish(img: np.ndarray, rng: np.random.Generator, noise: float = 0.03) -> np.ndarray:
    img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def gen_source_shapes(n: int, rng: np.random.Generator, size: int):
    """The tiny pre-training domain: 64 classes = 8 shapes x 8 hues on textured backgrounds."""
    yy, xx = _grid(size)
    labels = rng.integers(0, 64, n)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, y in enumerate(labels):
        shape, hue = divmod(int(y), 8)
        bg = rng.uniform(0.05, 0.35) * np.ones(3, np.float32) + rng.uniform(-0.05, 0.05, 3).astype(np.float32)
        img = np.broadcast_to(bg, (size, size, 3)).copy()
        img += (0.08 * np.sin(2 * np.pi * (rng.uniform(1, 3) * xx + rng.uniform(0, 1))))[..., None]
        m = _shape_mask(shape, yy, xx, rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65),
                        rng.uniform(0.22, 0.34), rng.uniform(-0.3, 0.3))
        img[m] = _hsv(hue / 8 + rng.uniform(-0.02, 0.02), v=rng.uniform(0.8, 1.0))
        out[i] = _finish(img, rng)
    return out, labels


def gen_plates(n, rng, size):
    """Food-101 stand-in: a plate holding 'food' dots; class = food hue x portion size."""
    yy, xx = _grid(size)
    labels = rng.integers(0, 10, n)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, y in enumerate(labels):
        hue, portion = divmod(int(y), 2)
        img = np.broadcast_to(_hsv(0.08, 0.3, 0.45), (size, size, 3)).copy()
        cy, cx = rng.uniform(0.45, 0.55, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 0.4**2] = 0.92
        for _ in range(3 + 4 * portion):
            py, px = cy + rng.normal(0, 0.12), cx + rng.normal(0, 0.12)
            img[(yy - py) ** 2 + (xx - px) ** 2 < rng.uniform(0.05, 0.09) ** 2] = _hsv(hue / 5 + 0.02, v=0.8)
        out[i] = _finish(img, rng)
    return out, labels


def gen_scenes(n, rng, size):
    """SUN397 stand-in: horizon scenes; class = sky colour x ground colour."""
    yy, xx = _grid(size)
    labels = rng.integers(0, 12, n)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, y in enumerate(labels):
        sky, ground = divmod(int(y), 3)
        horizon = rng.uniform(0.35, 0.65) + 0.1 * np.sin(2 * np.pi * (xx * rng.uniform(0.5, 2) + rng.uniform()))
        top = _hsv(0.55 + 0.1 * sky, 0.6, 0.9) * (1 - 0.4 * yy[..., None])
        bottom = _hsv(0.1 + 0.15 * ground, 0.7, 0.55) * (0.6 + 0.4 * yy[..., None])
        img = np.where((yy < horizon)[..., None], top, bottom)
        out[i] = _finish(img, rng, 0.04)
    return out, labels


def gen_fungi(n, rng, size):
    """DF20M stand-in: mushrooms; class = cap hue x cap shape (flat or domed)."""
    yy, xx = _grid(size)
    labels = rng.integers(0, 10, n)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, y in enumerate(labels):
        hue, domed = divmod(int(y), 2)
        img = np.broadcast_to(_hsv(0.3, 0.5, 0.3), (size, size, 3)).copy()
        cx = rng.uniform(0.4, 0.6)
        img[(np.abs(xx - cx) < 0.07) & (yy > 0.45) & (yy < 0.9)] = 0.9
        h = 0.3 if domed else 0.15
        cap = ((xx - cx) / 0.32) ** 2 + ((yy - 0.45) / h) ** 2 < 1
        img[cap & (yy < 0.47)] = _hsv(hue / 5, v=rng.uniform(0.7, 1.0))
        out[i] = _finish(img, rng)
    return out, labels


@functools.lru_cache(maxsize=1)
def _sk_digits():
    from sklearn.datasets import load_digits

    return load_digits()


def gen_digits(n, rng, size):
    """Caltech-101 stand-in: scikit-learn's real handwritten digits (8x8, 10 classes), upscaled,
    tinted and placed on a random background."""
    digits = _sk_digits()
    pick = rng.integers(0, len(digits.target), n)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, j in enumerate(pick):
        glyph = np.asarray(Image.fromarray((digits.images[j] / 16 * 255).astype(np.uint8)).resize(
            (size, size), Image.BILINEAR), np.float32)[..., None] / 255
        bg = rng.uniform(0.0, 0.3, 3).astype(np.float32)
        fg = _hsv(rng.uniform(), v=1.0)
        out[i] = _finish(bg * (1 - glyph) + fg * glyph, rng, 0.02)
    return out, digits.target[pick].astype(np.int64)


def gen_birds(n, rng, size):
    """CUB-200 stand-in: a bird (body ellipse + head) on a branch; class = body hue x head hue."""
    yy, xx = _grid(size)
    labels = rng.integers(0, 12, n)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, y in enumerate(labels):
        body, head = divmod(int(y), 3)
        img = np.broadcast_to(_hsv(0.55, 0.25, 0.85), (size, size, 3)).copy()
        img[np.abs(yy - 0.8) < 0.04] = _hsv(0.08, 0.6, 0.35)
        cy, cx = rng.uniform(0.5, 0.6), rng.uniform(0.4, 0.6)
        img[((yy - cy) / 0.16) ** 2 + ((xx - cx) / 0.26) ** 2 < 1] = _hsv(body / 4)
        hx = cx + (0.22 if rng.uniform() < 0.5 else -0.22)
        img[(yy - cy + 0.14) ** 2 + (xx - hx) ** 2 < 0.1**2] = _hsv(0.15 + head / 3, v=0.7)
        out[i] = _finish(img, rng)
    return out, labels


def gen_art(n, rng, size):
    """ArtBench-10 stand-in: ten 'styles' of abstract texture."""
    yy, xx = _grid(size)
    labels = rng.integers(0, 10, n)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, y in enumerate(labels):
        y = int(y)
        a, b = _hsv(rng.uniform()), _hsv(rng.uniform())
        f, ph = rng.uniform(2, 4), rng.uniform(0, 2 * np.pi)
        th = rng.uniform(0, np.pi)
        u = np.cos(th) * xx + np.sin(th) * yy
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
        img = np.where(pattern[..., None], a, b)
        out[i] = _finish(img, rng, 0.02)
    return out, labels


def gen_flowers(n, rng, size):
    """Oxford Flowers stand-in: radial petals; class = petal count x hue."""
    yy, xx = _grid(size)
    labels = rng.integers(0, 10, n)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, y in enumerate(labels):
        petals, hue = divmod(int(y), 5)
        k = 5 if petals == 0 else 8
        img = np.broadcast_to(_hsv(0.33, 0.6, 0.35), (size, size, 3)).copy()
        cy, cx = rng.uniform(0.42, 0.58, 2)
        r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        ang = np.arctan2(yy - cy, xx - cx) + rng.uniform(0, 2 * np.pi)
        img[r < 0.38 * (0.55 + 0.45 * np.abs(np.cos(k / 2 * ang)))] = _hsv(hue / 5 + 0.9)
        img[r < 0.1] = _hsv(0.14, 0.9, 0.9)
        out[i] = _finish(img, rng)
    return out, labels


def gen_cars(n, rng, size):
    """Stanford Cars stand-in: a car (body, cabin, wheels); class = body hue x body length."""
    yy, xx = _grid(size)
    labels = rng.integers(0, 10, n)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, y in enumerate(labels):
        hue, long = divmod(int(y), 2)
        img = np.broadcast_to(_hsv(0.0, 0.0, 0.6), (size, size, 3)).copy()
        img[yy > 0.75] = 0.3
        cx, half = rng.uniform(0.45, 0.55), 0.42 if long else 0.3
        img[(np.abs(xx - cx) < half) & (yy > 0.5) & (yy < 0.72)] = _hsv(hue / 5)
        img[(np.abs(xx - cx) < half * 0.55) & (yy > 0.36) & (yy <= 0.5)] = _hsv(hue / 5, 0.4, 0.9)
        for wx in (cx - half * 0.6, cx + half * 0.6):
            img[(yy - 0.74) ** 2 + (xx - wx) ** 2 < 0.09**2] = 0.05
        out[i] = _finish(img, rng)
    return out, labels


GENERATORS: dict[str, Callable[[int, np.random.Generator, int], tuple[np.ndarray, np.ndarray]]] = {
    "source-shapes": gen_source_shapes,
    "plates": gen_plates,
    "scenes": gen_scenes,
    "fungi": gen_fungi,
    "digits": gen_digits,
    "birds": gen_birds,
    "art": gen_art,
    "flowers": gen_flowers,
    "cars": gen_cars,
}


def synthetic(spec: SyntheticDataset, split: str, size: int) -> ImageSet:
    if spec.generator not in GENERATORS:
        raise unknown("synthetic generator", spec.generator, GENERATORS)
    n = spec.num_train if split == "train" else spec.num_eval
    # Train and eval draw from disjoint seed streams of the same distribution.
    rng = np.random.default_rng([spec.seed, 0 if split == "train" else 1])
    images, labels = GENERATORS[spec.generator](n, rng, size)
    return ImageSet(images, labels.astype(np.int64))


# ----------------------------------------------------------------------------------------------
# Hub datasets.

def center_crop_resize(img: Image.Image, size: int) -> np.ndarray:
    """ADM's centre crop (as in DiT's and Diff-Tuning's training code): halve with BOX while the
    short side is >= 2x the target, then BICUBIC to the target, then crop the centre."""
    img = img.convert("RGB")
    while min(img.size) >= 2 * size:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    scale = size / min(img.size)
    img = img.resize(tuple(round(x * scale) for x in img.size), resample=Image.BICUBIC)
    arr = np.asarray(img)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top : top + size, left : left + size]


def hub(spec: HubDataset, split: str, size: int, num_classes: int) -> ImageSet:
    split_name = spec.train_split if split == "train" else spec.eval_split
    key = canonical_hash({**spec.model_dump(), "split": split_name, "size": size})
    folder = cache_dir() / "datasets" / key
    if (folder / "labels.npy").exists():
        return ImageSet(np.load(folder / "images.npy", mmap_mode="r"), np.load(folder / "labels.npy"))
    import datasets

    try:
        data_dir = os.path.expandvars(spec.data_dir) if spec.data_dir else None
        if data_dir and "$" in data_dir:
            raise BenchError(f"dataset {spec.path!r}: data_dir {spec.data_dir!r} names an unset environment "
                             f"variable; set it (see tasks/README.md) or use --profile tiny")
        ds = datasets.load_dataset(spec.path, spec.name, revision=spec.revision, data_dir=data_dir,
                                   split=split_name)
    except BenchError:
        raise
    except Exception as exc:  # the datasets library raises many types for "not reachable"
        raise BenchError(
            f"cannot load dataset {spec.path!r} (split {split_name!r}): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}. Offline? Use --profile tiny, or pre-fetch it "
            f"on a machine with network (`huggingface-cli download --repo-type dataset {spec.path}"
            f"{' --revision ' + spec.revision if spec.revision else ''}`) and copy HF_HOME here."
        ) from None
    for col in (spec.image_column, spec.label_column):
        if col not in ds.column_names:
            raise BenchError(f"dataset {spec.path!r} has no column {col!r}; columns: {ds.column_names}")
    images = np.empty((len(ds), size, size, 3), np.uint8)
    labels = np.asarray(ds[spec.label_column], dtype=np.int64)
    for i, row in enumerate(ds):
        images[i] = center_crop_resize(row[spec.image_column], size)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise BenchError(f"dataset {spec.path!r}: labels span {labels.min()}..{labels.max()}, "
                         f"but the task declares {num_classes} classes")
    _save_atomic(folder, images, labels)
    return ImageSet(images, labels)


def _save_atomic(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "images.npy", images)
    np.save(tmp / "labels.npy", labels)
    if folder.exists():  # another process finished first; its copy has the same content
        shutil.rmtree(tmp)
    else:
        tmp.replace(folder)


def load_split(ds: DatasetSpec, split: str, size: int) -> ImageSet:
    if ds.synthetic is not None:
        return synthetic(ds.synthetic, split, size)
    return hub(ds.hub, split, size, ds.num_classes)
