"""`bench score` as a subprocess on PNG folders the tests write, with the tiny extractor's
weights written to tmp and BENCH_CACHE in tmp (tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import bench_cli


def write_pngs(folder: Path, n: int, size=16, seed=0, mode="RGB", shift=0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = np.clip(rng.integers(0, 256, (size, size, 3)) + shift, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        if mode == "L":
            img = img.convert("L")
        elif mode == "I;16":
            img = Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
        img.save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture
def setup(tmp_path):
    from bench.features.tiny import TinyCNN

    torch.manual_seed(0)
    weights = tmp_path / "tiny-extractor.safetensors"
    save_file(TinyCNN(16).state_dict(), weights)
    gen = write_pngs(tmp_path / "gen", 40, seed=1, shift=30)
    ref = write_pngs(tmp_path / "ref", 50, seed=2)
    return tmp_path, weights, gen, ref


def files_under(p: Path) -> list[Path]:
    return sorted(x for x in p.rglob("*") if x.is_file()) if p.exists() else []


def score(setup, *extra, rc=0):
    tmp, weights, gen, ref = setup
    return bench_cli("score", "--images", gen, "--ref", ref, "--extractor", "tiny", "--weights", weights, *extra,
                     check_rc=rc)


def test_score_folder_against_folder_then_cached_reference(setup):
    from bench.features import get_extractor
    from bench.features.images import load_folder
    from bench.metrics import fid_from_features, kid

    tmp, weights, gen, ref = setup
    out = tmp / "score.json"
    first = score(setup, "--metrics", "fid,kid,is,prc,sfid,entropy,memorization,l2", "--kid-subset-size", "20",
                  "--kid-subsets", "5", "--out", out)
    result = json.loads(out.read_text())
    assert set(result["metrics"]) == {"fid", "kid", "is", "prc", "sfid", "entropy", "memorization", "l2"}
    assert f"fid          {result['metrics']['fid']:.6g}" in first.stdout
    assert result["extractors"]["tiny"]["reference_extracted"] == 50
    # same numbers as the Python API on features from the same images
    ex = get_extractor("tiny", weights_path=weights)
    g, r = ex(load_folder(gen)).features, ex(load_folder(ref)).features
    assert result["metrics"]["fid"] == pytest.approx(fid_from_features(g, r), rel=1e-9)
    assert result["metrics"]["kid"]["mean"] == pytest.approx(kid(g, r, 5, 20, seed=0)["mean"], rel=1e-9)
    assert result["images"]["n"] == 40 and result["reference"]["n"] == 50
    # second scoring against the same reference: zero reference images extracted
    out2 = tmp / "score2.json"
    second = score(setup, "--metrics", "fid", "--out", out2)
    assert "reference cache (0 images extracted)" in second.stdout
    assert json.loads(out2.read_text())["extractors"]["tiny"]["reference_extracted"] == 0


def test_saved_reference_statistics_give_the_same_scores(setup):
    tmp = setup[0]
    score(setup, "--metrics", "fid,kid", "--kid-subset-size", "20", "--kid-subsets", "5", "--save-ref",
          tmp / "ref.npz", "--out", tmp / "a.json")
    tmp_, weights, gen, _ = setup
    bench_cli("score", "--images", gen, "--ref", tmp / "ref.npz", "--extractor", "tiny", "--weights", weights,
              "--metrics", "fid,kid", "--kid-subset-size", "20", "--kid-subsets", "5", "--out", tmp / "b.json",
              check_rc=0)
    a, b = (json.loads((tmp / f).read_text())["metrics"] for f in ("a.json", "b.json"))
    assert a == b
    # a stats-only file (mu, sigma) is enough for FID
    with np.load(tmp / "ref.npz") as z:
        np.savez(tmp / "mu_sigma.npz", mu=z["mu"], sigma=z["sigma"])
    proc = bench_cli("score", "--images", gen, "--ref", tmp / "mu_sigma.npz", "--extractor", "tiny", "--weights",
                     weights, "--metrics", "fid", "--out", tmp / "c.json", check_rc=0)
    assert json.loads((tmp / "c.json").read_text())["metrics"]["fid"] == pytest.approx(a["fid"], rel=1e-9), proc.stdout


def assert_bad(proc, match: str, tmp: Path):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and match in last, last
    assert files_under(tmp / "cache" / "features") == [] and files_under(tmp / "cache" / "stats") == []
    assert files_under(tmp / "results") == []


@pytest.mark.parametrize("case,match", [
    ("empty", "contains no images"),
    ("sizes", "must have the same size"),
    ("gray", "has mode L"),
    ("16bit", "has mode I;16"),
    ("kid", "KID subset size 1000 exceeds"),
    ("metric", "unknown metric 'fidd'"),
    ("dims", "has 10-d features but extractor tiny gives 64-d"),
])
def test_bad_input_one_error_nothing_written(setup, case, match):
    tmp, weights, gen, ref = setup
    args = {"metrics": "fid"}
    if case == "empty":
        gen = tmp / "empty"
        gen.mkdir()
    elif case == "sizes":
        write_pngs(gen, 1, size=24, seed=9)
        (gen / "0000.png").rename(gen / "zzz.png")
    elif case == "gray":
        gen = write_pngs(tmp / "gray", 5, mode="L")
    elif case == "16bit":
        gen = write_pngs(tmp / "deep", 5, mode="I;16")
    elif case == "kid":
        args["metrics"] = "fid,kid"
    elif case == "metric":
        args["metrics"] = "fidd"
    elif case == "dims":
        ref = tmp / "other.npz"
        np.savez(ref, features=np.random.default_rng(0).standard_normal((30, 10)))
    proc = bench_cli("score", "--images", gen, "--ref", ref, "--extractor", "tiny", "--weights", weights,
                     "--metrics", args["metrics"])
    assert_bad(proc, match, tmp)


def test_weights_hash_mismatch_and_nan_features_nothing_written(setup):
    tmp, weights, gen, ref = setup
    from test_features import random_inception_file

    fake = tmp / "inception.pth"
    random_inception_file(fake)
    proc = bench_cli("score", "--images", gen, "--ref", ref, "--extractor", "inception", "--weights", fake)
    assert_bad(proc, "expected 6726825d", tmp)

    from bench.features.tiny import TinyCNN

    state = TinyCNN(16).state_dict()
    state["body.0.0.weight"][:] = float("nan")
    save_file(state, tmp / "nan.safetensors")
    proc = bench_cli("score", "--images", gen, "--ref", ref, "--extractor", "tiny", "--weights",
                     tmp / "nan.safetensors")
    assert_bad(proc, "NaN", tmp)
