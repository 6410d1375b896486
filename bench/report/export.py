"""Every usable run result as one row of a Parquet table (`bench export`).

Files are read through `load_results`, so a file the leaderboard would not average (half-written,
failing the schema, at the wrong path, from another task version, stale) is not exported either;
it is returned with its reason. The table is a pure function of the result files: rows sorted by
source file, columns in a fixed order, no timestamps, so exporting the same results twice gives
byte-identical files. README.md ("Results as data") documents the columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bench.atomic import atomic_write
from bench.errors import BenchError
from bench.planning import stored_identity
from bench.report.load import load_results

S, I, F, B = pa.string(), pa.int64(), pa.float64(), pa.bool_()

# Columns every row has, in table order (the flattened metrics go between identity and training).
# Nested values that are not one scalar (configs, device, packages, tracking) are JSON strings.
IDENTITY = [("task", S), ("task_version", I), ("family", S), ("profile", S), ("dataset", S), ("method", S),
            ("method_config", S), ("config_hash", S), ("sweep", S), ("task_overrides", S), ("seed", I),
            ("run_identity", S), ("budget_override", B), ("steps", I)]
AFTER_METRICS = [("training.trainable_params", I), ("training.total_params", I), ("training.trainable_fraction", F),
                 ("training.final_loss", F), ("training.steps", I),
                 ("samples.n", I), ("samples.sha256", S), ("samples.sampling_seed", I),
                 ("reference.split", S), ("reference.n", I), ("reference.sha256", S),
                 ("provenance.commit", S), ("provenance.dirty", B), ("provenance.backbone_sha256", S),
                 ("provenance.train_data_sha256", S), ("provenance.final_state_sha256", S),
                 ("provenance.device", S), ("provenance.packages", S), ("provenance.wall_time_s", F),
                 ("tracking", S), ("source_file", S)]
_JSON_COLUMNS = {"method_config", "sweep", "task_overrides", "provenance.device", "provenance.packages", "tracking"}


@dataclass
class Export:
    rows: int
    excluded: list[str]  # "<file>: <reason>", one per file not exported
    analyses: int        # analysis files (e.g. chain-of-forgetting): not run results, not rows


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _flatten(prefix: str, value: Any, out: dict) -> None:
    """metrics -> {"metrics.fid": 12.3, "metrics.kid.mean": ..., "metrics.ewc.skipped": "[]"}."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    elif value is None or isinstance(value, (bool, int, float, str)):
        if value is not None:  # absent and null read the same; a column exists only if some row has a value
            out[prefix] = value
    else:
        out[prefix] = _json(value)


def _row(raw: dict, source_file: str) -> dict:
    get = lambda section, key: (raw.get(section) or {}).get(key)  # noqa: E731
    row = {k: raw.get(k) for k in ("task", "task_version", "family", "profile", "dataset", "method",
                                   "config_hash", "seed", "budget_override")}
    row.update(method_config=_json(raw["method_config"]), sweep=_json(raw.get("sweep") or {}),
               task_overrides=_json(raw.get("task_overrides") or {}), run_identity=stored_identity(raw),
               steps=get("budget", "steps"))
    _flatten("metrics", raw["metrics"], row)
    for name, _ in AFTER_METRICS:
        section, _, key = name.partition(".")
        if key:
            value = get(section, key)
            row[name] = _json(value) if name in _JSON_COLUMNS and value is not None else value
    row["tracking"] = _json(raw["tracking"]) if raw.get("tracking") else None
    row["source_file"] = source_file
    return row


def _column(values: list, type_: pa.DataType | None) -> pa.Array:
    if type_ is not None:
        return pa.array(values, type=type_)
    try:  # a metric column: its type is whatever its values share (int and float give float64)
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        # Mixed kinds across files (say a number in one, text in another): keep every value, as JSON text.
        return pa.array([None if v is None else v if isinstance(v, str) else _json(v) for v in values], type=S)


def results_table(results_root: Path) -> tuple[pa.Table, Export]:
    rs = load_results(results_root)
    excluded = rs.problem_lines() + rs.stale_lines()
    loaded = sorted(rs.runs + rs.variants, key=lambda r: r.path.relative_to(rs.root).as_posix())
    rows = [_row(json.loads(r.path.read_text()), r.path.relative_to(rs.root).as_posix()) for r in loaded]
    metrics = sorted({k for row in rows for k in row if k.startswith("metrics.")})
    columns = IDENTITY + [(m, None) for m in metrics] + AFTER_METRICS
    table = pa.table({name: _column([row.get(name) for row in rows], t) for name, t in columns})
    return table, Export(rows=len(rows), excluded=sorted(excluded), analyses=len(rs.analyses))


def export_results(results_root: Path, out: Path, log=print) -> Export:
    results_root = Path(results_root)
    if not results_root.is_dir():
        raise BenchError(f"no results folder at {results_root} (set --results-dir or BENCH_RESULTS)")
    table, info = results_table(results_root)
    for line in info.excluded:
        log(f"excluded {line}")
    if info.rows == 0:
        why = f"; {len(info.excluded)} excluded, listed above" if info.excluded else ""
        raise BenchError(f"no usable run results under {results_root}{why}; nothing exported")
    try:
        with atomic_write(Path(out)) as tmp:
            pq.write_table(table, tmp)
    except OSError as err:
        raise BenchError(f"cannot write {out}: {err}") from None
    log(f"wrote {info.rows} rows ({table.num_columns} columns) to {out}; {len(info.excluded)} file(s) excluded"
        + (f"; {info.analyses} analysis file(s) are not run results and are not exported" if info.analyses else ""))
    return info
