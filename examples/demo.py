"""The flowship demo: the example job end to end on the embedded default.

Starts a real Kafka broker (KRaft) on loopback, produces click events with some poison payloads
among them, runs the example job on the embedded Flink mini-cluster until it has read everything,
reads the results back with read_committed, prints the counts, and stops everything it started.
"""

from __future__ import annotations

import collections
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
EXAMPLE = HERE / "click_sessions"
sys.path.insert(0, str(EXAMPLE))

import events  # noqa: E402

from flowship.schema import AvroCodec  # noqa: E402
from flowship.testing.jobs import run_job  # noqa: E402
from flowship.testing.kafka_broker import KafkaBroker  # noqa: E402
from flowship.testing.kafka_io import create_topics, produce, read_topic  # noqa: E402

EVENTS = 10_000
POISON = 20


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="flowship-demo-") as tmp:
        work = Path(tmp)
        print("starting a Kafka broker (KRaft) on loopback ...", flush=True)
        with KafkaBroker(work / "kafka") as broker:
            create_topics(broker.bootstrap, {"clicks": 4, "session-stats": 4, "clicks.dlq": 1})
            codec = AvroCodec(EXAMPLE / "click.avsc")
            evs = list(events.clicks(EVENTS, users=200))
            payloads = [(e["user_id"].encode(), codec.encode(e)) for e in evs]
            for i, p in enumerate(events.poison_payloads(POISON, payloads[0][1])):
                payloads.insert(100 + i * 400, (b"poison", p))
            produce(broker.bootstrap, "clicks", payloads)
            print(
                f"events in: {len(payloads)} ({EVENTS} valid, {POISON} malformed) on 'clicks' "
                "(4 partitions)",
                flush=True,
            )

            print(
                "running examples/click_sessions/job.py on the Flink mini-cluster ...", flush=True
            )
            started = time.monotonic()
            done = run_job(EXAMPLE / "job.py", broker.bootstrap, work / "state", "--bounded")
            if done.returncode != 0:
                print(done.stdout[-4000:], done.stderr[-4000:], file=sys.stderr)
                print(f"job failed with exit code {done.returncode}", file=sys.stderr)
                return 1
            took = time.monotonic() - started

            out = read_topic(
                broker.bootstrap,
                "session-stats",
                schema=EXAMPLE / "session_stats.avsc",
                expect=EVENTS,
                idle=2.0,
            )
            dead = read_topic(broker.bootstrap, "clicks.dlq", idle=2.0)
            ids = collections.Counter(m.value["event_id"] for m in out if m.value)
            expected = events.reference(evs)
            lost = len(set(expected) - set(ids))
            dupes = sum(c - 1 for c in ids.values() if c > 1)
            wrong = sum(1 for m in out if m.value and m.value != expected[m.value["event_id"]])
            print(f"job finished in {took:.1f}s (start-up included)")
            print(
                f"records out: {len(out)} on 'session-stats' (read_committed): "
                f"lost {lost}, duplicated {dupes}, differing from reference {wrong}"
            )
            print(f"dead-lettered: {len(dead)} on 'clicks.dlq'")
            if dead:
                h = dead[0].headers
                print(
                    f"  e.g. clicks/{h['flowship.source.partition']}/"
                    f"{h['flowship.source.offset']}: {h['flowship.error']}"
                )
            print("stopping the broker ...", flush=True)
        ok = lost == 0 and dupes == 0 and wrong == 0 and len(dead) == POISON
        print("demo OK" if ok else "demo FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
