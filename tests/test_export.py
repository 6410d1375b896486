"""`bench export` on committed result files: one Parquet row per usable file, readable by pandas
and by `datasets`, byte-identical when repeated, and invalid files excluded and named."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from conftest import ROOT, bench_cli

# A handful of committed results: two seeds of one config, another method, and a third whose
# tracked curve fills the `tracking` column. All on one stand-in (the loader's staleness check
# regenerates its data once).
COMMITTED = ["limited-data@v1/tiny/full-ft/56f76a20b1d0/pokemon/seed0.json",
             "limited-data@v1/tiny/full-ft/56f76a20b1d0/pokemon/seed1.json",
             "limited-data@v1/tiny/a3ft/5ebb59d569b4/pokemon/seed0.json",
             "limited-data@v1/tiny/lora/2c58c74bf87a/pokemon/seed0.json"]


def copy_committed(dest):
    for rel in COMMITTED:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / "results" / rel, dest / rel)


def export(results, out):
    return bench_cli("export", "--results-dir", results, "--out", out, check_rc=0)


def test_export_rows_readers_determinism_and_exclusions(tmp_path):
    results, out = tmp_path / "res", tmp_path / "out" / "results.parquet"
    copy_committed(results)
    proc = export(results, out)
    assert f"wrote {len(COMMITTED)} rows" in proc.stdout and "0 file(s) excluded" in proc.stdout

    df = pd.read_parquet(out)
    assert len(df) == len(COMMITTED)
    assert list(df["source_file"]) == sorted(COMMITTED)
    rel = COMMITTED[0]
    raw = json.loads((results / rel).read_text())
    row = df.set_index("source_file").loc[rel]
    assert row["metrics.cfid"] == raw["metrics"]["cfid"]  # exact: float64 all the way
    assert row["metrics.kid.mean"] == raw["metrics"]["kid"]["mean"]
    assert row["provenance.final_state_sha256"] == raw["provenance"]["final_state_sha256"]
    assert json.loads(row["method_config"]) == raw["method_config"]
    tracked = df.set_index("source_file").loc[COMMITTED[3]]
    assert json.loads(tracked["tracking"])["curves"]["cfid"]

    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(out), cache_dir=str(tmp_path / "hf"))
    assert ds["train"].num_rows == len(df)

    again = tmp_path / "again.parquet"
    export(results, again)
    assert again.read_bytes() == out.read_bytes()

    # A file whose FID is text fails the result schema: named with its reason, not exported.
    bad = results / COMMITTED[1]
    data = json.loads(bad.read_text())
    data["metrics"]["cfid"] = "not a number"
    bad.write_text(json.dumps(data))
    proc = export(results, out)
    assert f"wrote {len(COMMITTED) - 1} rows" in proc.stdout and "1 file(s) excluded" in proc.stdout
    line = next(l for l in proc.stdout.splitlines() if l.startswith("excluded "))
    assert COMMITTED[1] in line and "metrics.cfid" in line
    assert COMMITTED[1] not in set(pd.read_parquet(out)["source_file"])


def test_no_results_is_one_line_and_exit_2(tmp_path):
    proc = bench_cli("export", "--results-dir", tmp_path / "missing", "--out", tmp_path / "x.parquet", check_rc=2)
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.parquet").exists()
