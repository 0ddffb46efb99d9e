"""Locate the JVM artifacts flowship needs: the Kafka connector, its own jars, the test broker.

Search order for the jars a job loads (the Flink Kafka SQL connector, ``flowship-provenance.jar``)
and the dry run's ``flowship-state-reader.jar``, first hit wins:

1. ``FLOWSHIP_JARS_DIR`` (a folder holding ``connector/``, ``flowship-provenance.jar``,
   ``flowship-state-reader.jar`` and, for tests, ``kafka/``), for custom jar locations;
2. the jars bundled in the installed package (``flowship/_jvm/``: the wheel carries them);
3. the ``jvm/`` build output of a flowship source checkout (``make jars``).

The Kafka broker of ``flowship.testing`` is not in the wheel: ``FLOWSHIP_JARS_DIR/kafka``, the
checkout's build, or the per-user cache that :mod:`flowship.testing.broker_jars` fills on first
use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flowship.errors import MissingJarError


def cache_root() -> Path:
    """The per-user cache folder of flowship (``$XDG_CACHE_HOME/flowship``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flowship"


_PACKAGE_JVM = Path(__file__).resolve().parent / "_jvm"
_REPO_JVM = Path(__file__).resolve().parent.parent / "jvm"
_FIX = (
    "reinstall flowship from its wheel (`pip install --force-reinstall flowship`: the wheel "
    "carries these jars), run `make jars` in a flowship checkout, or point FLOWSHIP_JARS_DIR at a "
    "folder holding connector/flink-sql-connector-kafka-*.jar, flowship-provenance.jar and "
    "flowship-state-reader.jar (see docs/how-to/install-jars.md)"
)


@dataclass(frozen=True)
class Jars:
    """Paths of the JVM artifacts a flowship job loads."""

    connector: Path
    provenance: Path

    def pipeline_jars(self) -> str:
        """The value for Flink's ``pipeline.jars`` setting (``file://`` URLs, ``;``-separated)."""
        return ";".join(p.as_uri() for p in (self.connector, self.provenance))


@dataclass(frozen=True)
class _Root:
    """Where one source of jars keeps them."""

    connector_dir: Path
    provenance: Path
    state_reader: Path
    broker_dir: Path | None


def _roots() -> list[_Root]:
    """Candidate locations, in search order."""
    roots = []
    env = os.environ.get("FLOWSHIP_JARS_DIR")
    if env:
        base = Path(env)
        roots.append(
            _Root(
                base / "connector",
                base / "flowship-provenance.jar",
                base / "flowship-state-reader.jar",
                base / "kafka",
            )
        )
    roots.append(
        _Root(
            _PACKAGE_JVM / "connector",
            _PACKAGE_JVM / "flowship-provenance.jar",
            _PACKAGE_JVM / "flowship-state-reader.jar",
            None,
        )
    )
    roots.append(
        _Root(
            _REPO_JVM / "provenance" / "target" / "connector",
            _REPO_JVM / "provenance" / "target" / "flowship-provenance.jar",
            _REPO_JVM / "state-reader" / "target" / "flowship-state-reader.jar",
            _REPO_JVM / "broker" / "target" / "kafka",
        )
    )
    return roots


def find_jars() -> Jars:
    """Return the connector and provenance jars, or raise :class:`MissingJarError`."""
    looked: list[str] = []
    for root in _roots():
        connectors = sorted(root.connector_dir.glob("flink-sql-connector-kafka-*.jar"))
        looked.append(str(root.connector_dir.parent))
        if connectors and root.provenance.is_file():
            return Jars(connector=connectors[-1], provenance=root.provenance)
    msg = f"Kafka connector / flowship provenance jar not found (looked in {looked}); {_FIX}"
    raise MissingJarError(msg)


def find_state_reader() -> Path:
    """``flowship-state-reader.jar``, the dry run's state reader, or raise MissingJarError."""
    looked: list[str] = []
    for root in _roots():
        looked.append(str(root.state_reader))
        if root.state_reader.is_file():
            return root.state_reader
    msg = f"the dry run's state reader flowship-state-reader.jar was not found (looked at {looked})"
    msg += f"; {_FIX}"
    raise MissingJarError(msg)


def find_broker_classpath() -> str | None:
    """The classpath (``dir/*``) of broker jars in FLOWSHIP_JARS_DIR or a checkout, else None.

    :func:`flowship.testing.broker_jars.broker_classpath` falls back to the per-user cache.
    """
    for root in _roots():
        if root.broker_dir is not None and any(root.broker_dir.glob("kafka_2.13-*.jar")):
            return str(root.broker_dir / "*")
    return None


def broker_locations() -> list[str]:
    """The folders :func:`find_broker_classpath` looks in, for error messages."""
    return [str(r.broker_dir) for r in _roots() if r.broker_dir is not None]
