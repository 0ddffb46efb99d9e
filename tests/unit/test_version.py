"""One version everywhere: the package, its metadata, the CHANGELOG and flowship's jars."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import flowship

ROOT = Path(__file__).resolve().parents[2]
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def test_pyproject_takes_the_version_from_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "flowship.__version__"}


def test_installed_metadata_matches_the_package() -> None:
    # an editable install's metadata is written at install time: `make setup` reinstalls when
    # flowship/__init__.py changes
    assert importlib.metadata.version("flowship") == flowship.__version__


def test_version_is_semver() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", flowship.__version__)


def test_changelog_names_the_version() -> None:
    headings = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    versions = [h for h in headings if h != "Unreleased"]
    assert versions, f"no versioned entry in CHANGELOG.md: {headings}"
    assert versions[0] == flowship.__version__, f"latest CHANGELOG entry {versions[0]}"


def test_jvm_poms_carry_the_version() -> None:
    poms = sorted((ROOT / "jvm").glob("*/pom.xml"))
    assert len(poms) >= 3
    parent = ET.parse(ROOT / "jvm" / "pom.xml").getroot()
    assert parent.findtext("m:version", namespaces=POM_NS) == flowship.__version__
    for pom in poms:
        root = ET.parse(pom).getroot()
        version = root.findtext("m:version", namespaces=POM_NS) or root.findtext(
            "m:parent/m:version", namespaces=POM_NS
        )
        assert version == flowship.__version__, f"{pom.relative_to(ROOT)}: {version}"
