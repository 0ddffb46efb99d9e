"""The broker jars of flowship.testing: the lock, the checks, the fetch (a fake mvn, no JVM)."""

from __future__ import annotations

import hashlib
import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flowship import _jars
from flowship.errors import MissingJarError
from flowship.testing import broker_jars

ROOT = Path(__file__).resolve().parents[2]
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def _deps(pom: Path) -> set[tuple[str, str, str]]:
    root = ET.parse(pom).getroot()
    parent_props = ET.parse(ROOT / "jvm" / "pom.xml").getroot().find("m:properties", POM_NS)
    props = {el.tag.split("}")[1]: el.text or "" for el in parent_props or []}
    out = set()
    for dep in root.iterfind("m:dependencies/m:dependency", POM_NS):
        version = dep.findtext("m:version", "", POM_NS)
        if version.startswith("${"):
            version = props[version[2:-1]]
        out.add((dep.findtext("m:groupId", "", POM_NS), dep.findtext("m:artifactId", "", POM_NS),
                 version))
    return out


def test_fetch_pom_pins_what_the_checkout_builds() -> None:
    assert _deps(broker_jars.POM) == _deps(ROOT / "jvm" / "broker" / "pom.xml")


def test_lock_lists_the_pinned_jars() -> None:
    lock = broker_jars.read_lock()
    assert len(lock) > 10
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in lock.values())
    for _, artifact, version in _deps(broker_jars.POM):
        assert f"{artifact}-{version}.jar" in lock


def test_lock_matches_the_checkout_build() -> None:
    built = ROOT / "jvm" / "broker" / "target" / "kafka"
    if not built.is_dir():
        pytest.skip("jvm/broker not built (make jars)")
    assert broker_jars.verify(built, broker_jars.read_lock()) == []


def _fake_mvn(bin_dir: Path, jars: dict[str, bytes]) -> None:
    """An `mvn` that writes ``jars`` to the -DoutputDirectory it is given."""
    bin_dir.mkdir()
    lines = ["#!/bin/sh", 'for a in "$@"; do case "$a" in -DoutputDirectory=*) '
             'out="${a#-DoutputDirectory=}";; esac; done', 'mkdir -p "$out"']
    lines += [f"printf '%s' '{body.decode()}' > \"$out/{name}\"" for name, body in jars.items()]
    mvn = bin_dir / "mvn"
    mvn.write_text("\n".join(lines) + "\n")
    mvn.chmod(mvn.stat().st_mode | stat.S_IEXEC)


def _lock(path: Path, jars: dict[str, bytes]) -> Path:
    path.write_text("".join(f"{hashlib.sha256(b).hexdigest()}  {n}\n" for n, b in jars.items()))
    return path


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def test_fetch_checks_every_file_and_caches_once(sandbox: Path) -> None:
    jars = {"kafka_2.13-9.9.jar": b"broker", "dep-1.jar": b"dep"}
    _fake_mvn(sandbox / "bin", jars)
    lock = _lock(sandbox / "jars.sha256", jars)
    target = broker_jars.fetch(lock=lock)
    assert target.parent == sandbox / "cache" / "flowship"
    assert sorted(p.name for p in target.glob("*.jar")) == sorted(jars)
    (sandbox / "bin" / "mvn").unlink()  # a second use needs no Maven
    assert broker_jars.fetch(lock=lock) == target


@pytest.mark.parametrize(
    ("fetched", "problem"),
    [
        ({"kafka_2.13-9.9.jar": b"tampered", "dep-1.jar": b"dep"}, "sha256"),
        ({"kafka_2.13-9.9.jar": b"broker"}, "missing dep-1.jar"),
        ({"kafka_2.13-9.9.jar": b"broker", "dep-1.jar": b"dep", "x.jar": b""}, "unexpected x.jar"),
    ],
)
def test_fetch_refuses_jars_that_differ_from_the_lock(
    sandbox: Path, fetched: dict[str, bytes], problem: str
) -> None:
    _fake_mvn(sandbox / "bin", fetched)
    lock = _lock(sandbox / "jars.sha256", {"kafka_2.13-9.9.jar": b"broker", "dep-1.jar": b"dep"})
    with pytest.raises(MissingJarError, match=problem):
        broker_jars.fetch(lock=lock)
    assert not broker_jars.cache_dir(lock).exists(), "nothing unchecked may reach the cache"


def test_without_maven_the_error_says_what_to_install(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(sandbox / "no-bin"))
    monkeypatch.delenv("FLOWSHIP_JARS_DIR", raising=False)
    monkeypatch.setattr(_jars, "_REPO_JVM", sandbox / "no-checkout")
    with pytest.raises(MissingJarError, match=r"install Maven.*FLOWSHIP_JARS_DIR/kafka"):
        broker_jars.broker_classpath()


def test_jars_dir_and_checkout_come_before_the_cache(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox / "jars" / "kafka").mkdir(parents=True)
    (sandbox / "jars" / "kafka" / "kafka_2.13-4.1.1.jar").write_bytes(b"")
    monkeypatch.setenv("FLOWSHIP_JARS_DIR", str(sandbox / "jars"))
    assert broker_jars.broker_classpath() == str(sandbox / "jars" / "kafka" / "*")
