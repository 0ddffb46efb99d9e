"""Where flowship finds its jars: FLOWSHIP_JARS_DIR, the installed package, a checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowship import _jars
from flowship.errors import MissingJarError


def _layout(base: Path) -> Path:
    (base / "connector").mkdir(parents=True)
    (base / "connector" / "flink-sql-connector-kafka-5.0.0-2.2.jar").write_bytes(b"PK")
    (base / "flowship-provenance.jar").write_bytes(b"PK")
    (base / "flowship-state-reader.jar").write_bytes(b"PK")
    return base


@pytest.fixture
def no_jars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("FLOWSHIP_JARS_DIR", raising=False)
    monkeypatch.setattr(_jars, "_PACKAGE_JVM", tmp_path / "site-packages" / "flowship" / "_jvm")
    monkeypatch.setattr(_jars, "_REPO_JVM", tmp_path / "no-checkout")
    return tmp_path


def test_an_installed_package_finds_its_bundled_jars_without_a_setting(no_jars: Path) -> None:
    bundled = _layout(_jars._PACKAGE_JVM)
    jars = _jars.find_jars()
    assert jars.connector.parent == bundled / "connector"
    assert jars.provenance == bundled / "flowship-provenance.jar"
    assert _jars.find_state_reader() == bundled / "flowship-state-reader.jar"
    assert _jars.find_broker_classpath() is None, "the wheel carries no broker"


def test_flowship_jars_dir_overrides_the_bundled_jars(
    no_jars: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _layout(_jars._PACKAGE_JVM)
    custom = _layout(no_jars / "custom")
    monkeypatch.setenv("FLOWSHIP_JARS_DIR", str(custom))
    assert _jars.find_jars().provenance == custom / "flowship-provenance.jar"
    assert _jars.find_state_reader() == custom / "flowship-state-reader.jar"


def test_bundled_jars_come_before_a_checkout(
    no_jars: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = no_jars / "jvm"
    _layout(checkout / "provenance" / "target")
    monkeypatch.setattr(_jars, "_REPO_JVM", checkout)
    assert _jars.find_jars().provenance.is_relative_to(checkout)  # a checkout alone: its build
    bundled = _layout(_jars._PACKAGE_JVM)
    assert _jars.find_jars().provenance == bundled / "flowship-provenance.jar"


def test_missing_jars_name_what_to_install(no_jars: Path) -> None:
    with pytest.raises(MissingJarError, match=r"pip install --force-reinstall flowship") as err:
        _jars.find_jars()
    assert "make jars" in str(err.value) and "FLOWSHIP_JARS_DIR" in str(err.value)
    with pytest.raises(MissingJarError, match=r"flowship-state-reader\.jar"):
        _jars.find_state_reader()
