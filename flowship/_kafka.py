"""The confluent-kafka (librdkafka) clients flowship makes: one base configuration, quiet logs.

Every Kafka client flowship creates in Python (the control plane's consumers, producers and
admin clients, the dry run's readers, the deployment's checks, the testing helpers) is made by
:func:`admin_client`, :func:`consumer` or :func:`producer`, whose configuration starts from
:func:`client_config`: the one place to add settings every client needs (secured Kafka later).

librdkafka writes its own log lines to stderr unless told otherwise: an unreachable broker gives
an error line per reconnect attempt (every ~50 ms at first) for as long as the client lives.
Here they go to flowship's structlog logger instead (event ``kafka.client``), and a line that
repeats (the same words from any client; durations such as ``after 3ms`` do not count) is logged
once per :data:`REPEAT_WINDOW_S` with how many times it was seen meanwhile.

:func:`check_kafka` is what a deployment asks of Kafka before it records or stops anything:
that the broker answers and that the job's source topics exist, in one metadata request.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowship._log import get_logger
from flowship.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

log = get_logger("flowship.kafka")

#: Seconds :func:`check_kafka` waits for the broker's metadata.
CHECK_TIMEOUT_S = 10.0
#: A repeated librdkafka log line is logged again at most once per this many seconds.
REPEAT_WINDOW_S = 60.0
#: Distinct librdkafka log lines remembered for de-duplication (then the memory starts over).
_MAX_KEYS = 512

# "(after 0ms in state CONNECT)", "1/1 brokers are down": numbers that vary between repeats of
# what is the same line to a reader (addresses and ports do count)
_VARYING = re.compile(r"\d+ms\b|\d+/\d+ brokers")
_AFTER = re.compile(r" \(after \d+ms in state \w+\)")


class _ClientLog:
    """librdkafka's log lines (confluent-kafka's ``logger`` setting) as structlog events.

    confluent-kafka calls ``log(level, "%s [%s] %s", facility, client name, text)`` from
    whichever thread serves the client (``poll()``, ``flush()``, ``consume()``, ...).
    """

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        # key -> (monotonic time last logged, occurrences not logged since)
        self._seen: dict[str, tuple[float, int]] = {}

    def log(self, level: int, fmt: str, *args: Any, **_: Any) -> None:
        """Log one librdkafka line, unless the same line was logged within the window."""
        if len(args) == 3:
            facility, client, text = (str(a) for a in args)
        else:
            facility, client, text = "", "", (fmt % args if args else fmt)
        key = f"{level} {facility} {_VARYING.sub('#', text)}"
        now = time.monotonic()
        with self._lock:
            last, skipped = self._seen.get(key, (float("-inf"), 0))
            if now - last < self.window_s:
                self._seen[key] = (last, skipped + 1)
                return
            if len(self._seen) >= _MAX_KEYS:
                self._seen.clear()
            self._seen[key] = (now, 0)
        fields: dict[str, Any] = {"client": client, "facility": facility, "message": text.strip()}
        if skipped:
            fields["repeated"] = skipped
        if level >= logging.ERROR:
            log.error("kafka.client", **fields)
        elif level >= logging.WARNING:
            log.warning("kafka.client", **fields)
        elif level >= logging.INFO:
            log.info("kafka.client", **fields)
        else:
            log.debug("kafka.client", **fields)


#: The logger every client flowship makes is configured with.
CLIENT_LOG = _ClientLog()


def client_config(bootstrap: str, **settings: Any) -> dict[str, Any]:
    """The configuration of a confluent-kafka client of ``bootstrap``, with ``settings`` on top.

    Settings every client needs go here (and only here): the bootstrap servers and where
    librdkafka's log lines go.
    """
    return {"bootstrap.servers": bootstrap, "logger": CLIENT_LOG, **settings}


def admin_client(bootstrap: str, **settings: Any) -> AdminClient:
    """A confluent-kafka ``AdminClient`` of ``bootstrap``.

    An admin client hands librdkafka's log lines over only when polled: call
    :func:`serve_logs` after using one (for a long-lived one, now and then).
    """
    from confluent_kafka.admin import AdminClient

    return AdminClient(client_config(bootstrap, **settings))


def consumer(bootstrap: str, **settings: Any) -> Consumer:
    """A confluent-kafka ``Consumer`` of ``bootstrap`` (its log lines are served by polling)."""
    from confluent_kafka import Consumer

    return Consumer(client_config(bootstrap, **settings))


def producer(bootstrap: str, **settings: Any) -> Producer:
    """A confluent-kafka ``Producer`` of ``bootstrap`` (its log lines are served by polling)."""
    from confluent_kafka import Producer

    return Producer(client_config(bootstrap, **settings))


def serve_logs(client: Any) -> None:
    """Hand the log lines an (admin) client queued to :data:`CLIENT_LOG`, without waiting."""
    client.poll(0)


def check_kafka(
    bootstrap: str,
    topics: Mapping[str, str],
    *,
    flag: str = "--kafka-bootstrap",
    timeout: float = CHECK_TIMEOUT_S,
) -> None:
    """Check that Kafka at ``bootstrap`` answers and that every topic of ``topics`` exists.

    ``topics`` maps each topic to what reads it (``"source 'clicks'"``), for the message.
    One metadata request; raises :class:`~flowship.errors.ClusterError` naming the address and
    ``flag`` (where it was set) when Kafka does not answer within ``timeout`` seconds (saying
    so when something accepts connections there but never answers: a wrong port, a hung
    broker), and :class:`~flowship.errors.ConfigError` naming each missing topic.
    """
    from confluent_kafka import KafkaError, KafkaException

    errors: list[str] = []

    def on_error(err: Any) -> None:  # served by serve_logs(), like the log lines
        if err.code() != KafkaError._ALL_BROKERS_DOWN and not errors:
            errors.append(_AFTER.sub("", str(err.str())))

    admin = admin_client(bootstrap, error_cb=on_error)
    started = time.monotonic()
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        serve_logs(admin)
        reason = errors[0] if errors else _error_text(exc)
        if not errors or "timed out" in reason.lower():
            # connected, but no answer to any request: librdkafka says "Broker transport
            # failure", which reads as a network problem; say what it is
            silent = _accepting(bootstrap)
            if silent:
                reason = (
                    f"{', '.join(silent)} accepts connections but sent no answer to Kafka's "
                    "requests: not a Kafka broker's port, or a broker that hangs"
                )
        msg = (
            f"Kafka at {bootstrap} did not answer within {timeout:g} s ({reason}); nothing was "
            f"started or recorded. Check the address given by {flag} (or "
            "FLOWSHIP_KAFKA_BOOTSTRAP): host and port of a broker that runs and that this "
            "machine can reach"
        )
        raise ClusterError(msg) from exc
    serve_logs(admin)
    missing = {
        topic: what
        for topic, what in topics.items()
        if topic not in meta.topics or meta.topics[topic].error is not None
    }
    if missing:
        listed = "; ".join(
            f"{what} reads topic {topic!r}" + _topic_error(meta, topic)
            for topic, what in sorted(missing.items())
        )
        msg = (
            f"missing on Kafka at {bootstrap}: {listed}; nothing was started or recorded. "
            "Create the topic (kafka-topics.sh --create --topic NAME --bootstrap-server "
            f"{bootstrap} --partitions N), or fix the topic name in the job or the address "
            f"given by {flag}"
        )
        raise ConfigError(msg)
    log.info(
        "kafka.checked",
        bootstrap=bootstrap,
        topics=sorted(topics),
        brokers=len(meta.brokers),
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def transient_error(error: Any) -> bool:
    """Whether a Kafka error passes by itself (a partition whose leader is not known yet)."""
    from confluent_kafka import KafkaError

    return bool(error.retriable()) or error.code() in (
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._NOENT,  # "no leaders found" by the client, just after the topic was made
    )


def _error_text(exc: Exception) -> str:
    """A KafkaException's own words (``Failed to get metadata: ...``), not the error's repr."""
    describe = getattr(exc.args[0], "str", None) if exc.args else None
    return str(describe()) if callable(describe) else str(exc)


def _accepting(bootstrap: str, timeout: float = 1.0) -> list[str]:
    """The addresses of ``bootstrap`` (``host:port,...``) that accept a TCP connection now."""
    accepting = []
    for address in bootstrap.split(","):
        address = address.strip().split("://")[-1]
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            continue
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                accepting.append(address)
        except OSError:
            continue
    return accepting


def _topic_error(meta: Any, topic: str) -> str:
    """`` (the broker's error)`` for a topic the metadata lists with one, else nothing."""
    info = meta.topics.get(topic)
    error = None if info is None else info.error
    return "" if error is None else f" ({error.str()})"
