"""``flowship.job`` and ``flowship.deploy`` import without cycles, and deploy never imports job.

The graph counts every import of a flowship module, also those inside functions: a
function-local import that only dodges a cycle is still an edge here, so the cycle shows.
Imports under ``if TYPE_CHECKING:`` are left out (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("flowship.job", "flowship.deploy")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (not under ``if TYPE_CHECKING:``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for s in node.orelse for n in _runtime_imports_of(s))
            continue
        yield from _runtime_imports_of(node)


def _runtime_imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _runtime_imports(node)


def _edges(path: Path) -> set[str]:
    """The flowship modules ``path`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    out: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("flowship"))
        elif node.module and node.module.startswith("flowship") and not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if _is_module(sub) else node.module)
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in (ROOT / "flowship").rglob("*.py")}
    return {name: _edges(path) & modules.keys() for name, path in modules.items()}


def _ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PACKAGES)


def _cycle(graph: dict[str, set[str]], start: str, nodes: set[str]) -> list[str] | None:
    """A path among ``nodes`` from ``start`` back to ``start``, or None."""
    seen: set[str] = set()

    def back(node: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph[node] & nodes):
            if nxt == start:
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                if (found := back(nxt, [*path, nxt])) is not None:
                    return found
        return None

    return back(start, [start])


def test_the_graph_sees_function_local_imports() -> None:
    graph = _graph()
    # Job.main imports the deployer lazily (a TaskManager never needs it): still an edge
    assert "flowship.job._main" in graph["flowship.job._job"]
    assert "flowship.deploy.engine" in graph["flowship.job._main"]
    assert "flowship.job._job" not in graph["flowship.job._main"]  # TYPE_CHECKING only


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set()}
    assert _cycle(graph, "a", set(graph)) == ["a", "b", "c", "a"]
    assert _cycle(graph, "d", set(graph)) is None


def test_job_and_deploy_have_no_import_cycle() -> None:
    graph = _graph()
    # the root package is imported before any of its modules: an edge to it adds nothing
    nodes = {m for m in graph if m.startswith("flowship.")}
    for module in sorted(m for m in nodes if _ours(m)):
        cycle = _cycle(graph, module, nodes)
        assert cycle is None, " -> ".join(cycle or [])


def test_deploy_never_imports_job_or_pyflink() -> None:
    for path in (ROOT / "flowship" / "deploy").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {
            n.module if isinstance(n, ast.ImportFrom) else a.name
            for n in _runtime_imports(tree)
            for a in n.names
        }
        bad = {n for n in names if n and n.startswith(("flowship.job", "pyflink"))}
        assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "module", sorted(m for m in _graph() if _ours(m)), ids=lambda m: m.removeprefix("flowship.")
)
def test_each_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
