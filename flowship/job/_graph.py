"""The job's built stream graph, described for the gate (needs the JVM).

Flink matches a savepoint's state to the new job by **operator id**: a hash of the operator's uid
when it has one, else a hash of the graph's shape around it (``set_uid_hash`` pins an id by
hand). Flowship's own declarations name only the operators flowship made or was told about; a
stateful PyFlink operator the job author wrote directly is visible only here. So the gate also
compares the graphs: every operator's ids, uid, kind, key serializer and max parallelism, read
from the stream graph Flink itself will run. Format (the manifest's ``"graph"``)::

    {"operators": [{"id": hex, "user_hash": hex | None, "uid": str | None, "name": str,
                    "kind": "source" | "sink" | "committer" | "keyed" | "broadcast" | "operator",
                    "key": {"type": "Row(String)", "fingerprint": "sha256:..."} | None,
                    "parallelism": int, "max_parallelism": int}]}

``parallelism`` and ``max_parallelism`` are -1 where the graph leaves them to the cluster.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowship.job._job import Job
    from flowship.job._settings import Settings

_FACTORY_KINDS = {
    "SourceOperatorFactory": "source",
    "SinkWriterOperatorFactory": "sink",
    "CommitterOperatorFactory": "committer",
}


def describe_graph(j_graph: Any) -> dict[str, Any]:
    """The manifest's ``"graph"`` section for a Java ``StreamGraph`` (sorted by operator id).

    The graph is not fit to submit afterwards: Flink's hasher leaves it so that its copy at
    submission misses the connector's classes. Describe a graph of its own
    (:func:`describe_env`), never the one to submit.
    """
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    hasher = jvm.org.apache.flink.streaming.api.graph.StreamGraphHasherV2()
    hashes = hasher.traverseStreamGraphAndGenerateHashes(j_graph)
    sources = set(j_graph.getSourceIDs().toArray())
    operators = []
    for node in j_graph.getStreamNodes().toArray():
        node_id = node.getId()
        key = node.getStateKeySerializer()
        user_hash = node.getUserHash()
        operators.append(
            {
                "id": bytes(hashes.get(node_id)).hex(),
                "user_hash": str(user_hash).lower() if user_hash else None,
                "uid": node.getTransformationUID(),
                "name": str(node.getOperatorName()),
                "kind": _kind(node, key, node_id in sources),
                "key": None if key is None else _describe_key(jvm, key),
                "parallelism": int(node.getParallelism()),
                "max_parallelism": int(node.getMaxParallelism()),
            }
        )
    return {"operators": sorted(operators, key=lambda op: op["id"])}


def describe_env(env: Any) -> dict[str, Any]:
    """Describe the graph built on ``env``, from a stream graph of its own.

    ``env`` can then generate the graph it submits (as PyFlink's ``get_execution_plan`` before
    ``execute``).
    """
    return describe_graph(env._generate_stream_graph(clear_transformations=False))


def graph_of(job: Job, settings: Settings) -> dict[str, Any]:
    """Build ``job``'s graph on a local environment (nothing runs) and describe it.

    For ``--manifest`` and the dry run; a deployment describes the graph its target built.
    """
    from flowship.job._runtime import flink_options, local_options, make_env

    env = make_env({**flink_options(job, settings), **local_options(settings)})
    job.build(env, settings)
    return describe_graph(env._generate_stream_graph(clear_transformations=True))


def _kind(node: Any, key: Any, is_source: bool) -> str:
    factory = node.getOperatorFactory()
    factory_name = "" if factory is None else str(factory.getClass().getSimpleName())
    if is_source or factory_name in _FACTORY_KINDS:
        return _FACTORY_KINDS.get(factory_name, "source")
    if key is not None:
        return "keyed"
    operator = factory.getOperator() if factory_name == "SimpleOperatorFactory" else None
    if operator is not None and "Broadcast" in str(operator.getClass().getSimpleName()):
        return "broadcast"  # its broadcast state is operator state
    return "operator"


def _describe_key(jvm: Any, serializer: Any) -> dict[str, str]:
    """A key serializer as a readable type and a fingerprint of its snapshot.

    The snapshot is what a savepoint stores for the key serializer and checks on restore: equal
    bytes, same key format.
    """
    snapshot = serializer.snapshotConfiguration()
    out = jvm.org.apache.flink.core.memory.DataOutputSerializer(128)
    jvm.org.apache.flink.api.common.typeutils.TypeSerializerSnapshot.writeVersionedSnapshot(
        out, snapshot
    )
    digest = hashlib.sha256(bytes(out.getCopyOfBuffer())).hexdigest()
    return {"type": _readable(jvm, snapshot), "fingerprint": f"sha256:{digest}"}


def _readable(jvm: Any, snapshot: Any) -> str:
    """``Row(String)`` for a RowSerializer snapshot of one string field, and so on."""
    name = str(snapshot.getClass().getSimpleName())
    for suffix in ("SerializerSnapshot", "Snapshot"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    composite = jvm.java.lang.Class.forName(
        "org.apache.flink.api.common.typeutils.CompositeTypeSerializerSnapshot"
    )
    if composite.isInstance(snapshot):
        nested = ", ".join(_readable(jvm, s) for s in snapshot.getNestedSerializerSnapshots())
        return f"{name}({nested})"
    return name
