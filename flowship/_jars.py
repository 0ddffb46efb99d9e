"""Locate the JVM artifacts flowship needs: the Kafka connector, its own provenance jar, the broker.

Search order, first hit wins:

1. ``FLOWSHIP_JARS_DIR`` (a folder holding ``connector/``, ``flowship-provenance.jar`` and, for
   tests, ``kafka/``), for job authors and images that install the jars themselves;
2. the ``jvm/`` build of a flowship source checkout (``make jars``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flowship.errors import MissingJarError

_REPO_JVM = Path(__file__).resolve().parent.parent / "jvm"
_FIX = (
    "run `make jars` in a flowship checkout, or point FLOWSHIP_JARS_DIR at a folder holding "
    "connector/flink-sql-connector-kafka-*.jar and flowship-provenance.jar "
    "(see docs/how-to/install-jars.md)"
)


@dataclass(frozen=True)
class Jars:
    """Paths of the JVM artifacts a flowship job and its tests use."""

    connector: Path
    provenance: Path

    def pipeline_jars(self) -> str:
        """The value for Flink's ``pipeline.jars`` setting (``file://`` URLs, ``;``-separated)."""
        return ";".join(p.as_uri() for p in (self.connector, self.provenance))


def _roots() -> list[tuple[Path, Path, Path]]:
    """Candidate (connector dir, provenance jar, broker dir) triples, in search order."""
    roots = []
    env = os.environ.get("FLOWSHIP_JARS_DIR")
    if env:
        base = Path(env)
        roots.append((base / "connector", base / "flowship-provenance.jar", base / "kafka"))
    roots.append(
        (
            _REPO_JVM / "provenance" / "target" / "connector",
            _REPO_JVM / "provenance" / "target" / "flowship-provenance.jar",
            _REPO_JVM / "broker" / "target" / "kafka",
        )
    )
    return roots


def find_jars() -> Jars:
    """Return the connector and provenance jars, or raise :class:`MissingJarError`."""
    looked: list[str] = []
    for connector_dir, provenance, _ in _roots():
        connectors = sorted(connector_dir.glob("flink-sql-connector-kafka-*.jar"))
        looked.append(str(connector_dir))
        if connectors and provenance.is_file():
            return Jars(connector=connectors[-1], provenance=provenance)
    msg = f"Kafka connector / flowship provenance jar not found (looked in {looked}); {_FIX}"
    raise MissingJarError(msg)


def find_broker_classpath() -> str:
    """Return the classpath (``dir/*``) of the Kafka broker jars, or raise MissingJarError."""
    looked: list[str] = []
    for _, _, broker_dir in _roots():
        looked.append(str(broker_dir))
        if any(broker_dir.glob("kafka_2.13-*.jar")):
            return str(broker_dir / "*")
    msg = f"Kafka broker jars not found (looked in {looked}); {_FIX}"
    raise MissingJarError(msg)
