"""The deployment ledger on a Kafka topic: one ledger for every host that reaches the broker.

Selected with ``--ledger kafka://HOST:PORT[/TOPIC]`` (``FLOWSHIP_LEDGER``); the default topic is
``flowship.deployments``. The topic has **one partition**, so every job's records are in one
total order that every reader folds the same way, keyed by job name; it is never compacted and
never expires (``cleanup.policy=delete``, ``retention.ms=-1``): it is the history. Its
timestamps are the broker's append time, so a lease's expiry is judged by one clock.

Records (JSON values):

``claim``    a deployer asks for a job's lease (holder id, host, pid, time to live). Written
             without a transaction. Accepted when, at its append time, the job's lease is free,
             expired, or held by a deployer on the claimant's own host whose process is gone
             (``supersedes`` names it); otherwise ignored. The first accepted claim wins.
``renew``    the holder extends its lease (transactional).
``release``  the holder gives it back (transactional).
``entry``    one ledger line (transactional), kept only if its holder held the lease there.

Fencing: once its claim is accepted, the winner opens a transactional producer whose
``transactional.id`` is the job's own (``flowship.ledger.<job>``). Opening it fences every
earlier producer with that id: a deployer that lost the lease (frozen past its expiry, then
resumed) cannot commit another line, its commit fails, and :class:`LeaseLostError` stops it.
Every write is read back: a line appended by a holder in the moment between another deployer's
accepted claim and its fencing is ignored by every reader, and its writer learns it lost.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flowship._kafka import transient_error
from flowship.deploy.ledger import (
    LEASE_TTL_S,
    Entry,
    Lease,
    LeaseHeldError,
    LeaseLostError,
    Ledger,
    LedgerError,
    _until,
)
from flowship.errors import ClusterError, ConfigError

#: The ledger's topic unless the URL names another.
TOPIC = "flowship.deployments"
#: One partition (one order), kept forever, broker append time.
TOPIC_CONFIG = {
    "cleanup.policy": "delete",
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "message.timestamp.type": "LogAppendTime",
}
#: How long a Kafka request may take before the ledger reports the broker as unreachable.
TIMEOUT_S = 30.0


def transactional_id(job: str) -> str:
    """The transactional id of ``job``'s lease holder: one per job, so a new holder fences."""
    return f"flowship.ledger.{job}"


@dataclass
class _Holder:
    holder: str
    host: str
    pid: int
    ttl: float
    #: broker append time (seconds) the lease expires at
    expires: float


@dataclass
class _Job:
    lease: _Holder | None = None
    entries: list[Entry] = field(default_factory=list)


