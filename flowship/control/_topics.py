"""Topics a job with a control plane needs: its control topic and its sinks' side topics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from flowship.control._log import ensure_topic
from flowship.errors import ClusterError

if TYPE_CHECKING:
    from flowship.kafka._flink import KafkaContext


def ensure_job_topics(ctx: KafkaContext, sink_topics: Sequence[str], timeout: float = 30.0) -> None:
    """Create the control topic and each sink's side topic where missing.

    A side topic gets the partition count of its production topic (1 if that one is missing
    too), so a consumer that pairs outputs by partition can read both alike. The control topic
    is the production one even in a rehearsal: a dry run follows production's rules, read-only.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    assert ctx.control_topic is not None
    ensure_topic(ctx.bootstrap, ctx.control_topic, timeout)
    admin = AdminClient({"bootstrap.servers": ctx.bootstrap})
    meta = admin.list_topics(timeout=timeout)
    new = []
    for topic in sink_topics:
        side = ctx.side_topic(topic)
        if side in meta.topics and meta.topics[side].error is None:
            continue
        main = meta.topics.get(ctx.named(topic))
        partitions = len(main.partitions) if main is not None and main.partitions else 1
        replicas = min(3, max(len(meta.brokers), 1))
        new.append(NewTopic(side, num_partitions=partitions, replication_factor=replicas))
    if not new:
        return
    for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            msg = f"could not create side topic {name!r} on {ctx.bootstrap}: {exc}"
            raise ClusterError(msg) from exc
