"""Task files: schema, overlays, and the errors a user sees for bad ones."""

from pathlib import Path

import pytest
import yaml

from bench.errors import BenchError
from bench.spec import ProfileSpec, overlay
from bench.tasks import load_task, read_task_file
from conftest import ROOT, bench_cli

TASK = ROOT / "tasks" / "dit-transfer.yaml"


def test_every_profile_resolves_with_its_own_data():
    paper = load_task("dit-transfer", "paper").spec
    tiny = load_task("dit-transfer", "tiny").spec
    assert paper.backbone.pretrained.repo == "facebook/DiT-XL-2-256" and paper.backbone.vae is not None
    assert paper.train.steps == 24000 and paper.train.batch_size == 32 and paper.train.lr == 1e-4
    assert set(paper.datasets) == set(tiny.datasets) and len(tiny.datasets) == 8
    # The overlay swapped every hub source for a synthetic stand-in (null deleted the hub key).
    assert all(d.hub is not None for d in paper.datasets.values())
    assert all(d.synthetic is not None and d.hub is None for d in tiny.datasets.values())
    assert tiny.backbone.pretrained is None and tiny.backbone.weights


def test_overlay_merges_mappings_and_null_deletes():
    base = {"a": {"x": 1, "y": 2}, "b": [1, 2], "c": 3}
    assert overlay(base, {"a": {"y": 5, "z": None}, "b": [9], "c": None}) == {"a": {"x": 1, "y": 5}, "b": [9]}
    assert base == {"a": {"x": 1, "y": 2}, "b": [1, 2], "c": 3}  # inputs untouched


def _write(tmp_path: Path, raw) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return path


def test_unknown_key_is_rejected_with_its_location(tmp_path):
    raw = yaml.safe_load(TASK.read_text())
    raw["base"]["train"]["learning_rate"] = 1e-4
    with pytest.raises(BenchError, match=r"train\.learning_rate: Extra inputs are not permitted"):
        read_task_file(_write(tmp_path, raw))


def test_unknown_top_level_key_and_missing_version(tmp_path):
    raw = yaml.safe_load(TASK.read_text())
    raw["colour"] = "blue"
    with pytest.raises(BenchError, match="colour"):
        read_task_file(_write(tmp_path, raw))
    raw.pop("colour")
    raw.pop("version")
    with pytest.raises(BenchError, match="version: Field required"):
        read_task_file(_write(tmp_path, raw))


def test_profile_errors_name_the_profile(tmp_path):
    raw = yaml.safe_load(TASK.read_text())
    raw["profiles"]["tiny"]["sampling"]["steps"] = 0
    with pytest.raises(BenchError, match=r"profile tiny: sampling\.steps"):
        read_task_file(_write(tmp_path, raw))


def test_dataset_needs_exactly_one_source(tmp_path):
    raw = yaml.safe_load(TASK.read_text())
    raw["profiles"]["tiny"]["datasets"]["food101"]["hub"] = {"path": "ethz/food101"}
    with pytest.raises(BenchError, match="exactly one of 'hub' or 'synthetic'"):
        read_task_file(_write(tmp_path, raw))


def test_unknown_family_is_one_clear_error(tmp_path):
    raw = yaml.safe_load(TASK.read_text())
    raw["family"] = "class-transfr"
    with pytest.raises(BenchError, match="unknown task family in .*'class-transfr'; did you mean 'class-transfer'"):
        read_task_file(_write(tmp_path, raw))


def test_tracking_rules_and_sweep_sections_parse(tmp_path):
    raw = yaml.safe_load(TASK.read_text())
    raw["base"]["tracking"] = {"every_steps": 100, "metrics": ["fid"],
                               "rules": [{"kind": "first_below", "metric": "fid", "threshold": 30, "hold": 2}]}
    raw["base"]["sweep"] = {"parameter": "knowledge_bank.num_images", "values": [100, 200]}
    task = load_task(str(_write(tmp_path, raw)), "tiny")
    assert task.spec.tracking.rules[0].hold == 2 and task.spec.sweep.values == [100, 200]
    raw["base"]["tracking"]["rules"][0]["kind"] = "first_sideways"
    with pytest.raises(BenchError, match="tracking.rules.0"):
        read_task_file(_write(tmp_path, raw))


def test_more_classes_than_label_rows_is_rejected():
    from bench.families.class_transfer import ClassTransfer

    task = load_task("dit-transfer", "tiny").with_overrides({"datasets.food101.num_classes": 65})
    with pytest.raises(BenchError, match="more than the backbone's 64 label-embedding rows"):
        ClassTransfer.check(task)


def test_task_overrides_are_validated_and_keep_the_profile_as_resolved():
    task = load_task("dit-transfer", "tiny")
    swept = task.with_overrides({"knowledge_bank.num_images": 250})
    assert swept.spec.knowledge_bank.num_images == 250 and swept.resolved() == task.resolved()
    with pytest.raises(BenchError, match="knowledge_bank.num_imagez"):
        task.with_overrides({"knowledge_bank.num_imagez": 250})


def test_validate_cli_accepts_the_task_and_rejects_broken_yaml(tmp_path):
    ok = bench_cli("validate", TASK, check_rc=0)
    assert "dit-transfer@v2" in ok.stdout and "paper, tiny" in ok.stdout
    bad = _write(tmp_path, "version: 1\nname: [unclosed\n")
    proc = bench_cli("validate", bad, check_rc=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "malformed YAML at line" in lines[0]
