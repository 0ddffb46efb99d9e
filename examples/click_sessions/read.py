"""Read the example job's output and dead letters (read_committed) and print a summary.

python examples/click_sessions/read.py --bootstrap 127.0.0.1:9092 --expect 10000
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

from flowship.testing.kafka_io import read_topic

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--expect", type=int, default=None, help="outputs to wait for")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    out = read_topic(
        args.bootstrap,
        "session-stats",
        schema=HERE / "session_stats.avsc",
        expect=args.expect,
        timeout=args.timeout,
    )
    dlq = read_topic(args.bootstrap, "clicks.dlq", idle=1.0, timeout=args.timeout)
    ids = collections.Counter(m.value["event_id"] for m in out if m.value)
    dupes = sum(c - 1 for c in ids.values() if c > 1)
    print(f"records out: {len(out)} (distinct event ids {len(ids)}, duplicates {dupes})")
    print(f"dead-lettered: {len(dlq)}")
    for m in dlq[:3]:
        h = m.headers
        where = "/".join(
            h.get(f"flowship.source.{k}", "?") for k in ("topic", "partition", "offset")
        )
        print(f"  {where}: {h.get('flowship.error')}")


if __name__ == "__main__":
    main()
