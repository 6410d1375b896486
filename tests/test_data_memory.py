"""Memory stays flat in the number of images on every family's paper data path (hub datasets).

A hub split is decoded once, image by image, into a .npy under the cache folder and read back as a
memory map (bench/data/hub_datasets.py); training batches read their rows, hashes and reference
features go through it in chunks. Each family's data path runs here in a fresh process on a local
dataset the test writes (a `save_to_disk` folder, a DreamBooth-style subject folder) at two sizes,
200 and 1000 training images (128 px): load (decode and cache), bind, draw a few training batches,
extract the reference features and FID statistics, then load again from the cache. Every phase's
peak of the process's anonymous memory (sampled from /proc) and of numpy's and Python's
allocations (tracemalloc) must not grow by more than a quarter of the extra images' bytes: an
array of the split held in memory -- uint8, let alone float -- would exceed it. Mapped pages of the
cache file are not counted: they are the page cache's, which the kernel drops under pressure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

SIZE = 128  # the decoded size; the stored images are larger and not square (crop and resize run)
SMALL, LARGE = 200, 1000
SLACK = 0.25  # of the extra images' uint8 bytes


def _picture(rng, h=176, w=144) -> "Image.Image":
    from PIL import Image

    coarse = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((w, h), Image.BILINEAR)


def _saved_dataset(root: Path, n_train: int, n_test: int, classes: int = 4) -> Path:
    """A DatasetDict written by `save_to_disk`, images and class labels."""
    import datasets

    rng = np.random.default_rng(n_train + 1)
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=classes)})
    dd = datasets.DatasetDict({split: datasets.Dataset.from_dict(
        {"image": [_picture(rng) for _ in range(n)], "label": [i % classes for i in range(n)]}, features=feats)
        for split, n in (("train", n_train), ("test", n_test))})
    dd.save_to_disk(str(root))
    return root


def _subject_folder(root: Path, n: int) -> Path:
    rng = np.random.default_rng(n + 2)
    folder = root / "dataset" / "ball"
    folder.mkdir(parents=True)
    for i in range(n):
        _picture(rng).save(folder / f"{i:05d}.png")
    return root


FAMILIES = ("class-transfer", "limited-data", "pretrain-corruption", "few-shot")


def _cases(root: Path, n: int) -> dict[str, tuple[str, str, dict]]:
    """family -> (task, dataset key, overrides): its paper data path on local data of n training
    images (and n/2 held-out ones): a save_to_disk folder, or a DreamBooth-style subject folder.
    (An imagefolder takes the same path after `datasets` lists its files, tests/test_data.py.)"""
    saved = {"path": str(_saved_dataset(root / "saved", n, n // 2)), "revision": None, "train_split": "train",
             "eval_split": "test"}
    subject = {"path": str(_subject_folder(root / "subject", n)), "revision": None, "label_column": None}
    common = {"image_size": SIZE, "train.batch_size": 8}  # one batch's working set is not the subject
    return {
        "class-transfer": ("dit-transfer", "food101", {**common, "datasets.food101.synthetic": None,
                                                       "datasets.food101.num_classes": 4,
                                                       "datasets.food101.hub": saved}),
        "limited-data": ("limited-data", "celeba1000", {**common, "datasets.celeba1000.synthetic": None,
                                                        "datasets.celeba1000.hub": {**saved, "label_column": None}}),
        "pretrain-corruption": ("corruption-sweep", "source64", {**common, "datasets.source64.synthetic": None,
                                                                 "datasets.source64.hub": saved}),
        "few-shot": ("fewshot-corruption", "checker-ball", {**common, "datasets.checker-ball.synthetic": None,
                                                            "datasets.checker-ball.hub": subject,
                                                            "params.subjects.checker-ball.folder": "ball",
                                                            "params.num_images": 2}),
    }


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> dict[int, dict]:
    """Each size's probe: one fresh process runs every family's data path in turn (numpy's and
    Python's allocations are traced exactly; a large torch tensor is a fresh mapping, so what one
    family freed cannot hide what the next allocates)."""
    out = {}
    for n in (SMALL, LARGE):
        root = tmp_path_factory.mktemp(f"data{n}")
        # A fixed mmap threshold: glibc serves every block over 64 KiB as a mapping of its own and
        # unmaps it when freed, so anonymous memory follows what is live, not how the heap fragments
        # over more batches (its default threshold grows with the blocks freed).
        env = {**os.environ, "HF_DATASETS_CACHE": str(root / "hf"), "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "BENCH_CACHE": str(root / "cache"),
               "MALLOC_MMAP_THRESHOLD_": "65536"}
        proc = subprocess.run([sys.executable, __file__, str(root / "cache"), json.dumps(_cases(root, n))],
                              capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_memory_is_flat_in_the_number_of_images(family, probes):
    small, large = probes[SMALL][family], probes[LARGE][family]
    assert (small["n_train"], large["n_train"]) == ((SMALL, LARGE) if family != "few-shot" else (2, 2))
    # The extra images' bytes at the decoded size: training split and the half as large held-out one.
    budget = SLACK * (LARGE - SMALL) * 1.5 * SIZE * SIZE * 3
    print(family, {p: (small["phases"][p], large["phases"][p]) for p in large["phases"]},
          small["seconds"], large["seconds"])  # shown with -s
    for phase, (anon, traced) in large["phases"].items():
        s_anon, s_traced = small["phases"][phase]
        assert anon - s_anon <= budget, (phase, "anonymous memory", anon - s_anon, budget)
        assert traced - s_traced <= budget, (phase, "numpy/python allocations", traced - s_traced, budget)
    assert large["held"] - small["held"] <= budget
    assert large["cached"] and small["cached"]  # the second load read the .npy the first wrote


# -- the probe, run in a fresh process: python tests/test_data_memory.py CACHE CASES -------------------------

def _anon_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class _Peak:
    """The peak of anonymous memory (sampled every millisecond) and of traced allocations over a
    phase, above their values when it began."""

    def __enter__(self):
        import tracemalloc

        tracemalloc.reset_peak()
        self.start_anon, self.start_traced = _anon_bytes(), tracemalloc.get_traced_memory()[0]
        self.peak, self.done, self.t0 = self.start_anon, False, time.time()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.done:
            self.peak = max(self.peak, _anon_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        import tracemalloc

        self.done = True
        self.thread.join()
        self.peak = max(self.peak, _anon_bytes())
        self.result = (self.peak - self.start_anon, tracemalloc.get_traced_memory()[1] - self.start_traced)
        self.seconds = round(time.time() - self.t0, 2)


def _family_probe(task_name: str, key: str, overrides: dict) -> dict:
    """One family's data path, phase by phase: load (decode into the cache), bind and draw training
    batches, reference features and FID statistics, load again (from the cache)."""
    import gc

    import torch

    from bench.backbone import load_backbone
    from bench.families import family_class
    from bench.paths import cache_dir
    from bench.tasks import load_task

    task = load_task(task_name, "tiny").with_overrides(overrides)
    few_shot = task.family == "few-shot"
    backbone = load_backbone(task.spec.backbone)  # before measuring: its size does not depend on the data
    if few_shot:
        from bench.families.few_shot.fidelity import get_fidelity

        get_fidelity(task.spec.evaluation.extractor, family_class(task.file.family).parse_params(task).fidelity_sha256)
    else:
        from bench.features import get_extractor

        # Batches smaller than the smallest split, so that both sizes extract full batches: the
        # test compares what grows with the split, not one batch's working set with a partial one's.
        type(get_extractor(task.spec.evaluation.extractor)).batch_size = 32
    gen = torch.randint(0, 256, (32, SIZE, SIZE, 3), dtype=torch.uint8)
    fam = family_class(task.file.family)(task, key)
    gc.collect()
    start, phases, seconds = _anon_bytes(), {}, {}
    with _Peak() as p:
        fam.load_data()
    phases["load"], seconds["load"] = p.result, p.seconds
    with _Peak() as p:
        fam.bind(backbone)
        fam.start(0)
        for _ in range(3):
            fam.draw_batch(task.spec.train)
    phases["batches"], seconds["batches"] = p.result, p.seconds
    with _Peak() as p:
        if few_shot:  # fidelity is measured against the subject's images
            fam.measure(gen[: fam.params.images_per_prompt], 1)
        else:
            fam.score(gen, metrics=["fid"])  # the reference split's features and statistics
            if task.family == "pretrain-corruption":
                fam._train_features()  # the training split's, for the memorisation measures
    phases["reference features"], seconds["reference features"] = p.result, p.seconds
    cached = few_shot or any((cache_dir() / "datasets").glob("*/labels.npy"))
    with _Peak() as p:
        again = family_class(task.file.family)(task, key)
        again.load_data()
    phases["load from cache"], seconds["load from cache"] = p.result, p.seconds
    n_train = len(again.subject_images) if few_shot else len(again.train_set)
    del fam, again, backbone
    gc.collect()
    return {"phases": phases, "seconds": seconds, "held": _anon_bytes() - start, "n_train": n_train,
            "cached": cached}


def _run_probe(cache: str, cases: dict) -> dict:
    import tracemalloc

    import datasets  # noqa: F401  (imported before measuring, as every module: its size is not the data's)
    import torch

    torch.set_num_threads(1)
    tracemalloc.start()
    out = {}
    for family, (task_name, key, overrides) in cases.items():
        os.environ["BENCH_CACHE"] = str(Path(cache) / family)  # each family decodes its own copy
        out[family] = _family_probe(task_name, key, overrides)
    return out


if __name__ == "__main__":
    print(json.dumps(_run_probe(sys.argv[1], json.loads(sys.argv[2]))))
