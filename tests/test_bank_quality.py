"""The knowledge-bank quality analysis (issue 30, item 2): its held-out split, its file, its table."""

from __future__ import annotations

import json

import numpy as np

from bench.analysis import bank_quality as B
from bench.report.extras import bank_quality_tables
from bench.report.load import load_results
from bench.tasks import load_task


def test_the_floor_and_the_reference_are_disjoint_and_fixed():
    images = np.arange(20)[:, None, None, None].repeat(2, 1).astype(np.uint8)
    floor, ref = B.split_held_out(images, 5)
    assert len(floor) == 5 and len(ref) == 15
    assert not set(floor[:, 0, 0, 0]) & set(ref[:, 0, 0, 0])
    assert np.array_equal(B.split_held_out(images, 5)[0], floor)


def test_the_tiny_source_domain_comes_from_the_weights_manifest():
    assert B.source_domain(load_task("dit-transfer", "tiny")).generator == "source-shapes"


def test_a_bank_quality_file_is_read_into_its_table(tmp_path):
    task = load_task("dit-transfer", "tiny")
    path = tmp_path / task.key / "tiny" / "analysis" / B.NAME / B.METHOD / "abc123" / B.DATASET / "seed0.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": 1, "analysis": B.NAME, "task": task.name, "task_version": task.file.version,
                                "profile": "tiny", "dataset": B.DATASET, "method": B.METHOD, "config_hash": "abc123",
                                "seed": 0, "values": {"fid_bank": 3.0, "fid_real": 2.0, "fid_gap": 1.0,
                                                      "fid_ratio": 1.5}}))
    rs = load_results(tmp_path)
    assert not rs.problems and len(rs.analyses) == 1
    (table,) = bank_quality_tables(rs)
    assert table.rows == [["abc123", "0", "3.000", "2.000", "1.000", "1.500"]]
