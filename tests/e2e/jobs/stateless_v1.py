"""A stateless job (``stateless=True``): clicks copied to another topic, with the page tidied.

Version 2 (``stateless_v2.py``) reshapes the graph: a filter step, and the sink under a new uid.
A job that keeps state could not do that over a savepoint; a stateless one carries only its
source's Kafka offsets over.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ.get("FLOWSHIP_TEST_EXAMPLE")
                or str(Path(__file__).resolve().parents[3] / "examples" / "click_sessions"))

from common import HERE, clicks

import flowship as fs

copies = fs.KafkaSink(uid="click-copies", topic="click-copies", schema=HERE / "click.avsc")
job = fs.Job("click-copies", version="1", sources=[clicks], sinks=[copies], stateless=True)


@job.topology
def build(clicks):
    return clicks.map(lambda r: r.with_value({**r.value, "page": r.value["page"].strip()}))


if __name__ == "__main__":
    job.main()
