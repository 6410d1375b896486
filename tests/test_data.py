"""Datasets: synthetic stand-ins and the hub loading path (on an imagefolder the test writes)."""

import numpy as np
import pytest
from PIL import Image

from bench.data import GENERATORS, center_crop_resize, load_split
from bench.errors import BenchError
from bench.spec import DatasetSpec, SyntheticDataset
from bench.tasks import load_task


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generators_are_deterministic_and_class_conditional(name):
    spec = DatasetSpec(title=name, num_classes=64, synthetic=SyntheticDataset(generator=name, num_train=48, num_eval=48))
    a, b = load_split(spec, "train", 16), load_split(spec, "train", 16)
    assert a.images.dtype == np.uint8 and a.images.shape == (48, 16, 16, 3)
    assert a.sha256() == b.sha256()
    assert load_split(spec, "eval", 16).sha256() != a.sha256()  # eval is a disjoint draw
    assert len(np.unique(a.labels)) > 1


def test_tiny_datasets_fit_their_declared_classes():
    task = load_task("dit-transfer", "tiny")
    for key, ds in task.spec.datasets.items():
        s = load_split(ds, "eval", task.spec.image_size)
        assert s.labels.min() >= 0 and s.labels.max() < ds.num_classes, key
        assert len(np.unique(s.labels)) == ds.num_classes, key


def test_center_crop_matches_adm_on_a_non_square_image():
    img = Image.fromarray(np.arange(600 * 300 * 3, dtype=np.uint32).reshape(300, 600, 3).astype(np.uint8))
    out = center_crop_resize(img, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def _imagefolder(root, classes=("cat", "dog", "owl"), per_class=4):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")
    return root


def _picture(i: int) -> Image.Image:
    """A non-square RGB picture (crop and resize both run)."""
    rng = np.random.default_rng(i)
    return Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).resize((20, 14), Image.BILINEAR)


def test_hub_loading_path_on_an_imagefolder(tmp_path, isolated_dirs):
    root = _imagefolder(tmp_path / "folder")
    ds = DatasetSpec.model_validate({"title": "folder", "num_classes": 3,
                                     "hub": {"path": "imagefolder", "data_dir": str(root), "eval_split": "test"}})
    train = load_split(ds, "train", 16)
    assert train.images.shape == (12, 16, 16, 3) and sorted(np.bincount(train.labels)) == [4, 4, 4]
    cached = list((isolated_dirs / "cache" / "datasets").iterdir())
    assert len(cached) == 1 and (cached[0] / "images.npy").exists()
    again = load_split(ds, "train", 16)  # served from the cache, same bytes
    assert again.sha256() == train.sha256()
    assert load_split(ds, "eval", 16).sha256() != train.sha256()
    # Decoded into the file, never held whole: both loads read a memory map of it.
    assert isinstance(train.images, np.memmap) and isinstance(again.images, np.memmap)
    first = sorted((root / "train").rglob("*.png"))[0]
    assert any(np.array_equal(center_crop_resize(Image.open(first), 16), im) for im in train.images)


def test_hub_loading_path_on_a_save_to_disk_folder(tmp_path, isolated_dirs):
    import datasets

    images = [_picture(i) for i in range(6)]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=2)})
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"image": images, "label": [0, 1] * 3}, features=feats)}
                         ).save_to_disk(str(tmp_path / "saved"))
    ds = DatasetSpec.model_validate({"title": "saved", "num_classes": 2, "hub": {"path": str(tmp_path / "saved")}})
    train = load_split(ds, "train", 8)
    assert train.labels.tolist() == [0, 1] * 3
    assert np.array_equal(np.asarray(train.images), np.stack([center_crop_resize(im, 8) for im in images]))
    with pytest.raises(BenchError, match="no split 'test'"):
        load_split(ds, "eval", 8)


def test_hub_dataset_with_too_few_declared_classes_is_rejected(tmp_path):
    root = _imagefolder(tmp_path / "folder")
    ds = DatasetSpec.model_validate({"title": "folder", "num_classes": 2,
                                     "hub": {"path": "imagefolder", "data_dir": str(root)}})
    with pytest.raises(BenchError, match="declares 2 classes"):
        load_split(ds, "train", 16)


def test_unreachable_hub_dataset_says_what_to_do():
    ds = DatasetSpec.model_validate({"title": "x", "num_classes": 101,
                                     "hub": {"path": "ethz/food101", "revision": "83488de741c1bd1ce27aa6a2b33e19c7bdf92ca9"}})
    with pytest.raises(BenchError, match="--profile tiny"):
        load_split(ds, "train", 16)


def test_unlabelled_hub_subset_is_a_declared_deterministic_draw(tmp_path, isolated_dirs):
    """A3FT's CelebA-1000: a random subset of a split, drawn with a declared seed and pinned by
    the data hash; unlabelled data (label_column null) loads without a class count."""
    root = _imagefolder(tmp_path / "folder")
    full = load_split(DatasetSpec.model_validate({"title": "all", "hub": {
        "path": "imagefolder", "data_dir": str(root), "label_column": None}}), "train", 16)

    def subset(seed):
        ds = DatasetSpec.model_validate({"title": "s", "hub": {"path": "imagefolder", "data_dir": str(root),
                                                               "label_column": None, "subset": 5, "subset_seed": seed}})
        return load_split(ds, "train", 16)

    a, b, other = subset(0), subset(0), subset(1)
    assert a.images.shape == (5, 16, 16, 3) and (a.labels == 0).all()
    assert a.sha256() == b.sha256() and a.sha256() != other.sha256()
    rows = {full.images[i].tobytes() for i in range(len(full))}
    assert all(img.tobytes() in rows for img in a.images)  # a subset of the split, not new images
    too_many = DatasetSpec.model_validate({"title": "s", "hub": {"path": "imagefolder", "data_dir": str(root),
                                                                 "label_column": None, "subset": 50}})
    with pytest.raises(BenchError, match="subset of 50 images asked, the split has 12"):
        load_split(too_many, "train", 16)