class KafkaLedger(Ledger):
    """A ledger on one partition of a Kafka topic (see the module's docstring)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str = TOPIC,
        host: str | None = None,
        lease_ttl: float = LEASE_TTL_S,
        timeout: float = TIMEOUT_S,
    ) -> None:
        super().__init__(host, lease_ttl)
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout = timeout
        self._jobs: dict[str, _Job] = {}
        #: offsets of writes that were ignored (their writer did not hold the lease there)
        self._ignored: set[int] = set()
        #: accepted claim offsets
        self._claims: dict[int, str] = {}
        self._position = 0
        self._io = threading.RLock()
        self._consumer: Any = None
        self._admin: Any = None
        self._plain: Any = None
        self._producers: dict[str, Any] = {}
        self._ready = False

    @classmethod
    def from_url(
        cls, url: str, host: str | None = None, lease_ttl: float = LEASE_TTL_S
    ) -> KafkaLedger:
        """``kafka://HOST:PORT[,HOST:PORT...][/TOPIC]``."""
        parts = urlsplit(url)
        topic = parts.path.strip("/") or TOPIC
        if parts.scheme != "kafka" or not parts.netloc or "/" in topic:
            msg = (
                f"ledger {url!r} is not a Kafka ledger URL; use kafka://HOST:PORT (topic "
                f"{TOPIC}) or kafka://HOST:PORT/TOPIC"
            )
            raise ConfigError(msg)
        return cls(parts.netloc, topic, host=host, lease_ttl=lease_ttl)

    def __repr__(self) -> str:
        return f"kafka://{self.bootstrap}/{self.topic}"

    # -- the topic ----------------------------------------------------------------------------

    def _unreachable(self, exc: BaseException) -> ClusterError:
        msg = (
            f"the Kafka ledger {self!r} did not answer ({exc}); check the --ledger URL "
            "(FLOWSHIP_LEDGER) and that the broker runs"
        )
        return ClusterError(msg)

    def _start(self) -> None:
        """Create the topic if it is missing, and the reader (assigned from the beginning)."""
        if self._ready:
            return
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        try:
            meta = self._admin.list_topics(timeout=self.timeout)
        except KafkaException as exc:
            raise self._unreachable(exc) from exc
        info = meta.topics.get(self.topic)
        if info is None or info.error is not None:
            replicas = min(3, max(len(meta.brokers), 1))
            new = NewTopic(self.topic, 1, replicas, config=TOPIC_CONFIG)
            fut = self._admin.create_topics([new], operation_timeout=self.timeout)[self.topic]
            try:
                fut.result(self.timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    msg = f"could not create the ledger topic {self.topic!r}: {exc}"
                    raise LedgerError(msg) from exc
        elif len(info.partitions) != 1:
            msg = (
                f"the ledger topic {self.topic!r} on {self.bootstrap} has "
                f"{len(info.partitions)} partitions; a ledger topic has exactly one (one order "
                "of every record): name another topic in the --ledger URL"
            )
            raise ConfigError(msg)
        from confluent_kafka import TopicPartition

        self._consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "flowship.ledger.reader",  # never joined: the partition is assigned
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self._consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        self._ready = True

    def _end(self) -> int:
        """The offset up to which every transaction is decided (the last stable offset)."""
        from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
        from confluent_kafka.admin import AdminClient, OffsetSpec

        tp = TopicPartition(self.topic, 0)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                futures = self._admin.list_offsets(
                    {tp: OffsetSpec.latest()},
                    isolation_level=IsolationLevel.READ_COMMITTED,
                    request_timeout=self.timeout,
                )
                return int(futures[tp].result(self.timeout).offset)
            except KafkaException as exc:
                # a topic just created has no leader everywhere yet: retriable, for a while
                if not transient_error(exc.args[0]) or time.monotonic() > deadline:
                    raise self._unreachable(exc) from exc
                time.sleep(0.2)
                # its metadata may hold the partition without a leader for minutes: a new one
                self._admin = AdminClient({"bootstrap.servers": self.bootstrap})

    def _refresh(self, until: int | None = None) -> None:
        """Fold every record up to the end (or past offset ``until``) into the jobs' state."""
        with self._io:
            self._start()
            target = self._end() if until is None else until + 1
            deadline = time.monotonic() + self.timeout
            while self._position < target:
                if time.monotonic() > deadline:
                    msg = (
                        f"the Kafka ledger {self!r}: read up to offset {self._position} of "
                        f"{target} in {self.timeout:.0f}s"
                    )
                    raise ClusterError(msg)
                for record in self._consumer.consume(num_messages=500, timeout=0.2):
                    if record.error() is not None:
                        continue
                    self._fold(record)
                # transaction markers take offsets too: the reader's position passes them
                from confluent_kafka import TopicPartition

                position = self._consumer.position([TopicPartition(self.topic, 0)])[0].offset
                if position is not None and position >= 0:
                    self._position = max(self._position, position)

    def _fold(self, record: Any) -> None:
        offset = int(record.offset())
        self._position = max(self._position, offset + 1)
        try:
            value = json.loads(record.value())
            job = str(value["job"])
            kind = value["kind"]
        except (ValueError, KeyError, TypeError):
            return  # not a ledger record: ignored by every reader alike
        at = int(record.timestamp()[1]) / 1000.0
        state = self._jobs.setdefault(job, _Job())
        lease = state.lease
        holder = value.get("holder")
        if kind == "claim":
            free = (
                lease is None
                or lease.expires < at
                or (value.get("supersedes") == lease.holder and value.get("host") == lease.host)
            )
            if not free:
                self._ignored.add(offset)
                return
            ttl = float(value.get("ttl", LEASE_TTL_S))
            state.lease = _Holder(
                holder=str(holder),
                host=str(value.get("host")),
                pid=int(value.get("pid", 0)),
                ttl=ttl,
                expires=at + ttl,
            )
            self._claims[offset] = str(holder)
            return
        if lease is None or lease.holder != holder:
            self._ignored.add(offset)
            return
        if kind == "renew":
            lease.ttl = float(value.get("ttl", lease.ttl))
            lease.expires = at + lease.ttl
        elif kind == "release":
            state.lease = None
        elif kind == "entry":
            try:
                state.entries.append(Entry.from_json(value["entry"]))
            except (ValueError, KeyError, TypeError):
                self._ignored.add(offset)

    # -- reading ------------------------------------------------------------------------------

    def entries(self, job: str) -> list[Entry]:
        """Every entry of ``job``, oldest first."""
        self._refresh()
        with self._io:
            return list(self._jobs.get(job, _Job()).entries)

    # -- writing ------------------------------------------------------------------------------

    def _value(self, kind: str, job: str, lease: Lease, **more: Any) -> bytes:
        return json.dumps({"kind": kind, "job": job, "holder": lease.holder, **more}).encode()

    def _write(self, job: str, value: bytes) -> int:
        """One transactional write by this job's lease holder; its offset once read back."""
        from confluent_kafka import KafkaError, KafkaException

        producer = self._producers.get(job)
        if producer is None:
            msg = f"this deployer has no producer for job {job!r}: it does not hold its lease"
            raise LeaseLostError(msg)
        delivered: list[int] = []

        def on_delivery(err: Any, record: Any) -> None:
            if err is None:
                delivered.append(int(record.offset()))

        try:
            producer.begin_transaction()
            producer.produce(
                self.topic, key=job.encode(), value=value, partition=0, on_delivery=on_delivery
            )
            producer.commit_transaction(self.timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() in (
                KafkaError._FENCED,
                KafkaError.PRODUCER_FENCED,
                KafkaError.INVALID_PRODUCER_EPOCH,
            ) or (error.fatal() and "fenced" in str(error).lower()):
                self._producers.pop(job, None)
                msg = (
                    f"the lease of job {job!r} on {self!r} was taken over: another deployer "
                    f"opened its transactional producer ({transactional_id(job)}), which "
                    f"fenced this one ({error.str()}); this deployer stops without changing "
                    "anything more. See `flowship status` and run the command again"
                )
                raise LeaseLostError(msg) from exc
            if error.txn_requires_abort():
                try:
                    producer.abort_transaction(self.timeout)
                except KafkaException:
                    pass
            msg = f"cannot append to the Kafka ledger {self!r}: {error.str()}"
            raise LedgerError(msg) from exc
        producer.poll(0)
        if not delivered:
            msg = f"the Kafka ledger {self!r} committed a write it did not report"
            raise LedgerError(msg)
        offset = delivered[-1]
        self._refresh(until=offset)
        if offset in self._ignored:
            msg = (
                f"the lease of job {job!r} on {self!r} was taken over by another deployer "
                "before this one's write reached the ledger (the write is ignored by every "
                "reader); this deployer stops without changing anything more. See `flowship "
                "status` and run the command again"
            )
            raise LeaseLostError(msg)
        return offset

    def _append(self, entry: Entry) -> None:
        lease = self._leases[entry.job]
        self._write(entry.job, self._value("entry", entry.job, lease, entry=entry.to_json()))

    # -- the lease ----------------------------------------------------------------------------

    def _same_host_dead(self, lease: _Holder) -> bool:
        if lease.host != self.host:
            return False
        try:
            os.kill(lease.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _held_by(self, job: str, holder: _Holder) -> LeaseHeldError:
        msg = (
            f"job {job!r} is being deployed by pid {holder.pid} on {holder.host} (lease in "
            f"{self!r} until about {_until(holder.expires)}); wait for it to finish, or stop it"
        )
        return LeaseHeldError(msg)

    def _acquire(self, job: str, ttl: float) -> Lease:
        from confluent_kafka import KafkaException, Producer

        self._refresh()
        current = self._jobs.get(job, _Job()).lease
        supersedes = None
        if current is not None and current.expires > time.time():
            if not self._same_host_dead(current):
                raise self._held_by(job, current)  # nothing written
            supersedes = current.holder
        lease = Lease(
            job=job,
            holder=uuid.uuid4().hex,
            host=self.host,
            pid=os.getpid(),
            expires=time.time() + ttl,  # before the claim is sent: never later than the broker's
            ttl=ttl,
        )
        if self._plain is None:
            self._plain = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 0,
                }
            )
        delivered: list[Any] = []
        claim = self._value(
            "claim", job, lease, host=lease.host, pid=lease.pid, ttl=ttl, supersedes=supersedes
        )
        self._plain.produce(
            self.topic,
            key=job.encode(),
            value=claim,
            partition=0,
            on_delivery=lambda err, rec: delivered.append((err, rec)),
        )
        self._plain.flush(self.timeout)
        if not delivered or delivered[0][0] is not None:
            why = delivered[0][0] if delivered else f"no answer in {self.timeout:.0f}s"
            raise self._unreachable(RuntimeError(str(why)))
        offset = int(delivered[0][1].offset())
        self._refresh(until=offset)
        if self._claims.get(offset) != lease.holder:
            winner = self._jobs[job].lease
            if winner is None:  # cannot happen: an ignored claim means a holder
                msg = f"the claim of job {job!r}'s lease on {self!r} was not accepted"
                raise LeaseHeldError(msg)
            raise self._held_by(job, winner)
        # won: fence every earlier holder of the job's transactional id
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "transactional.id": transactional_id(job),
                "transaction.timeout.ms": 15000,  # one record each: a stuck one blocks readers
                "linger.ms": 0,
            }
        )
        try:
            producer.init_transactions(self.timeout)
        except KafkaException as exc:
            raise self._unreachable(exc) from exc
        self._producers[job] = producer
        # the first transactional line: the lease counts from now (opening the producer can
        # take seconds), and, read back, it proves no one took the lease over in between
        try:
            return self._renew(lease, ttl)
        except LeaseLostError as exc:
            self._producers.pop(job, None)
            raise LeaseHeldError(str(exc)) from exc

    def _renew(self, lease: Lease, ttl: float) -> Lease:
        sent = time.time()
        self._write(lease.job, self._value("renew", lease.job, lease, ttl=ttl))
        return Lease(
            job=lease.job,
            holder=lease.holder,
            host=lease.host,
            pid=lease.pid,
            expires=sent + ttl,
            ttl=ttl,
        )

    def _taken(self, lease: Lease) -> str | None:
        self._refresh()
        current = self._jobs.get(lease.job, _Job()).lease
        if current is not None and current.holder == lease.holder:
            return None
        now = f"pid {current.pid} on {current.host} holds it" if current else "nobody holds it"
        return (
            f"the lease of job {lease.job!r} on {self!r} is no longer this deployer's (pid "
            f"{lease.pid} on {lease.host}): {now}; this one stops without changing anything "
            "more. See `flowship status` and run the command again"
        )

    def _release(self, lease: Lease) -> None:
        if lease.job not in self._producers:
            return
        try:
            self._write(lease.job, self._value("release", lease.job, lease))
        except LeaseLostError:
            pass  # taken over meanwhile: the lease is its new holder's
        finally:
            self._producers.pop(lease.job, None)

    def close(self) -> None:
        """Close the Kafka clients (a held lease is given back first)."""
        for lease in list(self._leases.values()):
            self.release(lease)
        if self._plain is not None:
            self._plain.flush(5)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
            self._ready = False
