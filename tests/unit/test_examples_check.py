"""`flowship check` on the example's real versions (manifests computed from code, no Flink)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "click_sessions"


def check(old: str, new: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowship.cli", "check", str(EXAMPLE / old), str(EXAMPLE / new),
         *extra],
        capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.mark.parametrize(("old", "new"), [("job.py", "job_v2.py"), ("job_v2.py", "job_v3.py"),
                                          ("job.py", "job_v3.py")])
def test_real_upgrades_are_compatible(old: str, new: str) -> None:
    done = check(old, new)
    assert done.returncode == 0, done.stdout + done.stderr


def test_incompatible_v3_is_refused_with_where_and_how() -> None:
    done = check("job_v2.py", "job_v3_incompatible.py", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["compatible"] is False
    kinds = {p["kind"] for p in report["problems"] if p["severity"] == "error"}
    assert "unknown_writer_version" in kinds
    text = json.dumps(report)
    assert "session-stats" in text and "last_page" in text

    readable = check("job_v2.py", "job_v3_incompatible.py")
    assert readable.returncode == 1
    assert "unknown_writer_version" in readable.stdout or "fix:" in readable.stdout


def test_check_bad_input_exit_code(tmp_path: Path) -> None:
    done = check("job.py", str(tmp_path / "missing.py"))
    assert done.returncode == 2
