"""flowship.testing.kafka_io against the real broker: what job authors' tests build on."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from flowship.testing.kafka_io import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


def _config(bootstrap: str, topic: str, name: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = admin.describe_configs([resource])[resource].result(timeout=30)
    return str(described[name].value)


def test_create_topics_applies_per_topic_configs(kafka_broker) -> None:
    bootstrap = kafka_broker.bootstrap
    create_topics(
        bootstrap,
        {"io-stamped": 2, "io-plain": 1},
        {"io-stamped": {"message.timestamp.type": "LogAppendTime"}},
    )
    assert _config(bootstrap, "io-stamped", "message.timestamp.type") == "LogAppendTime"
    assert _config(bootstrap, "io-plain", "message.timestamp.type") == "CreateTime"
    # existing topics are left as they are: no error, no change
    create_topics(bootstrap, {"io-stamped": 2})
    assert _config(bootstrap, "io-stamped", "message.timestamp.type") == "LogAppendTime"


def test_create_topics_refuses_configs_for_topics_it_does_not_create(kafka_broker) -> None:
    with pytest.raises(ValueError, match="io-missing"):
        create_topics(kafka_broker.bootstrap, {"io-x": 1}, {"io-missing": {"a": "b"}})
