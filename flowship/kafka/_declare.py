"""Declarations of Kafka sources and sinks: plain data, no PyFlink import, usable in manifests."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flowship.errors import ConfigError
from flowship.schema import AvroCodec
from flowship.schema._avro import SchemaLike


def side_topic(topic: str, version: str) -> str:
    """The side topic of ``topic`` for job version ``version``: ``<topic>.side.<version>``.

    Where routing sends a version's outputs aside, and where a shadow writes all of them.
    """
    return f"{topic}.side.{version}"


_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

StartFrom = Literal["committed-or-earliest", "earliest", "latest"]


def check_uid(uid: str, what: str) -> str:
    """Validate a stable operator uid (letters, digits, ``.``, ``_``, ``-``; at most 128)."""
    if not isinstance(uid, str) or not _UID.match(uid):
        msg = (
            f"{what}: uid {uid!r} is not a valid stable uid; use letters, digits, '.', '_' "
            "or '-' (at most 128 characters), and never change it once deployed: savepoints "
            "find operator state (and Kafka offsets) by uid"
        )
        raise ConfigError(msg)
    return uid


@dataclass(frozen=True, eq=False)
class KafkaSource:
    """A Kafka topic read by a flowship job.

    Every record reaches Python as a :class:`flowship.Record` (decoded Avro value + topic,
    partition, offset, timestamp, key). Records whose value does not decode with ``schema`` go to
    ``dead_letter_topic`` (default ``<topic>.dlq``) with the error and provenance in headers; the
    job carries on.

    ``uid`` must never change once deployed: the source's Kafka offsets live in savepoints under
    it. ``name`` is the keyword the topology function receives the stream under (default: the
    uid with ``-`` and ``.`` turned into ``_``).
    """

    uid: str
    topic: str
    schema: SchemaLike
    name: str = ""
    dead_letter_topic: str = ""
    group_id: str = ""
    start_from: StartFrom = "committed-or-earliest"
    properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_uid(self.uid, "KafkaSource")
        if not self.topic:
            msg = f"KafkaSource {self.uid!r}: topic is empty"
            raise ConfigError(msg)
        codec = AvroCodec(self.schema, where=f"KafkaSource {self.uid!r} schema")
        object.__setattr__(self, "schema", codec.schema)
        if not self.name:
            object.__setattr__(self, "name", re.sub(r"[^0-9A-Za-z_]", "_", self.uid))
        if not self.name.isidentifier():
            msg = f"KafkaSource {self.uid!r}: name {self.name!r} is not a Python identifier"
            raise ConfigError(msg)
        if not self.dead_letter_topic:
            object.__setattr__(self, "dead_letter_topic", f"{self.topic}.dlq")
        if self.start_from not in ("committed-or-earliest", "earliest", "latest"):
            msg = (
                f"KafkaSource {self.uid!r}: start_from={self.start_from!r}; use "
                "'committed-or-earliest', 'earliest' or 'latest'"
            )
            raise ConfigError(msg)

    def describe(self) -> dict[str, Any]:
        """JSON-serializable description (for manifests)."""
        return {
            "uid": self.uid,
            "topic": self.topic,
            "schema": self.schema,
            "dead_letter_topic": self.dead_letter_topic,
        }


KeyFn = Callable[[dict[str, Any]], "str | bytes | None"]


@dataclass(frozen=True, eq=False)
class KafkaSink:
    """A Kafka topic a flowship job writes, exactly once (transactions committed on checkpoints).

    Elements may be plain dicts or :class:`flowship.Record`; a Record's provenance is written to
    the ``flowship.source`` header. ``key`` is a field name or a function of the value giving the
    Kafka key (``str`` is UTF-8 encoded); ``None`` writes no key.
    """

    uid: str
    topic: str
    schema: SchemaLike
    key: str | KeyFn | None = None
    properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_uid(self.uid, "KafkaSink")
        if not self.topic:
            msg = f"KafkaSink {self.uid!r}: topic is empty"
            raise ConfigError(msg)
        codec = AvroCodec(self.schema, where=f"KafkaSink {self.uid!r} schema")
        object.__setattr__(self, "schema", codec.schema)
        if isinstance(self.key, str):
            fields = {f["name"] for f in codec.schema["fields"]}
            if self.key not in fields:
                msg = (
                    f"KafkaSink {self.uid!r}: key field {self.key!r} is not in schema "
                    f"{codec.name} (fields: {sorted(fields)})"
                )
                raise ConfigError(msg)

    def describe(self) -> dict[str, Any]:
        """JSON-serializable description (for manifests)."""
        return {"uid": self.uid, "topic": self.topic, "schema": self.schema, "key": self.key_name}

    @property
    def key_name(self) -> str | None:
        """How the Kafka key is made, for manifests: ``field:<name>``, ``function:<qualname>``."""
        if self.key is None:
            return None
        if isinstance(self.key, str):
            return f"field:{self.key}"
        module = getattr(self.key, "__module__", None) or "?"
        name = getattr(self.key, "__qualname__", None) or type(self.key).__name__
        return f"function:{module}.{name}"
