"""Speed of the metric suite, as ratios against the libraries users know (not a timed test).

    /work/venv/bin/python benchmarks/bench_fid.py [--n 10000] [--dim 2048] [--repeats 2]

1. FID from statistics at D=2048, N=10k: ours (Cholesky + eigvalsh, float64) vs clean-fid's
   `frechet_distance` (scipy sqrtm) and torch-fidelity's (eigvals), same statistics, same value.
2. A second scoring against the same reference: reference images extracted (expect 0).
3. Feature-extraction throughput (images/s) of the tiny and (random-weight) Inception extractors.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def best_of(fn, repeats):
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), value


def bench_fid(n: int, dim: int, repeats: int) -> None:
    from cleanfid.fid import frechet_distance as cleanfid_fd
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    from bench.metrics import feature_stats, frechet_distance

    rng = np.random.default_rng(0)
    mix = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    g = np.maximum(rng.standard_normal((n, dim)) @ mix, 0)
    r = np.maximum(rng.standard_normal((n, dim)) @ mix * 1.05 + 0.02, 0)
    t = time.perf_counter()
    sg, sr = feature_stats(g), feature_stats(r)
    t_stats = time.perf_counter() - t
    t_ours, ours = best_of(lambda: frechet_distance(sg, sr), repeats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_cf, cf = best_of(lambda: float(cleanfid_fd(sg.mu, sg.sigma, sr.mu, sr.sigma)), repeats)
    t_tf, tf = best_of(lambda: fid_statistics_to_metric({"mu": sg.mu, "sigma": sg.sigma},
                                                        {"mu": sr.mu, "sigma": sr.sigma}, False)[
        "frechet_inception_distance"], repeats)
    print(f"[1] FID from statistics, D={dim}, N={n} (best of {repeats}; statistics took {t_stats:.2f} s each pair)")
    print(f"    ours (cholesky+eigvalsh) {t_ours:7.2f} s  FID={ours:.9f}")
    print(f"    clean-fid (sqrtm)        {t_cf:7.2f} s  FID={cf:.9f}  rel diff {abs(ours - cf) / cf:.1e}  "
          f"speed-up x{t_cf / t_ours:.1f}")
    print(f"    torch-fidelity (eigvals) {t_tf:7.2f} s  FID={tf:.9f}  rel diff {abs(ours - tf) / tf:.1e}  "
          f"speed-up x{t_tf / t_ours:.1f}")


class Counting:
    """Wraps an extractor and counts the images it actually runs on."""

    def __init__(self, ex):
        self.ex, self.count = ex, 0

    def __getattr__(self, name):
        return getattr(self.ex, name)

    def __call__(self, images, desc="features"):
        self.count += len(images)
        return self.ex(images, desc=desc)


def bench_cache_and_throughput(tmp: Path) -> None:
    from safetensors.torch import save_file

    from bench.features import get_extractor
    from bench.features.cache import cached_features
    from bench.features.tiny import TinyCNN

    torch.manual_seed(0)
    save_file(TinyCNN(16).state_dict(), tmp / "tiny.safetensors")
    tiny = get_extractor("tiny", weights_path=tmp / "tiny.safetensors")
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (5000, 16, 16, 3), dtype=np.uint8)
    counted = Counting(tiny)
    t1 = time.perf_counter()
    cached_features(counted, ref)
    t1 = time.perf_counter() - t1
    first = counted.count
    t2 = time.perf_counter()
    cached_features(counted, ref)
    t2 = time.perf_counter() - t2
    print(f"[2] scoring twice against the same 5000-image reference: extracted {first} then {counted.count - first} "
          f"reference images ({t1:.2f} s then {t2:.2f} s, x{t1 / t2:.0f})")

    t = time.perf_counter()
    tiny(ref[:2000])
    rate = 2000 / (time.perf_counter() - t)
    print(f"[3] extraction throughput on {torch.get_num_threads()} CPU threads"
          f"{' + ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ''}:")
    print(f"    tiny (16 px)                   {rate:8.0f} images/s")
    sys_path = Path(__file__).resolve().parents[1] / "tests"
    import sys

    sys.path.insert(0, str(sys_path))
    from test_features import random_inception_file

    digest = random_inception_file(tmp / "inception.pth")
    imgs = rng.integers(0, 256, (32, 64, 64, 3), dtype=np.uint8)
    for name in ("inception", "clean-inception"):
        ex = get_extractor(name, weights_path=tmp / "inception.pth", expected_sha256=digest)
        ex(imgs[:4])  # warm-up
        t = time.perf_counter()
        ex(imgs)
        print(f"    {name:<16} (64 -> 299 px) {32 / (time.perf_counter() - t):8.1f} images/s  (random weights)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    with tempfile.TemporaryDirectory() as d:
        os.environ["BENCH_CACHE"] = str(Path(d) / "cache")
        bench_fid(a.n, a.dim, a.repeats)
        bench_cache_and_throughput(Path(d))


if __name__ == "__main__":
    main()
