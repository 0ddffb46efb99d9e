"""Produce click events (and optionally poison payloads) to the example's input topic.

python examples/click_sessions/produce.py --bootstrap 127.0.0.1:9092 --count 10000 --rate 2000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from events import clicks, poison_payloads

from flowship.schema import AvroCodec
from flowship.testing.kafka_io import create_topics, produce

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="clicks")
    parser.add_argument("--count", type=int, default=10_000, help="valid click events")
    parser.add_argument("--poison", type=int, default=0, help="malformed payloads mixed in")
    parser.add_argument("--rate", type=float, default=0.0, help="records/s (0 = no limit)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--start", type=int, default=0, help="index of the first event id")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    create_topics(args.bootstrap, {args.topic: 4, "session-stats": 4, f"{args.topic}.dlq": 1})
    codec = AvroCodec(HERE / "click.avsc")
    valid = [
        (e["user_id"].encode(), codec.encode(e))
        for e in clicks(args.count, users=args.users, seed=args.seed, start=args.start)
    ]
    bad = [(b"poison", p) for p in poison_payloads(args.poison, valid[0][1] if valid else b"\x02")]
    # spread poison evenly among the valid records
    payloads = list(valid)
    step = max(1, len(valid) // max(1, len(bad)))
    for i, item in enumerate(bad):
        payloads.insert(min(len(payloads), (i + 1) * step + i), item)
    sent = produce(args.bootstrap, args.topic, payloads, rate=args.rate)
    print(f"produced {sent} records to {args.topic} ({len(valid)} valid, {len(bad)} poison)")


if __name__ == "__main__":
    main()
