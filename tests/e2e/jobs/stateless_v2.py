"""Version 2 of ``stateless_v1.py``: a new step, and the sink under a new uid (same topic)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ.get("FLOWSHIP_TEST_EXAMPLE")
                or str(Path(__file__).resolve().parents[3] / "examples" / "click_sessions"))

from common import HERE, clicks

import flowship as fs

copies = fs.KafkaSink(uid="click-copies-v2", topic="click-copies", schema=HERE / "click.avsc")
job = fs.Job("click-copies", version="2", sources=[clicks], sinks=[copies], stateless=True)


@job.topology
def build(clicks):
    tidy = clicks.map(lambda r: r.with_value({**r.value, "page": r.value["page"].strip()}))
    return tidy.map(lambda r: r.with_value({**r.value, "page": r.value["page"].lower()}))


if __name__ == "__main__":
    job.main()
