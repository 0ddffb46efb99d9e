"""A job version's manifest: what it holds, computed from its code without starting Flink.

The compatibility gate compares the running version's manifest with the new code's. Format::

    {"format": 1, "job": ..., "version": ..., "code_digest": "sha256:...",
     "flink_version": "2.2.1", "execution_mode": "thread", "state_layout": "...",
     "sources": [...], "sinks": [...], "operator_uids": [...],
     "stateful": {uid: {"class": ..., "states": {name: {"kind", "layout", "name", "current",
                                                        "versions": [...], "migrations": [...]}}}},
     "dropped": [uid, ...], "stateless": false,
     "flags": [{"key", "type", "variants", "default", "targeting_key"}], "control": bool,
     "graph": {"operators": [...]}}

``graph`` describes the stream graph Flink will run (see :mod:`flowship.job._graph`); it is
there when the graph was built (a deployment, a dry run, ``--manifest``), absent from a manifest
computed from the declarations alone and from those recorded before flowship described graphs.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

from flowship.deploy.archive import script_digest
from flowship.state import STATE_LAYOUT, registered

if TYPE_CHECKING:
    from flowship.job._job import Job

FORMAT = 1


def _flink_version() -> str:
    try:
        return metadata.version("apache-flink")
    except metadata.PackageNotFoundError:  # pragma: no cover - pyflink is a dependency
        return "unknown"


def build_manifest(
    job: Job, execution_mode: str = "thread", graph: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest of ``job`` as declared in its module (JSON-serializable).

    ``graph``: the built stream graph's description (:func:`flowship.job._graph.describe_graph`).
    """
    job.check_stateless()
    stateful = registered(job.module)
    uids: list[str] = []
    for source in job.sources:
        uids += [source.uid, f"{source.uid}.decode", f"{source.uid}.dlq"]
    for sink in job.sinks:
        uids += [sink.uid, f"{sink.uid}.encode"]
    uids += list(stateful)
    manifest = {
        "format": FORMAT,
        "job": job.name,
        "version": job.version,
        "code_digest": script_digest(job.script),
        "script": str(job.script),
        "flink_version": _flink_version(),
        "execution_mode": execution_mode,
        "state_layout": STATE_LAYOUT,
        "sources": [s.describe() for s in job.sources],
        "sinks": [s.describe() for s in job.sinks],
        "operator_uids": sorted(uids),
        "stateful": {uid: info.describe() for uid, info in sorted(stateful.items())},
        "dropped": sorted(job.dropped),
        "stateless": job.stateless,
        "flags": [f.describe() for f in job.flags],
        "control": job.control,
    }
    if graph is not None:
        manifest["graph"] = graph
    return manifest
