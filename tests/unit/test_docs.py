"""The documentation stays true to the code: flags, variables, paths, runnable examples, nav."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowship.cli import build_parser as cli_parser
from flowship.job._settings import Settings
from flowship.job._settings import build_parser as job_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
ENV_VAR = re.compile(r"\bFLOWSHIP_[A-Z][A-Z0-9_]*\b")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
REPO_PREFIXES = ("examples/", "flowship/", "bench/", "jvm/", "docker/", "tests/")

# Flags of other tools the docs quote (pytest, Maven): not flowship's.
OTHER_TOOLS = {
    "--strict-markers": "pytest",
    "--strict": "mkdocs build",
    "--check": "ruff format",
    "--quiet": "mvn",
    "--batch-mode": "mvn",
    "--strict-checksums": "mvn",
    "--outdir": "python -m build",
}
# Flags of the example scripts (argparse inside main()): each must appear in that script.
EXAMPLE_FLAGS = {
    "--bootstrap": "examples/click_sessions/produce.py",
    "--count": "examples/click_sessions/produce.py",
    "--poison": "examples/click_sessions/produce.py",
    "--expect": "examples/click_sessions/read.py",
}
# Planned flags the docs mention as not built yet; remove from here once they exist.
PLANNED: set[str] = {"--input-subset"}  # canary.md: "Not built yet"
# Real but hidden from --help (argparse.SUPPRESS).
HIDDEN: set[str] = set()
# Build output of `make jars` and of the wheel build (flowship/_jvm/): absent from a checkout.
GENERATED = re.compile(r"^(jvm/[a-z-]+/target/|flowship/_jvm/)")


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _cli_help(parser: argparse.ArgumentParser | None = None) -> str:
    parser = parser or cli_parser()
    texts = [parser.format_help()]
    for action in parser._actions:  # the subcommands' own parsers, and theirs (flag set)
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for sub in choices.values():
                texts.append(_cli_help(sub))
    return "\n".join(texts)


def _known_flags() -> set[str]:
    helps = job_parser("job.py", "d").format_help() + _cli_help()
    return set(FLAG.findall(helps))


def test_docs_exist() -> None:
    assert (DOCS / "index.md").is_file()
    assert len(PAGES) >= 15


def test_every_flag_in_the_docs_exists() -> None:
    known = _known_flags()
    unknown: dict[str, list[str]] = {}
    for page in PAGES:
        for flag in FLAG.findall(_text(page)):
            if flag in known or flag in OTHER_TOOLS or flag in PLANNED:
                continue
            if flag in EXAMPLE_FLAGS:
                assert f'"{flag}"' in (ROOT / EXAMPLE_FLAGS[flag]).read_text(), flag
                continue
            if flag in HIDDEN:
                assert flag in job_parser("job.py", "d")._option_string_actions, flag
                continue
            unknown.setdefault(flag, []).append(str(page.relative_to(ROOT)))
    assert not unknown, f"flags in the docs that no parser knows: {unknown}"


def test_planned_flags_are_not_built_yet() -> None:
    # when one is built, drop it from PLANNED and document it as a real flag
    assert not PLANNED & _known_flags()


def test_every_job_flag_is_in_the_cli_reference() -> None:
    reference = _text(DOCS / "reference" / "cli.md")
    for action in job_parser("job.py", "d")._actions:
        if action.help == argparse.SUPPRESS:
            continue  # internal flags, hidden from --help
        for flag in action.option_strings:
            if flag.startswith("--"):
                assert f"`{flag}" in reference, f"{flag} is missing from docs/reference/cli.md"


def test_every_env_var_in_the_docs_is_a_setting() -> None:
    known = {"FLOWSHIP_" + name.upper() for name in Settings.model_fields} | {
        "FLOWSHIP_JARS_DIR",
        "FLOWSHIP_TRACEBACK",
        "FLOWSHIP_JVM_CLASS_CACHE",  # read where PyFlink's JVM starts (flowship/job/_class_cache)
    }
    found = {(var, page.name) for page in PAGES for var in ENV_VAR.findall(_text(page))}
    unknown = sorted(pair for pair in found if pair[0] not in known)
    assert not unknown, f"FLOWSHIP_* variables that are not settings: {unknown}"
    configuration = _text(DOCS / "reference" / "configuration.md")
    missing = sorted(var for var in known if var not in configuration)
    assert not missing, f"settings missing from docs/reference/configuration.md: {missing}"


def _settings_table() -> dict[str, dict[str, str]]:
    """docs/reference/configuration.md's settings table: {field: {column: cell}}."""
    lines = _text(DOCS / "reference" / "configuration.md").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Field |"))
    header = [cell.strip() for cell in lines[start].strip().strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break  # the table ends
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = dict(zip(header, cells, strict=False))
    return rows


def test_documented_health_defaults_are_the_settings_defaults() -> None:
    table = _settings_table()
    documented = {name: row["Default"] for name, row in table.items() if name.startswith("health_")}
    fields = {
        name: field.default
        for name, field in Settings.model_fields.items()
        if name.startswith("health_")
    }
    assert len(fields) >= 10  # not vacuous: window, checkpoints, soak, min inputs, ...
    assert sorted(documented) == sorted(fields), "health_* settings and their docs differ"
    wrong = {}
    for name, default in fields.items():
        cell = documented[name]
        value = ast.literal_eval(cell.strip("`")) if re.fullmatch(r"`[^`]+`", cell) else cell
        if value != default or type(value) is not type(default):
            wrong[name] = f"docs say {cell}, flowship/job/_settings.py has {default!r}"
    assert not wrong, f"docs/reference/configuration.md's defaults are wrong: {wrong}"


def _repo_paths(text: str) -> set[str]:
    paths = set()
    for span in INLINE.findall(FENCE.sub("", text)):
        for token in span.split():
            token = token.split("::")[0].rstrip(".,:;)")
            if token.startswith(REPO_PREFIXES) and not re.search(r"[*<>{}$]", token):
                paths.add(token)
    return paths


def test_repo_paths_in_backticks_exist() -> None:
    missing = []
    for page in PAGES:
        for path in _repo_paths(_text(page)):
            if GENERATED.match(path):
                continue
            if not (ROOT / path).exists():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, f"paths in the docs that do not exist: {missing}"


def test_path_collection_is_not_vacuous() -> None:
    paths = set().union(*(_repo_paths(_text(p)) for p in PAGES))
    assert "examples/click_sessions/job.py" in paths
    assert "flowship/_jars.py" in paths


def _runnable_blocks() -> list[tuple[str, str]]:
    """``(page#n, code)`` of every ```python block whose first line is ``# run``."""
    blocks = []
    for page in PAGES:
        for n, code in enumerate(PYTHON_BLOCK.findall(_text(page)), start=1):
            if code.startswith("# run\n"):
                blocks.append((f"{page.relative_to(DOCS)}#{n}", code))
    return blocks


def test_there_are_runnable_examples() -> None:
    assert len(_runnable_blocks()) >= 2


@pytest.mark.parametrize(
    ("where", "code"), [pytest.param(w, c, id=w) for w, c in _runnable_blocks()]
)
def test_runnable_example(where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"


def _nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [p for item in node for p in _nav_pages(item)]
    if isinstance(node, dict):
        return [p for value in node.values() for p in _nav_pages(value)]
    return []


def test_nav_lists_every_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in PAGES)
    assert sorted(set(nav)) == pages
    assert len(nav) == len(set(nav)), "a page is listed twice"


def test_docs_name_no_machine_paths() -> None:
    for page in PAGES:
        text = _text(page)
        assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text, page
