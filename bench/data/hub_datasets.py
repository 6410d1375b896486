"""Hub datasets (paper profile): `datasets.load_dataset`, which also serves local `imagefolder` data.

Images are centre-cropped and resized once (ADM-style, as DiT and Diff-Tuning do) and cached as
.npy keyed by everything that defines their content, so later runs and concurrent workers read the
same bytes without touching the network or PIL again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from bench.data.imageset import ImageSet
from bench.errors import BenchError
from bench.paths import cache_dir
from bench.spec import HubDataset, canonical_hash


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


def hub(spec: HubDataset, split: str, size: int, num_classes: int | None) -> ImageSet:
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
        if col is not None and col not in ds.column_names:
            raise BenchError(f"dataset {spec.path!r} has no column {col!r}; columns: {ds.column_names}")
    if spec.subset is not None:
        if spec.subset > len(ds):
            raise BenchError(f"dataset {spec.path!r}: subset of {spec.subset} images asked, the split has {len(ds)}")
        # A declared draw (e.g. A3FT's 1000 CelebA images): sorted indices from the subset's seed.
        rng = np.random.default_rng(spec.subset_seed or 0)
        ds = ds.select(np.sort(rng.choice(len(ds), spec.subset, replace=False)).tolist())
    images = np.empty((len(ds), size, size, 3), np.uint8)
    labels = (np.asarray(ds[spec.label_column], dtype=np.int64) if spec.label_column is not None
              else np.zeros(len(ds), np.int64))
    for i, row in enumerate(ds):
        images[i] = center_crop_resize(row[spec.image_column], size)
    if num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
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
