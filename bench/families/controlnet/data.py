"""The ControlNet family's captioned data at COCO scale (paper profile): a schema check at plan
time, and a split whose memory does not grow with its number of images.

- `schema_problem`: the columns a dataset declares (read from its metadata: a hub card's
  features, a local `save_to_disk` folder's dataset_info; no image is read) must include the
  image column and the caption column. `phiyodr/coco2017` (metadata and image URLs, no images) and
  `1aurent/ADE20K` (no captions) are refused at plan time in one line that names the column.
- `condition_split`: images are centre-cropped once into a uint8 .npy under the cache folder
  (keyed by the dataset spec, revision included, split and size), the condition maps are computed
  once per (those, extractor) in chunks (annotators run batched) and stored as uint8 .npy beside
  them; both are memory-mapped, so a run reads the rows it draws and nothing else, and a second
  run (or worker) reuses the files without running the annotator again.

Data read: a hub id (`datasets.load_dataset`, which also serves `imagefolder` / `parquet` with
`data_dir`) or a local folder written by `datasets.Dataset.save_to_disk` (`path` is the folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError
from bench.spec import HubDataset, canonical_hash

CHUNK = 32           # images per annotator call while the maps are built
STORE_FORMAT = 1     # bump when the stored layout changes


def _local_saved(spec: HubDataset) -> Path | None:
    """The folder of a `save_to_disk` dataset (a DatasetDict or one Dataset), or None."""
    p = Path(os.path.expandvars(spec.path))
    if p.is_dir() and ((p / "dataset_dict.json").exists() or (p / "state.json").exists()):
        return p
    return None


def _split_name(spec: HubDataset, split: str) -> str:
    return spec.train_split if split == "train" else spec.eval_split


def open_split(spec: HubDataset, split: str):
    """The split as a `datasets.Dataset` (memory-mapped Arrow: rows are decoded when read), with
    the declared subset applied."""
    import datasets

    name = _split_name(spec, split)
    try:
        local = _local_saved(spec)
        if local is not None:
            ds = datasets.load_from_disk(str(local))
            ds = ds[name] if isinstance(ds, datasets.DatasetDict) else ds
        else:
            data_dir = os.path.expandvars(spec.data_dir) if spec.data_dir else None
            ds = datasets.load_dataset(spec.path, spec.name, revision=spec.revision, data_dir=data_dir, split=name)
    except Exception as exc:
        raise BenchError(f"cannot load dataset {spec.path!r} (split {name!r}): {type(exc).__name__}. Offline? "
                         f"Pre-fetch it (`huggingface-cli download --repo-type dataset {spec.path} --revision "
                         f"{spec.revision}`) and copy HF_HOME here, or use --profile tiny") from None
    if spec.subset is not None:
        rng = np.random.default_rng(spec.subset_seed or 0)
        ds = ds.select(np.sort(rng.choice(len(ds), min(spec.subset, len(ds)), replace=False)).tolist())
    return ds


def declared_columns(spec: HubDataset) -> list[str] | None:
    """The columns the dataset declares, read from its metadata without reading any row; None when
    the metadata declares none (a builder that infers its columns from the files: the columns are
    then checked when the data are read)."""
    import datasets

    local = _local_saved(spec)
    if local is not None:
        ds = datasets.load_from_disk(str(local))  # memory-maps the Arrow files, decodes nothing
        ds = ds[spec.train_split] if isinstance(ds, datasets.DatasetDict) else ds
        return list(ds.features)
    data_dir = os.path.expandvars(spec.data_dir) if spec.data_dir else None
    try:
        builder = datasets.load_dataset_builder(spec.path, spec.name, revision=spec.revision, data_dir=data_dir)
    except Exception:
        return None  # not readable here: the missing-inputs check names it
    features = builder.info.features
    return list(features) if features is not None else None


def schema_problem(spec: HubDataset, caption_column: str | None, columns: list[str] | None = None, *,
                   labelled: bool = False) -> str | None:
    """Why the dataset cannot feed a ControlNet (a missing column), or None: images to extract the
    conditions from, and a caption (text models) or a label (`labelled`: class-conditional) per image."""
    columns = declared_columns(spec) if columns is None else columns
    if columns is None:
        return None
    need = {"image": spec.image_column, **({"label": spec.label_column} if labelled else {"caption": caption_column})}
    missing = [f"{what} column {col!r}" for what, col in need.items() if col is not None and col not in columns]
    if not missing:
        return None
    prompt = "a label" if labelled else "a caption"
    return (f"dataset {spec.path!r} has no {' and no '.join(missing)} (its columns: {', '.join(columns)}); the "
            f"controlnet family needs images to extract conditions from and {prompt} per image")


# -- the stored split ---------------------------------------------------------------------------

@dataclass
class StoredSplit:
    """A split on disk: images uint8 (n, s, s, 3) and maps uint8 (n, 3, s, s), both memory-mapped,
    the captions, and the sha256 of images, maps and captions (computed once, when stored)."""

    images: np.ndarray
    maps: np.ndarray
    captions: list[str]
    sha256: str
    built: dict  # what this call computed: {"images": bool, "maps": bool}


def _atomic_dir(folder: Path, write) -> None:
    """Fill a temporary sibling folder with `write(tmp)`, then rename it into place (a concurrent
    worker that lost the race keeps the winner's files)."""
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _store_images(spec: HubDataset, split: str, size: int, caption_column: str, folder: Path, log) -> None:
    from bench.data.hub_datasets import center_crop_resize

    ds = open_split(spec, split)
    problem = schema_problem(spec, caption_column, list(ds.column_names))
    if problem:
        raise BenchError(problem)

    def write(tmp: Path) -> None:
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(ds), size, size, 3))
        captions, h = [], hashlib.sha256()
        log(f"data   storing {len(ds)} images of {spec.path} ({_split_name(spec, split)}) at {size} px (once; cached)")
        for i, row in enumerate(ds):  # one decoded row at a time
            images[i] = center_crop_resize(row[spec.image_column], size)
            h.update(images[i].tobytes())
            c = row[caption_column]
            captions.append(str(c[0]) if isinstance(c, (list, tuple)) else str(c))  # the first of several
        images.flush()
        del images
        (tmp / "captions.json").write_text(json.dumps(captions))
        (tmp / "meta.json").write_text(json.dumps({"n": len(captions), "size": size, "images_sha256": h.hexdigest()}))

    _atomic_dir(folder, write)


