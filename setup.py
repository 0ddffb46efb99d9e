"""Build hook: the wheel carries flowship's JVM parts, so `pip install flowship` is all a job needs.

Everything about the package is declared in pyproject.toml; this file only adds one step to
setuptools' ``build_py``. When a wheel is built (``python -m build``, ``pip wheel .``, or pip
building the sdist), it builds flowship's own jars from ``jvm/`` with Maven and puts them, with the
Flink Kafka SQL connector they need, into the package as ``flowship/_jvm/``::

    flowship/_jvm/flowship-provenance.jar
    flowship/_jvm/flowship-state-reader.jar
    flowship/_jvm/connector/flink-sql-connector-kafka-<version>.jar

Building therefore needs a JDK 17 and Maven; installing the wheel needs neither. Maven is skipped
when the jars in ``jvm/*/target/`` are newer than every file under the modules' sources (e.g. right
after ``make jars``). The Kafka broker that ``flowship.testing`` starts is not in the wheel: it is
fetched on first use (``flowship/testing/broker/``).

Editable installs (``pip install -e``, what ``make setup`` does) bundle nothing: a checkout finds
the jars in its own ``jvm/`` build output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
JVM = ROOT / "jvm"
#: The Maven modules whose jars go into the wheel (``-am`` adds the parent pom).
MODULES = ("provenance", "state-reader")
MAVEN = ["mvn", "--batch-mode", "--quiet", "-f", "jvm/pom.xml", "package"]
MAVEN += ["-pl", ",".join(MODULES), "-am"]
#: The package folder the jars go to, relative to the package root.
BUNDLE = "flowship/_jvm"


def _connector_version() -> str:
    pom = (JVM / "pom.xml").read_text(encoding="utf-8")
    match = re.search(r"<flink\.kafka\.connector\.version>([^<]+)<", pom)
    if not match:
        msg = "jvm/pom.xml declares no flink.kafka.connector.version"
        raise RuntimeError(msg)
    return match[1].strip()


def bundled_jars() -> dict[str, Path]:
    """{path under flowship/_jvm: built file under jvm/} for every jar the wheel carries."""
    connector = f"flink-sql-connector-kafka-{_connector_version()}.jar"
    return {
        "flowship-provenance.jar": JVM / "provenance/target/flowship-provenance.jar",
        "flowship-state-reader.jar": JVM / "state-reader/target/flowship-state-reader.jar",
        f"connector/{connector}": JVM / "provenance/target/connector" / connector,
    }


def _jvm_sources() -> list[Path]:
    files = [JVM / "pom.xml"]
    for module in MODULES:
        for path in (JVM / module).rglob("*"):
            if path.is_file() and "target" not in path.relative_to(JVM / module).parts:
                files.append(path)
    return files


def _up_to_date(jars: dict[str, Path]) -> bool:
    if not all(p.is_file() for p in jars.values()):
        return False
    newest_source = max(p.stat().st_mtime for p in _jvm_sources())
    return min(p.stat().st_mtime for p in jars.values()) >= newest_source


def build_jars() -> dict[str, Path]:
    """Build the bundled jars with Maven unless they are up to date; return them."""
    jars = bundled_jars()
    if _up_to_date(jars):
        return jars
    if shutil.which("mvn") is None:
        if all(p.is_file() for p in jars.values()):
            print("warning: mvn not found; bundling the jars already built in jvm/*/target/")
            return jars
        msg = (
            "building the flowship wheel builds its jars from jvm/ and needs Maven (mvn) and a "
            "JDK 17 on PATH; installing the wheel needs neither"
        )
        raise RuntimeError(msg)
    print("building flowship's jars:", " ".join(MAVEN))
    subprocess.run(MAVEN, cwd=ROOT, check=True)
    missing = [str(p) for p in jars.values() if not p.is_file()]
    if missing:
        msg = f"Maven finished but did not produce {missing}"
        raise RuntimeError(msg)
    return jars


class BuildPyWithJars(build_py):
    """``build_py`` that also copies the jars into ``flowship/_jvm/`` of the build."""

    def run(self) -> None:
        """Build the Python package as usual, then add the jars (not for editable installs)."""
        super().run()
        if getattr(self, "editable_mode", False):
            return  # a checkout uses its jvm/ build output
        bundle = Path(self.build_lib) / BUNDLE
        if bundle.exists():
            shutil.rmtree(bundle)  # no jar of an earlier build lingers in the wheel
        for name, source in build_jars().items():
            target = bundle / name
            target.parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(source), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        """The files this command writes, the jars included."""
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs += [str(Path(self.build_lib) / BUNDLE / name) for name in bundled_jars()]
        return outputs


setup(cmdclass={"build_py": BuildPyWithJars})
