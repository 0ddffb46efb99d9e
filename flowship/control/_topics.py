"""Topics a job with a control plane needs: its control topic and its sinks' side topics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from flowship.control._log import TOPIC_CONFIG, admin_and_topics, create_topics

if TYPE_CHECKING:
    from flowship.kafka._flink import KafkaContext


def ensure_job_topics(ctx: KafkaContext, sink_topics: Sequence[str], timeout: float = 30.0) -> None:
    """Create the control topic and each sink's side topic where missing.

    A side topic gets the partition count of its production topic (1 if that one is missing
    too), so a consumer that pairs outputs by partition can read both alike. The control topic
    is the production one even in a rehearsal: a dry run follows production's rules, read-only.
    """
    assert ctx.control_topic is not None
    admin, meta = admin_and_topics(ctx.bootstrap, timeout)

    def missing(name: str) -> bool:
        return name not in meta.topics or meta.topics[name].error is not None

    wanted: dict[str, tuple[int, dict[str, str]]] = {}
    if missing(ctx.control_topic):
        wanted[ctx.control_topic] = (1, TOPIC_CONFIG)
    for topic in sink_topics:
        side = ctx.side_topic(topic)
        if missing(side):
            main = meta.topics.get(ctx.named(topic))
            wanted[side] = (len(main.partitions) if main is not None and main.partitions else 1, {})
    create_topics(admin, ctx.bootstrap, wanted, meta, timeout)
