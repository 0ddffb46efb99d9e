"""Which ledger a setting names: the directory one, or the Kafka one."""

from __future__ import annotations

from pathlib import Path

from flowship.deploy.kafka_ledger import KafkaLedger
from flowship.deploy.ledger import LEASE_TTL_S, Ledger, LocalLedger
from flowship.errors import ConfigError


def open_ledger(
    where: str | None, directory: Path, host: str | None = None, lease_ttl: float = LEASE_TTL_S
) -> Ledger:
    """The ledger ``where`` names: ``kafka://HOST:PORT[/TOPIC]``, else the directory one.

    ``where`` empty, None or ``file``: a :class:`LocalLedger` in ``directory``; a path: a
    :class:`LocalLedger` there.
    """
    if where and where.startswith("kafka:"):
        return KafkaLedger.from_url(where, host=host, lease_ttl=lease_ttl)
    if where and where != "file":
        if "://" in where:
            msg = (
                f"ledger {where!r} is neither a directory nor kafka://HOST:PORT[/TOPIC]; the "
                "default (empty) is the directory ledger in --ledger-dir"
            )
            raise ConfigError(msg)
        directory = Path(where)
    return LocalLedger(directory, host=host, lease_ttl=lease_ttl)
