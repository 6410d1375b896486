"""The controlnet family's paper data path at COCO scale, on local data written here (no hub): the
plan-time schema check, the condition maps stored once as uint8 and reused, and peak memory that
does not grow with the number of images."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bench.errors import BenchError
from bench.families.controlnet import ControlNetFamily
from bench.families.controlnet.conditions import get_condition_extractor
from bench.families.controlnet.data import condition_split, schema_problem
from bench.spec import HubDataset
from bench.tasks import load_task
from conftest import ROOT


def scenes(n: int, size: int, seed: int = 0) -> list:
    """Smooth random scenes (a few rectangles on a gradient): edges for Canny, small PNGs."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ramp = np.linspace(0, 255, size, dtype=np.float32)
        img = np.stack([np.add.outer(ramp, ramp) / 2] * 3, -1).astype(np.uint8)
        im = Image.fromarray(img)
        draw = ImageDraw.Draw(im)
        for _ in range(4):
            x0, y0 = rng.integers(0, size // 2, 2)
            w, h = rng.integers(size // 8, size // 3, 2)
            draw.rectangle([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        out.append(im)
    return out


def write_saved(folder, n: int, size: int = 64, columns=("image", "caption")):
    """A local DatasetDict (train, validation) written with save_to_disk."""
    import datasets

    splits = {}
    for split, count in (("train", n), ("validation", max(2, n // 4))):
        rows = {}
        if "image" in columns:
            rows["image"] = scenes(count, size, seed=len(split))
        if "caption" in columns:
            rows["caption"] = [[f"a scene number {i}", "another caption"] for i in range(count)]
        if "coco_url" in columns:
            rows["coco_url"] = [f"http://images.cocodataset.org/{i}.jpg" for i in range(count)]
            rows["captions"] = [[f"caption {i}"] for i in range(count)]
        ds = datasets.Dataset.from_dict(rows)
        if "image" in columns:
            ds = ds.cast_column("image", datasets.Image())
        splits[split] = ds
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def hub_task(folder):
    """The tiny profile with its edge dataset read from a local captioned dataset."""
    task = load_task("controlnet-convergence", "tiny")
    return task.with_overrides({
        "datasets.edge.hub": {"path": str(folder), "train_split": "train", "eval_split": "validation",
                              "label_column": None},
        "datasets.edge.synthetic": None, "params.conditions.edge.caption_column": "caption"})


def test_a_metadata_only_dataset_is_refused_at_plan_time_naming_the_column(tmp_path):
    meta = write_saved(tmp_path / "coco-meta", 4, columns=("coco_url",))  # as phiyodr/coco2017: URLs, no images
    with pytest.raises(BenchError, match=r"dataset 'edge': dataset '.*coco-meta' has no image column 'image' and no "
                                         r"caption column 'caption' \(its columns: coco_url, captions\)"):
        ControlNetFamily.check(hub_task(meta))
    spec = HubDataset(path=str(write_saved(tmp_path / "ade", 4, columns=("image",))), label_column=None)
    assert "no caption column 'caption'" in schema_problem(spec, "caption")  # as 1aurent/ADE20K: no captions
    ControlNetFamily.check(hub_task(write_saved(tmp_path / "good", 4)))  # images and captions: accepted


def test_the_cli_refuses_a_metadata_only_dataset_in_one_line(tmp_path):
    meta = write_saved(tmp_path / "coco-meta", 4, columns=("coco_url",))
    task = tmp_path / "cn-meta.yaml"
    text = (ROOT / "tasks" / "controlnet-convergence.yaml").read_text()
    tiny_edge = "      edge:         {title: layouts edge (Canny), stands_in_for: COCO edge, hub: null,\n" \
                "                     synthetic: {generator: layouts, num_train: 2000, num_eval: 128, seed: 0}}\n"
    assert tiny_edge in text
    text = text.replace(tiny_edge, f"      edge: {{title: local edge, hub: {{path: '{meta}', train_split: train, "
                                   f"eval_split: validation, label_column: null}}, synthetic: null}}\n")
    assert "edge:         {extractor: canny, threshold: 0.16, caption_column: caption, train_extractor: null}" in text
    task.write_text(text.replace("name: controlnet-convergence", "name: cn-meta"))
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--task", str(task), "--method", "controlnet",
                           "--profile", "tiny", "--dataset", "edge", "--seeds", "0", "--results-dir",
                           str(tmp_path / "results")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no image column 'image'" in lines[0], proc.stderr
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))


def test_condition_maps_are_stored_once_as_uint8_and_reused(tmp_path, monkeypatch):
    folder = write_saved(tmp_path / "data", 6, size=64)
    spec = HubDataset(path=str(folder), train_split="train", eval_split="validation", label_column=None)
    canny = get_condition_extractor("canny")
    calls = []
    original = type(canny).__call__
    monkeypatch.setattr(type(canny), "__call__", lambda self, images: calls.append(len(images)) or original(self, images))
    first = condition_split(spec, "train", 32, "caption", canny, root=tmp_path / "cache", chunk=4, log=lambda m: None)
    assert first.built == {"images": True, "maps": True} and calls == [4, 2]  # batched, in chunks
    assert first.maps.dtype == np.uint8 and first.maps.shape == (6, 3, 32, 32) and first.images.shape == (6, 32, 32, 3)
    assert isinstance(first.images, np.memmap) and isinstance(first.maps, np.memmap)
    assert np.array_equal(first.maps.astype(np.float32) / 255, original(canny, np.asarray(first.images)))
    assert first.captions[0] == "a scene number 0"  # the first caption of several
    again = condition_split(spec, "train", 32, "caption", canny, root=tmp_path / "cache", log=lambda m: None)
    assert again.built == {"images": False, "maps": False} and calls == [4, 2]  # no annotator run the second time
    assert again.sha256 == first.sha256
    other = condition_split(spec, "train", 32, "caption", get_condition_extractor("chroma-mask"),
                            root=tmp_path / "cache", log=lambda m: None)
    assert other.built == {"images": False, "maps": True}  # images shared, maps per extractor


PROBE = textwrap.dedent("""
    import json, sys, tracemalloc
    import numpy as np, torch
    from bench.families.controlnet import StoredCaptioned
    from bench.families.controlnet.conditions import get_condition_extractor
    from bench.families.controlnet.data import condition_split
    from bench.spec import HubDataset

    folder, cache = sys.argv[1], sys.argv[2]
    spec = HubDataset(path=folder, train_split="train", eval_split="validation", label_column=None)
    tracemalloc.start()
    got = condition_split(spec, "train", 512, "caption", get_condition_extractor("canny"), root=__import__("pathlib").Path(cache),
                          chunk=4, log=lambda m: None)
    tokenize = lambda caps: torch.tensor([[len(c), 1, 2, 0] for c in caps])
    pairs = StoredCaptioned(got.images, got.captions, got.maps, tokenize, got.sha256)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):  # training draws: only the drawn rows are read
        idx = torch.randint(0, len(pairs), (4,), generator=g)
        x, c, ids = pairs.images[idx], pairs.maps[idx], pairs.ids[idx]
        assert x.shape == (4, 512, 512, 3) and c.dtype == torch.float32 and ids.shape == (4, 4)
    print(json.dumps({"peak": tracemalloc.get_traced_memory()[1], "n": len(pairs)}))
""")


def test_peak_memory_of_the_paper_data_path_is_flat_in_the_number_of_images(tmp_path):
    """512 px images, 8 against 32 of them: storing, extracting and drawing batches peaks at the
    same heap size (stacking them, as before, held 0.75 MB per image plus 3 MB of float maps)."""
    peaks = {}
    for n in (8, 32):
        folder = write_saved(tmp_path / f"d{n}", n, size=512)
        proc = subprocess.run([sys.executable, "-c", PROBE, str(folder), str(tmp_path / f"cache{n}")],
                              capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["n"] == n
        peaks[n] = out["peak"]
    grown = peaks[32] - peaks[8]
    print(f"tracemalloc peak: {peaks}")
    assert grown < 24 * 0.75e6 * 0.25, peaks  # under a quarter of the 24 extra images' own bytes


def test_paper_canny_trains_on_random_thresholds_and_evaluates_on_fixed_ones(tmp_path):
    """ControlNet's edge data used random thresholds: drawn per image (from its bytes, so any
    chunking gives the same maps); the evaluation split keeps Canny 100/200."""
    import cv2

    rnd = get_condition_extractor("canny-random")
    images = np.stack([np.asarray(im) for im in scenes(6, 64, seed=3)])
    maps = rnd(images)
    assert np.array_equal(maps, np.concatenate([rnd(images[:2]), rnd(images[2:])]))  # per image, not per batch
    fixed = get_condition_extractor("canny")(images)
    assert not np.array_equal(maps, fixed)
    for im, m in zip(images, maps):  # each map is Canny of the grey image at the pair drawn for it
        digest = int.from_bytes(__import__("hashlib").sha256(im.tobytes()).digest()[:8], "little")
        lo, hi = sorted(np.random.default_rng([0, digest]).integers(1, 256, 2).tolist())
        assert np.array_equal(cv2.Canny(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), lo, hi) > 0, m[0] > 0.5)
    fam_task = hub_task(write_saved(tmp_path / "data", 4))
    fam_task = fam_task.with_overrides({"params.conditions.edge.train_extractor": "canny-random"})
    fam = ControlNetFamily(fam_task, "edge")
    fam.load_data()
    train_images, _, train_maps, _ = fam._raw["train"]
    eval_images, _, eval_maps, _ = fam._raw["eval"]
    assert np.array_equal(train_maps.astype(np.float32) / 255, rnd(np.asarray(train_images)))
    assert np.array_equal(eval_maps.astype(np.float32) / 255, fam.extractor(np.asarray(eval_images)))
    assert fam.extractor.name == "canny"
