"""The shape of the code: imports flow one way, and a family is one folder.

Built with grimp (a real import graph of every `import` in bench/, function-level ones included;
imports under `if TYPE_CHECKING:` are left out, since they never run). Fails on any import cycle,
on any core module that imports a family's module, on a family that imports another family, and
on a backbone adapter that reaches the runner or the trainer.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import grimp
import pytest

from bench.families import BUILTIN, family_class, family_names


def import_graph(package: str, path: str | None = None):
    if path is not None:
        sys.path.insert(0, path)
    try:
        return grimp.build_graph(package, include_external_packages=False, exclude_type_checking_imports=True,
                                 cache_dir=None)
    finally:
        if path is not None:
            sys.path.remove(path)


def cycles(graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def family_of(module: str) -> str | None:
    """The family folder a module belongs to (bench.families.<name>...), or None for the core. The
    family interface (base) and the batches several families share are core."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[:2] == ["bench", "families"] and parts[2] not in ("base", "batches"):
        return parts[2]
    return None


@pytest.fixture(scope="module")
def graph():
    return import_graph("bench")


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    # the check above is only as good as the finder: a package whose modules import each other
    pkg = tmp_path / "cyclic_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from cyclic_pkg import b\n")
    (pkg / "b.py").write_text("from cyclic_pkg import c\n")
    (pkg / "c.py").write_text("import cyclic_pkg.a\n")
    (pkg / "d.py").write_text("from cyclic_pkg import a\n")
    assert cycles(import_graph("cyclic_pkg", str(tmp_path))) == [["cyclic_pkg.a", "cyclic_pkg.b", "cyclic_pkg.c"]]


def test_core_never_imports_a_family_and_families_never_import_each_other(graph):
    bad = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            theirs = family_of(imported)
            if theirs is not None and family_of(module) != theirs:
                bad.append(f"{module} -> {imported}")
    assert bad == []


def test_backbones_never_reach_the_runner_or_the_trainer(graph):
    backbones = [m for m in graph.modules if m == "bench.backbone" or m.startswith("bench.backbone.")]
    reached = {m for b in backbones for m in graph.find_upstream_modules(b)} | set(backbones)
    above = ("bench.runner", "bench.trainer", "bench.executors", "bench.planning", "bench.report", "bench.commands")
    assert sorted(m for m in reached if m.startswith(above)) == []


def test_every_builtin_family_is_one_folder_with_its_report_and_assets():
    from bench.report.study import StudyReport, _load

    assert set(BUILTIN) <= set(family_names())
    for name, target in BUILTIN.items():
        module = target.split(":")[0]
        assert family_of(module) is not None and module.count(".") == 2, module
        cls = family_class(name)
        assert cls.__module__ == module
        if cls.report is not None:  # its report lives in its folder and is a StudyReport
            assert cls.report.startswith(module + "."), cls.report
            assert isinstance(_load(cls.report), StudyReport)
        for target in cls.tiny_assets.values():
            assert target.startswith(module + "."), target


@pytest.mark.parametrize("old,new", [("bench.conditions", "bench.families.controlnet.conditions"),
                                     ("bench.report.corruption", "bench.families.pretrain_corruption.report")])
def test_an_old_module_path_says_where_it_moved(old, new):
    parent, _, leaf = old.rpartition(".")
    code = textwrap.dedent(f"""
        try:
            from {parent} import {leaf}
        except ImportError as err:
            print(err)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"{old} moved to {new}: import it from there"
