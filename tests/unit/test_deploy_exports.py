"""``flowship.deploy``'s public names: importable, the submodules' own objects, documented.

``flowship/deploy/__init__.py`` re-exports names from its submodules and lists them in
``__all__``; docs/concepts/deployments.md ("From Python: `flowship.deploy`") lists them too.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import flowship.deploy

ROOT = Path(__file__).resolve().parents[2]
INIT = ROOT / "flowship" / "deploy" / "__init__.py"
PAGE = ROOT / "docs" / "concepts" / "deployments.md"
SECTION = "## From Python: `flowship.deploy`"
PUBLIC = list(flowship.deploy.__all__)


def _reexports() -> dict[str, str]:
    """Each name ``flowship/deploy/__init__.py`` imports, with the submodule it imports it from."""
    found: dict[str, str] = {}
    for node in ast.parse(INIT.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                found[alias.asname or alias.name] = node.module
    return found


def _documented() -> dict[str, str]:
    """Each name the docs' table lists (first column), with its "From" module (second column)."""
    text = PAGE.read_text(encoding="utf-8")
    assert SECTION in text, f"{PAGE.relative_to(ROOT)} has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    listed: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[1].startswith("`flowship.deploy."):
            continue
        for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cells[0]):
            assert name not in listed, f"{name} is listed twice"
            listed[name] = cells[1].strip("`")
    return listed


def test_all_is_every_reexport_once() -> None:
    assert len(PUBLIC) == len(set(PUBLIC)), "a name is in __all__ twice"
    assert set(PUBLIC) == set(_reexports()), "__all__ and the imports of __init__.py differ"
    assert len(PUBLIC) >= 40  # not vacuous: the parse found the package's names


@pytest.mark.parametrize("name", PUBLIC)
def test_a_public_name_is_importable_and_is_its_submodules_own(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from flowship.deploy import {name}", namespace)  # what a user writes
    obj = namespace[name]
    module_name = _reexports()[name]
    module = importlib.import_module(module_name)
    assert getattr(module, name) is obj, f"{name} is not {module_name}.{name}"
    if isinstance(obj, int):  # a constant: assigned in that module, not imported into it
        tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
        assigned = {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert name in assigned, f"{name} is not defined in {module_name}"
    else:
        assert obj.__module__ == module_name, f"{name} is defined in {obj.__module__}"


@pytest.mark.parametrize("name", PUBLIC)
def test_a_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(flowship.deploy, name)
    if isinstance(obj, int):
        # a constant has no docstring of its own: its module's docstring documents its value
        doc = importlib.import_module(_reexports()[name]).__doc__ or ""
        assert re.search(rf"^{obj}\s{{2,}}\S", doc, re.M), f"{name} ({obj}) is not documented"
        return
    doc = (obj.__doc__ or "").strip()
    assert doc, f"{name} has no docstring"
    # a dataclass without one gets its signature as __doc__; an Enum, a generic sentence
    assert not doc.startswith(f"{name}("), f"{name} has only its generated docstring"
    assert doc != "An enumeration.", f"{name} has only its generated docstring"


def test_every_public_name_is_in_the_docs_and_nothing_else_is() -> None:
    listed = _documented()
    missing = sorted(set(PUBLIC) - set(listed))
    assert not missing, f"not in {PAGE.relative_to(ROOT)} ({SECTION}): {missing}"
    stale = sorted(set(listed) - set(PUBLIC))
    assert not stale, f"listed in {PAGE.relative_to(ROOT)} but not exported: {stale}"
    wrong = {n: m for n, m in listed.items() if m != _reexports()[n]}
    assert not wrong, f"listed with the wrong module: {wrong}"


def test_the_docs_give_each_exit_code_its_value() -> None:
    section = PAGE.read_text(encoding="utf-8").split(SECTION, 1)[1]
    for name in PUBLIC:
        value = getattr(flowship.deploy, name)
        if isinstance(value, int):
            assert f"`{name}` ({value})" in section, name
