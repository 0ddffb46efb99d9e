"""The example job on the embedded mini-cluster against a real Kafka broker."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import events
import pytest
from helpers import (
    CLICK,
    JOB,
    assert_exactly_once,
    produce_clicks,
    read_outputs,
    setup_topics,
    tail,
)

from flowship.schema import AvroCodec
from flowship.testing.jobs import JobProcess, run_job
from flowship.testing.kafka_io import produce, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]


def test_exactly_once_10k_events_4_partitions(fresh_kafka_broker, tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    evs = list(events.clicks(10_000, users=200))
    assert produce_clicks(bootstrap, evs) == 10_000

    done = run_job(JOB, bootstrap, tmp_path / "state", "--bounded")
    assert done.returncode == 0, tail(done.stdout + done.stderr)

    outputs = read_outputs(bootstrap, expect=10_000)
    assert_exactly_once(outputs, evs)
    # every output carries the provenance of the input it came from
    sources = {m.headers["flowship.source"] for m in outputs}
    assert len(sources) == 10_000
    assert {s.split("/")[1] for s in sources} == {"0", "1", "2", "3"}


def test_poison_records_go_to_dead_letter_topic(fresh_kafka_broker, tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    evs = list(events.clicks(2_000, users=50))
    codec = AvroCodec(CLICK)
    poison = events.poison_payloads(20, codec.encode(evs[0]))
    # each poison payload really fails to decode (else this test would prove nothing)
    for p in poison:
        with pytest.raises(ValueError):
            codec.decode(p)
    payloads = [(e["user_id"].encode(), codec.encode(e)) for e in evs]
    for i, p in enumerate(poison):
        payloads.insert(50 + i * 97, (b"poison-%d" % i, p))
    produce(bootstrap, "clicks", payloads)

    done = run_job(JOB, bootstrap, tmp_path / "state", "--bounded")
    assert done.returncode == 0, tail(done.stdout + done.stderr)

    assert_exactly_once(read_outputs(bootstrap, expect=2_000), evs)
    dead = read_topic(bootstrap, "clicks.dlq", timeout=60, idle=3.0)
    assert len(dead) == 20
    assert sorted(m.raw for m in dead) == sorted(poison)
    assert sorted(m.key for m in dead) == sorted(b"poison-%d" % i for i in range(20))
    # provenance in headers points at the exact input record
    inputs = {(m.partition, m.offset): m.raw for m in read_topic(bootstrap, "clicks", idle=2.0)}
    for m in dead:
        h = m.headers
        assert h["flowship.source.topic"] == "clicks"
        assert inputs[(int(h["flowship.source.partition"]), int(h["flowship.source.offset"]))] \
            == m.raw
        assert h["flowship.error"].startswith("payload does not decode as flowship.examples.Click")
        assert h["flowship.source.uid"] == "clicks-source"
        assert h["flowship.job"] == "click-sessions"


def test_broker_killed_mid_stream_recovers_without_loss_or_duplicates(
    fresh_kafka_broker, tmp_path: Path
) -> None:
    broker = fresh_kafka_broker
    setup_topics(broker.bootstrap)
    evs = list(events.clicks(10_000, users=200))
    first, second = evs[:5_000], evs[5_000:]
    produce_clicks(broker.bootstrap, first)

    with JobProcess(JOB, broker.bootstrap, tmp_path / "state") as job:
        # wait until the job has committed output (it is mid-stream), then crash the broker
        seen = read_topic(broker.bootstrap, "session-stats", expect=1, timeout=120, idle=0.5)
        assert seen, "job produced nothing before the fault:\n" + tail(job.output())
        producer = threading.Thread(target=produce_clicks, args=(broker.bootstrap, second, 2_000))
        pid_before = broker.pid
        broker.kill()
        assert broker.pid is None
        time.sleep(5)
        broker.start()
        assert broker.pid not in (None, pid_before)
        producer.start()
        producer.join(timeout=300)
        assert not producer.is_alive()
        outputs = read_outputs(broker.bootstrap, expect=10_000, timeout=240)
        assert job.running(), "job process died:\n" + tail(job.output())
    assert_exactly_once(outputs, evs)


def test_the_session_gap_flag_flips_at_the_cut_without_a_redeploy(
    fresh_kafka_broker, tmp_path: Path
) -> None:
    """The example's one flag: a 60-minute session gap for two input partitions, set while the
    job runs; every output follows the gap its input's offset and the printed cut predict."""
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    evs = list(events.clicks(6_000, users=200))
    first, second = evs[:3_000], evs[3_000:]
    produce_clicks(bootstrap, first)

    def flowship(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flowship.cli", "flag", *args,
                               "--kafka-bootstrap", bootstrap, "--json"],
                              capture_output=True, text=True, timeout=120, check=False)

    with JobProcess(JOB, bootstrap, tmp_path / "state") as job:
        read_outputs(bootstrap, expect=3_000, timeout=180)  # the job runs, its agents said hello
        done = flowship("set", "click-sessions", "session-gap", "partitions=1,3:60m")
        assert done.returncode == 0, done.stdout + done.stderr + tail(job.output())
        cuts = {int(p): o for p, o in json.loads(done.stdout)["cuts"]["clicks"].items()}
        produce_clicks(bootstrap, second)
        outputs = read_outputs(bootstrap, expect=6_000, timeout=180)
        assert job.running(), tail(job.output())
        shown = json.loads(flowship("show", "click-sessions").stdout)
    assert shown["flags"]["session-gap"]["rules"] == "partitions=1,3:60m"

    where = {m.value["event_id"]: tuple(int(x) for x in m.headers["flowship.source"].split("/")[1:])
             for m in outputs if m.value}
    long_gap = {e for e, (p, o) in where.items() if p in (1, 3) and o >= cuts[p]}

    def gap_of(event: dict) -> int:
        return 2 * events.SESSION_GAP_MS if event["event_id"] in long_gap else events.SESSION_GAP_MS

    assert long_gap and len(long_gap) < 3_000  # the flag changed some outputs, not all
    expected = events.reference(evs, gap_of)
    assert expected != events.reference(evs)  # and a 60-minute gap gives other sessions
    assert_exactly_once(outputs, evs, expected)