def _store_maps(images: np.ndarray, extractor, folder: Path, log, chunk: int) -> None:
    n, size = len(images), images.shape[1]

    def write(tmp: Path) -> None:
        maps = np.lib.format.open_memmap(tmp / "maps.npy", mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
        h = hashlib.sha256()
        log(f"data   extracting {extractor.name} maps of {n} images (once; cached)")
        for start in range(0, n, chunk):
            got = extractor(np.asarray(images[start:start + chunk]))  # float [0, 1], one batched call
            maps[start:start + chunk] = np.clip(np.rint(got * 255.0), 0, 255).astype(np.uint8)
            h.update(maps[start:start + chunk].tobytes())
        maps.flush()
        del maps
        (tmp / "meta.json").write_text(json.dumps({"n": n, "extractor": extractor.info(), "maps_sha256": h.hexdigest()}))

    _atomic_dir(folder, write)


def condition_split(spec: HubDataset, split: str, size: int, caption_column: str, extractor, *,
                    root: Path | None = None, chunk: int = CHUNK, log=print) -> StoredSplit:
    """The split's images, captions and condition maps, stored once and memory-mapped."""
    from bench.paths import cache_dir

    root = root or cache_dir() / "controlnet-data"
    data_key = canonical_hash({"format": STORE_FORMAT, "dataset": spec.model_dump(), "split": _split_name(spec, split),
                               "size": size, "caption_column": caption_column})
    img_dir = root / data_key
    built = {"images": False, "maps": False}
    if not (img_dir / "meta.json").exists():
        _store_images(spec, split, size, caption_column, img_dir, log)
        built["images"] = True
    # copy-on-write maps: writable views for torch, never written back to the cache
    images = np.load(img_dir / "images.npy", mmap_mode="c")
    map_dir = img_dir / f"maps-{canonical_hash(extractor.info())}"
    if not (map_dir / "meta.json").exists():
        _store_maps(images, extractor, map_dir, log, chunk)
        built["maps"] = True
    maps = np.load(map_dir / "maps.npy", mmap_mode="c")
    captions = json.loads((img_dir / "captions.json").read_text())
    meta_i, meta_m = (json.loads((d / "meta.json").read_text()) for d in (img_dir, map_dir))
    sha = hashlib.sha256()
    for part in (meta_i["images_sha256"], meta_m["maps_sha256"], "\n".join(captions)):
        sha.update(part.encode())
    return StoredSplit(images, maps, captions, sha.hexdigest(), built)


# -- lazy views for the family's batches -----------------------------------------------------------

class LazyRows:
    """Rows of a memory-mapped uint8 array, read only when indexed (a tensor index, a slice or an
    int), as a torch tensor; `scale` turns maps into float in [0, 1]."""

    def __init__(self, array: np.ndarray, scale: bool):
        self.array, self.scale = array, scale
        self.shape = array.shape

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, idx):
        if isinstance(idx, torch.Tensor):
            idx = idx.numpy()
        rows = torch.from_numpy(np.array(self.array[idx]))  # a copy of the indexed rows only
        return rows.float().div_(255.0) if self.scale else rows

    def numpy(self) -> np.ndarray:
        return self[:].numpy()


class LazyIds:
    """The prompts as the backbone takes them, tokenised when indexed."""

    def __init__(self, captions: list[str], tokenize):
        self.captions, self.tokenize = captions, tokenize

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, idx):
        if isinstance(idx, torch.Tensor):
            idx = idx.tolist()
        if isinstance(idx, slice):
            return self.tokenize(self.captions[idx])
        if isinstance(idx, int):
            return self.tokenize([self.captions[idx]])[0]
        return self.tokenize([self.captions[i] for i in idx])
