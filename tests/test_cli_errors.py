"""Bad input: one clear line on stderr, exit code 2, nothing under results/."""

import re
import textwrap

import pytest

from conftest import bench_cli, result_files, small_task_file


def _one_line_error(proc, *needles):
    """Exactly one `error:` line and no traceback (progress bars may share stderr)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "|" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--task", "dit-transfr", "--method", "full-ft", "--profile", "tiny"], ["unknown task", "did you mean 'dit-transfer'"]),
        (["--task", "dit-transfer", "--method", "ful-ft", "--profile", "tiny"], ["unknown method", "did you mean 'full-ft'"]),
        (["--task", "dit-transfer", "--method", "full-ft", "--profile", "tiyn"], ["unknown profile", "did you mean 'tiny'"]),
        (["--task", "dit-transfer", "--method", "full-ft", "--profile", "tiny", "--dataset", "food-101"],
         ["unknown dataset", "did you mean 'food101'"]),
        (["--task", "dit-transfer", "--method", "full-ft", "--profile", "tiny", "--set", "colour=red"],
         ["config key colour", "Extra inputs are not permitted"]),
        (["--task", "dit-transfer", "--method", "full-ft", "--profile", "tiny", "--seeds", "x"], ["seeds must be integers"]),
        (["--task", "dit-transfer", "--method", "full-ft", "--profile", "tiny", "--steps", "0"], ["--steps must be positive"]),
        (["--task", "dit-transfer"], ["the following arguments are required: --method"]),
    ],
)
def test_bad_run_arguments(isolated_dirs, args, needles):
    proc = bench_cli("run", *args, check_rc=2)
    _one_line_error(proc, *needles)
    assert result_files(isolated_dirs / "results") == []


def test_paper_profile_offline_says_what_to_do(isolated_dirs):
    proc = bench_cli("run", "--task", "dit-transfer", "--method", "full-ft", "--dataset", "food101", "--seeds", "0",
                     check_rc=2)
    _one_line_error(proc, "facebook/DiT-XL-2-256", "--profile tiny", "huggingface-cli download")
    assert result_files(isolated_dirs / "results") == []


def test_malformed_task_path(isolated_dirs, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nbase: {train: [1, 2\n")
    proc = bench_cli("run", "--task", bad, "--method", "full-ft", "--profile", "tiny", check_rc=2)
    _one_line_error(proc, "malformed YAML")


def _plugin(tmp_path):
    """An out-of-tree method registered through the `bench.methods` entry-point group, exactly as a
    user's package would (a dist-info folder with entry_points.txt on the path)."""
    pkg = tmp_path / "plugin"
    (pkg / "nanplug-0.1.dist-info").mkdir(parents=True)
    (pkg / "nanplug-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: nanplug\nVersion: 0.1\n")
    (pkg / "nanplug-0.1.dist-info" / "entry_points.txt").write_text("[bench.methods]\nnan-loss = nan_method:NanLoss\n")
    (pkg / "nan_method.py").write_text(textwrap.dedent('''
        from bench.method import Method

        class NanLoss(Method):
            name = "nan-loss"
            summary = "test plugin whose loss diverges at the third step"
            calls = 0

            def loss(self, per_sample, batch, ctx):
                NanLoss.calls += 1
                return per_sample.mean() * (float("nan") if NanLoss.calls >= 3 else 1.0)
    '''))
    return {"PYTHONPATH": str(pkg)}


def test_bare_ls_lists_every_section_with_entry_point_methods(tmp_path):
    proc = bench_cli("ls", env_extra=_plugin(tmp_path), check_rc=0)
    assert "nan-loss" in proc.stdout and "diverges" in proc.stdout
    # Unconditional datasets have no class count; the listing says so instead of crashing.
    assert re.search(r"^  limited-data \[tiny\] pokemon +unlabelled +synthetic:creatures", proc.stdout, re.M)
    assert re.search(r"^  dit-transfer \[tiny\] food101 +10 classes +synthetic:plates", proc.stdout, re.M)


def test_nan_loss_stops_the_run_without_a_result(isolated_dirs, tmp_path):
    task = small_task_file(tmp_path)
    proc = bench_cli("run", "--task", task, "--method", "nan-loss", "--profile", "tiny", "--dataset", "food101",
                     "--seeds", "0", env_extra=_plugin(tmp_path), check_rc=1)
    _one_line_error(proc, "loss became nan at step 2", "No result was written")
    assert result_files(isolated_dirs / "results") == []


def test_weights_that_do_not_match_the_pinned_hash_are_refused(isolated_dirs, tmp_path):
    task = small_task_file(tmp_path)
    text = task.read_text()
    import yaml

    raw = yaml.safe_load(text)
    raw["profiles"]["tiny"]["backbone"]["weights_sha256"] = "0" * 64
    task.write_text(yaml.safe_dump(raw))
    proc = bench_cli("run", "--task", task, "--method", "full-ft", "--profile", "tiny", "--dataset", "food101",
                     "--seeds", "0", check_rc=2)
    _one_line_error(proc, "dit-source.safetensors", "sha256", "bench build-tiny source --task dit-transfer")
    assert result_files(isolated_dirs / "results") == []


def test_ls_methods_of_a_task_are_those_of_its_family():
    proc = bench_cli("ls", "--methods", "--task", "dit-transfer", check_rc=0)
    listed = {line.split()[0] for line in proc.stdout.splitlines()[1:]}
    assert {"full-ft", "diff-tuning", "lora+diff-tuning"} <= listed
    assert not listed & {"dreambooth", "controlnet", "a3ft"}  # other families' methods


def test_run_help_names_the_default_profile_and_where_to_find_the_others():
    out = " ".join(bench_cli("run", "--help", check_rc=0).stdout.split())
    assert "default: paper" in out and "paper-ldm4" in out and "bench ls --profiles" in out
