"""Hub datasets (paper profile): `datasets.load_dataset`, which also serves local `imagefolder` data,
or a local folder written by `datasets` `save_to_disk`.

Images are centre-cropped and resized once (ADM-style, as DiT and Diff-Tuning do) and cached as
.npy keyed by everything that defines their content, so later runs and concurrent workers read the
same bytes without touching the network or PIL again. The cache is written one image at a time and
read back as a memory map: memory stays flat in the number of images (batches read their rows, the
page cache holds the rest), which is what lets ImageNet-scale splits train on any machine.
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
    """The split as an ImageSet whose images are a read-only memory map of the cached .npy: decoded
    once per (dataset spec, split, size), one image at a time straight into the file, so neither
    the first load nor any later one holds the split in memory (a paper split is tens of GB)."""
    split_name = spec.train_split if split == "train" else spec.eval_split
    key = canonical_hash({**spec.model_dump(), "split": split_name, "size": size})
    folder = cache_dir() / "datasets" / key
    if (folder / "labels.npy").exists():
        return _open(folder)
    ds = _load(spec, split_name)
    for col in (spec.image_column, spec.label_column):
        if col is not None and col not in ds.column_names:
            raise BenchError(f"dataset {spec.path!r} has no column {col!r}; columns: {ds.column_names}")
    if spec.subset is not None:
        if spec.subset > len(ds):
            raise BenchError(f"dataset {spec.path!r}: subset of {spec.subset} images asked, the split has {len(ds)}")
        # A declared draw (e.g. A3FT's 1000 CelebA images): sorted indices from the subset's seed.
        rng = np.random.default_rng(spec.subset_seed or 0)
        ds = ds.select(np.sort(rng.choice(len(ds), spec.subset, replace=False)).tolist())
    labels = (np.asarray(ds[spec.label_column], dtype=np.int64) if spec.label_column is not None
              else np.zeros(len(ds), np.int64))
    if num_classes is not None and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise BenchError(f"dataset {spec.path!r}: labels span {labels.min()}..{labels.max()}, "
                         f"but the task declares {num_classes} classes")
    _write_atomic(folder, ds.select_columns([spec.image_column]), spec.image_column, size, labels)
    return _open(folder)


def _load(spec: HubDataset, split_name: str):
    """The split as a `datasets.Dataset` (Arrow, memory-mapped): from the hub or the local HF
    cache, a builder such as `imagefolder` with its `data_dir`, or a local folder written by
    `Dataset.save_to_disk` / `DatasetDict.save_to_disk` (`path` is then that folder)."""
    import datasets

    try:
        local = Path(os.path.expandvars(spec.path))
        if local.is_dir() and any((local / f).exists() for f in ("dataset_dict.json", "state.json")):
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                if split_name not in ds:
                    raise BenchError(f"dataset {spec.path!r} has no split {split_name!r}; splits: {list(ds)}")
                ds = ds[split_name]
            return ds
        data_dir = os.path.expandvars(spec.data_dir) if spec.data_dir else None
        if data_dir and "$" in data_dir:
            raise BenchError(f"dataset {spec.path!r}: data_dir {spec.data_dir!r} names an unset environment "
                             f"variable; set it (see tasks/README.md) or use --profile tiny")
        return datasets.load_dataset(spec.path, spec.name, revision=spec.revision, data_dir=data_dir,
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


def _open(folder: Path) -> ImageSet:
    return ImageSet(np.load(folder / "images.npy", mmap_mode="r"), np.load(folder / "labels.npy"))


def _write_atomic(folder: Path, ds, column: str, size: int, labels: np.ndarray) -> None:
    """Decode and crop each image in turn and append its bytes to images.npy (a plain file write:
    no array of the split, no mapping of it while writing), then rename the folder into place."""
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    if tmp.exists():  # left by a crashed load of this process id
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        with open(tmp / "images.npy", "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                                     "fortran_order": False, "shape": (len(ds), size, size, 3)})
            for row in ds:
                f.write(np.ascontiguousarray(center_crop_resize(row[column], size), dtype=np.uint8).tobytes())
        np.save(tmp / "labels.npy", labels)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        tmp.replace(folder)
    except OSError:  # another process finished first; its copy has the same content
        if not (folder / "labels.npy").exists():
            raise
        shutil.rmtree(tmp)
