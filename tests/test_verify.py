"""`bench verify`: a tiny result re-runs bit-identically from what it recorded; a metric edited by
one digit fails, naming the file; paper-profile results are accepted only with full provenance."""

from __future__ import annotations

import json
import re
import subprocess

import torch
from conftest import ROOT, bench_cli, result_files, small_task_file

from bench.provenance import cpu_model
from bench.verify import PINNED_MARK, kernel_pins, recorded_device, verify_file


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def test_verify_reruns_changed_results_and_names_an_edited_one(isolated_dirs, tmp_path):
    """The run is recorded with AVX2 kernels: on an AVX-512 machine verify must re-run it pinned to
    them to reproduce it bit for bit (on an AVX2 machine the pins change nothing)."""
    results = isolated_dirs / "results"
    task = small_task_file(tmp_path, evaluation={"extractor": "tiny", "metrics": ["fid", "kid"], "reference": "eval",
                                                 "kid_subset_size": 20, "kid_subsets": 5})
    avx2 = kernel_pins({"provenance": {"device": {"cpu_capability": "AVX2", "cpu_model": cpu_model(), "torch_threads": 1}}})
    bench_cli("run", "--task", task, "--method", "bitfit", "--profile", "tiny", "--dataset", "food101", "--seeds", "0",
              check_rc=0, env_extra=avx2)
    [path] = result_files(results)
    device = json.loads(path.read_text())["provenance"]["device"]
    assert device.get("kernel_env") == ({k: v for k, v in avx2.items() if k != "OMP_NUM_THREADS"} if avx2 else None)
    assert device["run_device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto
    # A results folder in git, as in a pull request: the file is new since the base commit.
    _git(isolated_dirs, "init", "-q")
    _git(isolated_dirs, "commit", "-q", "--allow-empty", "-m", "base")
    _git(isolated_dirs, "add", "results")
    _git(isolated_dirs, "commit", "-q", "-m", "add a result")
    ok = bench_cli("verify", "--since", "HEAD~1", check_rc=0)
    assert re.search(r"^ok\s+\S*seed0\.json: re-run bit-identical", ok.stdout, re.M) and "1 of 1 verified" in ok.stdout
    assert ("kernels pinned to AVX2, as recorded" in ok.stdout) == (avx2 is not None)

    text = path.read_text()
    fid = json.loads(text)["metrics"]["fid"]
    digits = repr(fid)
    i = digits.index(".") + 1  # the first decimal, one up (a 17th significant digit may not change the float)
    edited = digits[:i] + str((int(digits[i]) + 1) % 10) + digits[i + 1:]
    path.write_text(text.replace(f'"fid": {digits}', f'"fid": {edited}'))
    bad = bench_cli("verify", path)
    assert bad.returncode == 1
    assert f"FAIL      {path}: re-run differs: metrics.fid: recorded {float(edited)!r}, re-run {fid!r}" in bad.stdout

    # Paper-profile results are not re-run: accepted with full provenance, refused without.
    paper = json.loads(text)
    paper["profile"] = "paper"
    (tmp_path / "paper.json").write_text(json.dumps(paper))
    del paper["provenance"]["final_state_sha256"]
    (tmp_path / "thin.json").write_text(json.dumps(paper))
    proc = bench_cli("verify", tmp_path / "paper.json", tmp_path / "thin.json")
    assert proc.returncode == 1
    assert re.search(r"^submitted .*paper\.json: submitted, not re-run", proc.stdout, re.M)
    assert re.search(r"^FAIL .*thin\.json: paper-profile result without full provenance \(missing final_state_sha256\)",
                     proc.stdout, re.M)


def test_kernels_are_pinned_only_down_to_a_known_lower_simd_level(monkeypatch):
    import torch

    def result(level):
        return {"provenance": {"device": {"cpu_capability": level, "cpu_model": "AMD EPYC 9654", "torch_threads": 2}}}

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    pins = kernel_pins(result("AVX2"))
    assert pins["ATEN_CPU_CAPABILITY"] == "avx2" and pins["OPENBLAS_CORETYPE"] == "Zen" and pins["OMP_NUM_THREADS"] == "2"
    assert kernel_pins(result("AVX512")) is None and kernel_pins(result("NEON")) is None
    from bench.provenance import KERNEL_ENV

    assert set(pins) == {*KERNEL_ENV, "OMP_NUM_THREADS"}  # results record exactly what verify sets
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert kernel_pins(result("AVX2")) is None and kernel_pins(result("AVX512")) is None  # cannot raise a level


def test_verify_reruns_on_the_device_kind_the_result_was_computed_on(monkeypatch, tmp_path):
    """A CPU result is re-run on the CPU even where a GPU is present, and a GPU result where none is
    fails with one line (a re-run on the other kind could not agree bit for bit)."""
    assert recorded_device({"provenance": {"device": {"run_device": "cpu", "cuda": True}}}) == "cpu"
    assert recorded_device({"provenance": {"device": {"cuda": False}}}) == "cpu"  # recorded before run_device
    assert recorded_device({"provenance": {"device": {"cuda": True}}}) == "auto"
    committed = next((ROOT / "results" / "dit-transfer@v2" / "tiny" / "full-ft").rglob("seed0.json"))
    result = json.loads(committed.read_text())
    result["provenance"]["device"]["run_device"] = "cuda"
    (tmp_path / "gpu.json").write_text(json.dumps(result))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(PINNED_MARK, "1")  # in-process: no pinned child re-run
    assert verify_file(tmp_path / "gpu.json") == (
        "FAIL", "recorded on a GPU: re-running it bit for bit needs one, and this machine has no CUDA")
